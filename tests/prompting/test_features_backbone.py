"""The pretrained backbone backend: shipped weights, any network by checkpoint, errors."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from prompting.errors import BackendError
from prompting.features import FeatureBackend, backend_create
from prompting.features.backbone import BackboneBackend, file_sha256
from prompting.features.backbone.networks import (
    _LITE0_REPEATS,
    _LITE12_REPEATS,
    LITE0_WHEEL_SHA256,
    LITE2_WHEEL_SHA256,
    lite_state_dict_to_timm,
)

torch = pytest.importorskip("torch")


def _image(h: int = 40, w: int = 56, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def shipped() -> BackboneBackend:
    """The default backend: the shipped EfficientNet-Lite2 with the classic planes."""
    return backend_create("backbone")


def test_shipped_weights_are_the_pinned_file(shipped) -> None:
    assert shipped.arch.name == "efficientnet_lite2"
    assert shipped.sha256 == LITE2_WHEEL_SHA256
    assert file_sha256(shipped.checkpoint) == LITE2_WHEEL_SHA256
    assert LITE2_WHEEL_SHA256[:12] in shipped.fingerprint()
    assert isinstance(shipped, FeatureBackend)
    deep = shipped.deep_features(_image(64, 96), stages=(1, 2, 4))
    assert [d.shape[0] for d in deep] == [24, 48, 120]


def test_lite0_still_ships_for_the_models_trained_on_it() -> None:
    old = backend_create("backbone", arch="efficientnet_lite0")
    assert old.sha256 == LITE0_WHEEL_SHA256
    assert file_sha256(old.checkpoint) == LITE0_WHEEL_SHA256
    assert LITE0_WHEEL_SHA256[:12] in old.fingerprint()
    assert old.fingerprint() != backend_create("backbone").fingerprint()
    deep = old.deep_features(_image(64, 96), stages=(1, 2, 4))
    assert [d.shape[0] for d in deep] == [24, 40, 112]


@pytest.mark.parametrize(
    ("variant", "repeats", "size"),
    [(0, _LITE0_REPEATS, 224), (2, _LITE12_REPEATS, 260)],
    ids=["shipped", "lite2"],
)
def test_renamed_network_matches_the_reference_implementation(variant, repeats, size) -> None:
    """timm's tf_efficientnet_lite<N> with the renamed state dict gives the logits of
    the original implementation (efficientnet-lite-pytorch) on real photographs, at
    the input size each was trained at (the reference pads for that size only)."""
    import timm
    from efficientnet_lite_pytorch import EfficientNet
    from skimage import data

    path = backend_create("backbone", arch=f"efficientnet_lite{variant}").checkpoint
    state = torch.load(path, map_location="cpu", weights_only=True)
    ours = timm.create_model(f"tf_efficientnet_lite{variant}", pretrained=False)
    ours.load_state_dict(lite_state_dict_to_timm(state, repeats=repeats), strict=True)
    reference = EfficientNet.from_pretrained(f"efficientnet-lite{variant}", weights_path=path)
    ours.eval(), reference.eval()
    for picture, imagenet_class in ((data.chelsea(), 285), (data.coffee(), 967)):
        x = torch.from_numpy(picture).permute(2, 0, 1)[None].float()
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
        x = (x - 127.0) / 128.0
        with torch.inference_mode():
            a, b = ours(x), reference(x)
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
        assert int(a.argmax()) == imagenet_class  # Egyptian cat, espresso


def test_features_are_pixel_resolution_and_normalised(shipped) -> None:
    img = _image()
    fmap = shipped.extract(img)
    n_classic = shipped.n_classic
    assert fmap.features.shape[:2] == img.shape[:2] and fmap.features.dtype == np.float32
    deep = fmap.features[..., n_classic:]
    assert deep.shape[-1] == sum(d.shape[0] for d in shipped.deep_features(img))
    np.testing.assert_allclose(deep.mean(axis=(0, 1)), 0, atol=1e-3)
    assert np.isfinite(fmap.features).all()


def test_planes_written_into_one_array_equal_the_groups_stacked_and_concatenated(
    shipped, monkeypatch
) -> None:
    """The backend writes its classic and network planes into one array; the same
    planes stacked group by group and concatenated (the code before) are equal."""
    import prompting.features.backbone as backbone
    import prompting.features.classic as classic
    from benchmarks.predict_reference import planes_stack_reference, smooth_reference

    img = _image()
    features = shipped.extract(img).features
    monkeypatch.setattr(backbone, "planes_stack", planes_stack_reference)
    monkeypatch.setattr(classic, "planes_stack", planes_stack_reference)
    monkeypatch.setattr(classic, "_smooth", smooth_reference)
    shipped._recent = []
    np.testing.assert_array_equal(features, shipped.extract(img).features)
    assert features.flags.c_contiguous


def test_network_runs_channels_last_with_the_same_stage_outputs(shipped) -> None:
    """The loaded network is channels-last (faster on CPU); its stage outputs equal
    those of the same network in the default contiguous layout."""
    import copy

    net = shipped.network()
    kernels = [p for p in net.parameters() if p.dim() == 4]
    assert kernels and all(k.is_contiguous(memory_format=torch.channels_last) for k in kernels)
    nchw = copy.deepcopy(net).to(memory_format=torch.contiguous_format)
    x = torch.from_numpy(_image(96, 128).astype(np.float32)).permute(2, 0, 1)[None]
    x = (x - 127.0) / 128.0
    with torch.inference_mode():
        fast = net(x.contiguous(memory_format=torch.channels_last))
        plain = nchw(x)
    assert len(fast) == len(plain) == 5
    for a, b in zip(fast, plain, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_without_classic_planes() -> None:
    backend = backend_create("backbone", classic=False)
    assert backend.adapt_features == () and backend.guide_feature is None
    assert backend.extract(_image()).features.shape[-1] == sum(
        d.shape[0] for d in backend.deep_features(_image())
    )


def test_anomaly_patches_grid(shipped) -> None:
    grid = shipped.anomaly_patches(_image(64, 96))
    assert grid.ndim == 3 and grid.dtype == np.float32 and grid.shape[0] >= 8


def test_anomaly_map_leaves_the_padding_band_unscored(shipped, tmp_path) -> None:
    """The band the network's input padding covers (32 input px: 16 image px at
    scale 2, more where a large image is scaled down) is not scored, in every
    model trained on the backbone, and the band survives save and load."""
    from prompting.classifier import Learner
    from prompting.learner import TrainingImage, learner_train

    assert shipped.anomaly_border((64, 80)) == pytest.approx(16.0)
    assert shipped.anomaly_border((2000, 3000)) > 16.0
    blank = np.full((64, 80), -1, np.int16)
    images = [
        TrainingImage(f"ok{i}", _image(64, 80, seed=i), blank, all_background=True)
        for i in range(3)
    ]
    learner = learner_train(images, classes=["scratch"], backend=shipped).learner
    assert learner.anomaly.border == 2  # 8 px cells
    probe = _image(64, 80, seed=7)
    score = learner.anomaly_map(probe, backend=shipped)
    assert score[:16].max() == 0.0 and score[-16:].max() == 0.0
    assert score[:, :16].max() == 0.0 and score[:, -16:].max() == 0.0
    assert score[16:-16, 16:-16].min() > 0.0
    learner.save(tmp_path / "m.npz")
    loaded = Learner.load(tmp_path / "m.npz")
    assert loaded.anomaly.border == 2
    np.testing.assert_array_equal(loaded.anomaly_map(probe, backend=shipped) == 0, score == 0)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"arch": "nope"}, "unknown backbone architecture 'nope'"),
        ({"scale": 9}, "scale must be in"),
        ({"stages": []}, "stages must be distinct"),
        ({"colour": 1}, "unknown option"),
        ({"arch": "resnet18"}, "no weights that ship with the product"),
        ({"checkpoint_sha256": "0" * 64}, "expected 0000"),
        ({"arch": "resnet18", "checkpoint": "/nonexistent/r18.pth"}, "not found"),
    ],
)
def test_bad_options_are_refused(options, message) -> None:
    with pytest.raises(BackendError, match=message):
        backend_create("backbone", **options)


@pytest.fixture(scope="module")
def resnet18_checkpoint(tmp_path_factory):
    """A randomly initialised torchvision ResNet-18 state dict, saved by the test."""
    import torchvision

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "resnet18-random.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    return path


def test_any_torchvision_network_by_checkpoint(resnet18_checkpoint) -> None:
    backend = backend_create("backbone", arch="resnet18", checkpoint=str(resnet18_checkpoint))
    fmap = backend.extract(_image())
    assert fmap.features.shape[:2] == (40, 56)
    assert backend.sha256 == file_sha256(resnet18_checkpoint)
    assert backend.options["checkpoint"] == str(resnet18_checkpoint)
    again = backend_create("backbone", **backend.options)
    assert again.fingerprint() == backend.fingerprint()


def test_wrong_weights_for_the_architecture(resnet18_checkpoint) -> None:
    backend = backend_create("backbone", arch="resnet50", checkpoint=str(resnet18_checkpoint))
    with pytest.raises(BackendError, match="do not fit architecture 'resnet50'"):
        backend.extract(_image())


def test_any_timm_network_by_checkpoint(tmp_path) -> None:
    import timm

    torch.manual_seed(0)
    path = tmp_path / "convnext-random.pth"
    torch.save(timm.create_model("convnext_atto", pretrained=False).state_dict(), path)
    backend = backend_create("backbone", arch="timm:convnext_atto", checkpoint=str(path))
    fmap = backend.extract(_image(64, 64))
    assert fmap.features.shape[:2] == (64, 64) and np.isfinite(fmap.features).all()


def test_a_dinov2_vision_transformer_by_checkpoint(tmp_path) -> None:
    """A DINOv2 ViT (timm's ``vit_small_patch14_dinov2``, pretrained at 518 px)
    takes images of any size: the input is resized to whole 14 px patches, the
    position embeddings interpolated, and every stage output covers the image."""
    import timm

    torch.manual_seed(0)
    path = tmp_path / "dinov2-small-random.pth"
    torch.save(timm.create_model("vit_small_patch14_dinov2", pretrained=False).state_dict(), path)
    backend = backend_create(
        "backbone", arch="timm:vit_small_patch14_dinov2", checkpoint=str(path), classic=False
    )
    for h, w in ((50, 70), (83, 41)):
        fmap = backend.extract(_image(h, w))
        assert fmap.features.shape == (h, w, 2 * 384) and np.isfinite(fmap.features).all()
        patches = backend.anomaly_patches(_image(h, w))
        assert patches.shape[-1] == 2 * 384 and np.isfinite(patches).all()
    assert backend.sha256 == file_sha256(path)
    # a bright square in the top-left corner changes the features there more than
    # in the opposite corner: the token grid lies on the image, not shifted off it
    plain = np.full((56, 56, 3), 90, np.uint8)
    marked = plain.copy()
    marked[:12, :12] = 250
    diff = np.abs(backend.extract(marked).features - backend.extract(plain).features).mean(-1)
    assert diff[:12, :12].mean() > 2 * diff[-12:, -12:].mean()


def test_importing_the_backend_loads_no_torch() -> None:
    code = (
        "import sys, prompting.features.backbone; "
        "sys.exit(1 if 'torch' in sys.modules or 'timm' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_sam_embedding_fused_when_a_checkpoint_is_given(shipped, tiny_sam_checkpoint) -> None:
    """With ``sam`` options the backbone appends SAM's embedding, projected to
    SAM_FUSED_DIMS channels at pixel resolution, standardised per image; the
    fingerprint carries SAM's, and the options rebuild the same backend."""
    from prompting.features.backbone import SAM_FUSED_DIMS
    from prompting.features.sam import SamBackend

    sam_options = {
        "model_type": tiny_sam_checkpoint.model_type,
        "checkpoint": str(tiny_sam_checkpoint.checkpoint),
    }
    fused = backend_create("backbone", sam=sam_options)
    img = _image(48, 64)
    plain = shipped.extract(img).features
    features = fused.extract(img).features
    assert features.shape == (48, 64, plain.shape[-1] + SAM_FUSED_DIMS)
    np.testing.assert_array_equal(features[..., : plain.shape[-1]], plain)
    sam_part = features[..., plain.shape[-1] :]
    assert np.isfinite(sam_part).all()
    np.testing.assert_allclose(sam_part.mean(axis=(0, 1)), 0, atol=1e-3)
    # the projection of SAM's own cells, not noise: channels vary with the embedding
    cells = SamBackend(**sam_options).extract(img).features
    assert cells.shape[-1] == 256 and sam_part.std(axis=(0, 1)).min() > 0.5
    assert fused.fingerprint() != shipped.fingerprint()
    assert fused.options["sam"]["checkpoint"] == str(tiny_sam_checkpoint.checkpoint)
    assert backend_create("backbone", **fused.options).fingerprint() == fused.fingerprint()
    assert shipped.options["sam"] is None


def test_sam_fusion_options_are_checked(tmp_path) -> None:
    with pytest.raises(BackendError, match="sam must be the options of the sam backend"):
        backend_create("backbone", sam="vit_b")
    with pytest.raises(BackendError, match="SAM checkpoint not found"):
        backend_create("backbone", sam={"checkpoint": str(tmp_path / "missing.pth")})


def test_a_learner_trains_and_predicts_on_fused_features(tiny_sam_checkpoint) -> None:
    from prompting.learner import TrainingImage, learner_train

    fused = backend_create(
        "backbone",
        sam={
            "model_type": tiny_sam_checkpoint.model_type,
            "checkpoint": str(tiny_sam_checkpoint.checkpoint),
        },
    )
    images = []
    for i in range(3):
        img = _image(48, 64, seed=i)
        img[10:20, 20:40] = 255  # a bright defect
        labels = np.full((48, 64), -1, np.int16)
        labels[12:18, 24:36] = 1
        labels[30:40, 5:60] = 0
        images.append(TrainingImage(f"im{i}", img, labels))
    result = learner_train(images, classes=["scratch"], backend=fused, steps=60, anomaly=False)
    probs = result.learner.predict_proba(images[0].pixels, backend=fused)
    assert probs.shape == (2, 48, 64) and np.allclose(probs.sum(axis=0), 1, atol=1e-4)
    assert result.learner.backend_options["sam"] is not None
    assert probs[1, 12:18, 24:36].mean() > probs[1, 30:40, 5:60].mean()


def test_anomaly_patch_grids_come_from_the_feature_cache(shipped, tmp_path) -> None:
    """A retraining on unchanged images runs no network pass for the anomaly bank,
    and a prediction's anomaly map from cached patches equals the computed one."""
    from prompting.features.cache import FeatureCache
    from prompting.images import pixels_hash
    from prompting.learner import TrainingImage, learner_train

    cache = FeatureCache(tmp_path / "cache", max_bytes=512 * 1024**2)
    images = []
    for i in range(3):
        img = _image(64, 80, seed=i)
        img[20:30, 30:50] = 255
        labels = np.full((64, 80), -1, np.int16)
        labels[22:28, 34:46] = 1
        labels[45:60, 5:75] = 0
        images.append(TrainingImage(f"im{i}", img, labels, image_hash=pixels_hash(img)))
    free = _image(64, 80, seed=9)
    images.append(
        TrainingImage(
            "ok", free, np.full((64, 80), -1, np.int16), pixels_hash(free), all_background=True
        )
    )
    first = learner_train(images, classes=["scratch"], backend=shipped, cache=cache, steps=40)
    assert first.timings["anomaly_computed"] == 4 and first.timings["anomaly_cached"] == 0
    calls = []
    real = shipped.anomaly_patches
    shipped.anomaly_patches = lambda *a, **k: calls.append(1) or real(*a, **k)
    try:
        again = learner_train(images, classes=["scratch"], backend=shipped, cache=cache, steps=40)
        assert again.timings["anomaly_cached"] == 4 and again.timings["anomaly_computed"] == 0
        assert calls == []
        learner = again.learner
        np.testing.assert_array_equal(learner.anomaly.bank, first.learner.anomaly.bank)
        probe = _image(64, 80, seed=5)
        computed = learner.anomaly_map(probe, backend=shipped)
        assert len(calls) == 1
        stored = learner.anomaly_map(probe, backend=shipped, cache=cache)  # computed, then stored
        from_cache = learner.anomaly_map(probe, backend=shipped, cache=cache)
        assert len(calls) == 2
    finally:
        del shipped.anomaly_patches
    np.testing.assert_array_equal(computed, stored)
    np.testing.assert_array_equal(computed, from_cache)


def test_training_images_get_held_out_anomaly_maps(shipped, tmp_path) -> None:
    """A training image (recognised by its pixels, whatever id or cache key it is
    given) is scored without its own bank rows; the record survives save and
    load, and a model saved without it still loads and scores in-sample."""
    from prompting.classifier import Learner
    from prompting.learner import TrainingImage, learner_train

    blank = np.full((64, 80), -1, np.int16)
    pixels = [_image(64, 80, seed=i) for i in range(3)]
    images = [TrainingImage(f"ok{i}", p, blank, all_background=True) for i, p in enumerate(pixels)]
    learner = learner_train(images, classes=["scratch"], backend=shipped).learner
    assert learner.anomaly_held_out
    held_out = learner.anomaly_map(pixels[0], backend=shipped)
    assert held_out.max() <= 1.0 + 1e-5  # a good training image, held out: at most the level
    in_sample = learner.anomaly.score_map(
        shipped.anomaly_patches(pixels[0], stages=learner.anomaly.stages), image_size=(64, 80)
    )
    assert in_sample.max() < 0.5 * held_out.max()  # its own patches would hide everything
    learner.save(tmp_path / "m.npz")
    loaded = Learner.load(tmp_path / "m.npz")
    np.testing.assert_array_equal(loaded.anomaly.origin, learner.anomaly.origin)
    np.testing.assert_allclose(loaded.anomaly_map(pixels[0], backend=shipped), held_out, atol=1e-2)
    learner.anomaly.origin, learner.anomaly.origin_keys = None, ()  # as saved before the record
    learner.save(tmp_path / "old.npz")
    old = Learner.load(tmp_path / "old.npz")
    assert old.anomaly.origin is None and not old.anomaly_held_out
    np.testing.assert_allclose(old.anomaly_map(pixels[0], backend=shipped), in_sample, atol=1e-2)


def test_the_loaded_network_has_its_batchnorms_folded_with_the_same_outputs(shipped) -> None:
    """The shipped network runs with each BatchNorm folded into its convolution; its
    stage outputs equal the unfolded network's to float rounding."""
    from prompting.features.backbone.networks import architecture_get

    state = torch.load(shipped.checkpoint, map_location="cpu", weights_only=True)
    plain = architecture_get(shipped.arch.name).build(state).eval()
    folded = shipped.network()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    x = torch.from_numpy(_image(64, 96).astype(np.float32)).permute(2, 0, 1)[None]
    x = ((x - 127.0) / 128.0).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        for a, b in zip(plain(x), folded(x), strict=True):
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4 * float(a.abs().max()))


def test_a_network_whose_norm_does_not_follow_its_convolution_is_left_unfolded() -> None:
    """Folding pairs each norm with the convolution registered before it; where the
    forward pass does not run them in that order, the probe sees it and the network
    stays as it is."""
    from prompting.features.backbone.networks import batchnorm_folded

    class Crossed(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 3, 3, padding=1)
            self.bn = torch.nn.BatchNorm2d(3)

        def forward(self, x):  # the norm runs first, then the convolution
            return [self.conv(self.bn(x))]

    net = Crossed()
    with torch.no_grad():
        net.bn.running_mean.uniform_(-1, 1)
        net.bn.running_var.uniform_(0.5, 2)
        net.bn.weight.uniform_(0.5, 2)
    net.eval()
    kept, worst = batchnorm_folded(net)
    assert kept is net and worst == float("inf")
    assert isinstance(net.bn, torch.nn.BatchNorm2d)  # the original was not touched

    class Straight(Crossed):
        def forward(self, x):
            return [self.bn(self.conv(x))]

    ok = Straight()
    ok.load_state_dict(net.state_dict())
    ok.eval()
    folded, worst = batchnorm_folded(ok)
    assert folded is not ok and worst < 1e-5 and isinstance(folded.bn, torch.nn.Identity)
