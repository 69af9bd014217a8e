"""SAM loader, embeddings and backend, on the tiny random SAM from conftest."""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from prompting.errors import BackendError, ImageError
from prompting.features import backend_create
from prompting.features import sam as sam_mod
from prompting.features.sam import (
    SamBackend,
    SamEmbedding,
    sam_bf16_validate,
    sam_model_cache_clear,
    sam_model_load,
    sam_model_type_register,
    sam_model_types,
    torch_threads_configure,
)
from prompting.features.sam import bf16 as sam_bf16
from prompting.features.sam import model as sam_model
from prompting.features.sam import registry as sam_registry


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 3), np.uint8)
    img[:] = (40, 60, 80)
    img[h // 4 : h // 2, w // 4 : w // 2] = (220, 200, 30)
    return np.clip(img + rng.integers(0, 20, img.shape), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------- embeddings


@pytest.mark.parametrize(
    ("shape", "input_size", "grid"),
    [
        ((480, 640), (768, 1024), (48, 64)),
        ((640, 480), (1024, 768), (64, 48)),
        ((100, 100), (1024, 1024), (64, 64)),
        ((50, 300), (171, 1024), (11, 64)),
    ],
)
def test_embed_shapes_and_valid_grid(tiny_sam_model, shape, input_size, grid) -> None:
    emb = tiny_sam_model.embed(_image(*shape))
    assert emb.embedding.shape == (1, 256, 64, 64)
    assert emb.embedding.dtype == np.float32
    assert emb.original_size == shape
    assert emb.input_size == input_size
    assert emb.grid_size == grid
    fmap = emb.feature_map()
    assert fmap.features.shape == (*grid, 256)
    assert fmap.features.dtype == np.float32
    assert fmap.image_size == shape
    np.testing.assert_array_equal(fmap.features[3, 5], emb.embedding[0, :, 3, 5])


def test_embed_matches_sam_predictor(tiny_sam_model, tiny_sam_reference) -> None:
    from segment_anything import SamPredictor

    img = _image(120, 160)
    predictor = SamPredictor(tiny_sam_reference)
    predictor.set_image(img)
    emb = tiny_sam_model.embed(img)
    np.testing.assert_allclose(
        emb.embedding, predictor.get_image_embedding().numpy(), rtol=0, atol=1e-5
    )


@pytest.fixture(scope="module")
def reference_predictions(tiny_sam_reference):
    """SamPredictor (untouched segment_anything) results, per image shape, prompt and multimask."""
    from segment_anything import SamPredictor

    cache: dict = {}
    predictors: dict = {}

    def predict(shape, prompt_id, multimask, mask_input=None):
        mask_key = None if mask_input is None else hashlib.sha256(mask_input.tobytes()).hexdigest()
        key = (shape, prompt_id, multimask, mask_key)
        if shape not in predictors:
            predictors[shape] = SamPredictor(tiny_sam_reference)
            predictors[shape].set_image(_image(*shape))
        if key not in cache:
            cache[key] = predictors[shape].predict(
                **DECODE_PROMPTS[prompt_id], multimask_output=multimask, mask_input=mask_input
            )
        return cache[key]

    return predict


DECODE_PROMPTS = {
    "click": {"point_coords": np.array([[50.0, 40.0]]), "point_labels": np.array([1])},
    "points+box": {
        "point_coords": np.array([[50.0, 40.0], [120.0, 90.0]]),
        "point_labels": np.array([1, 0]),
        "box": np.array([20.0, 10.0, 90.0, 70.0]),
    },
    "box": {"box": np.array([20.0, 10.0, 90.0, 70.0])},
}


@pytest.fixture(scope="module")
def embeddings(tiny_sam_model):
    cache: dict = {}

    def get(shape):
        if shape not in cache:
            cache[shape] = tiny_sam_model.embed(_image(*shape))
        return cache[shape]

    return get


@pytest.mark.parametrize(
    ("shape", "prompt_id", "multimask", "fast"),
    [
        ((120, 160), "click", True, True),
        ((120, 160), "points+box", False, True),
        ((96, 1024), "box", False, True),
        ((96, 1024), "points+box", True, True),
        ((120, 160), "points+box", True, False),
        ((96, 1024), "click", True, False),
    ],
    ids=lambda v: "x".join(map(str, v)) if isinstance(v, tuple) else str(v),
)
def test_decode_matches_sam_predictor(
    tiny_sam_model,
    reference_predictions,
    embeddings,
    monkeypatch,
    shape,
    prompt_id,
    multimask,
    fast,
) -> None:
    """``fast``: our decoder path (``_sam_decoder``); else segment_anything's modules."""
    monkeypatch.setattr(tiny_sam_model, "_fast_decoder", fast)
    emb = embeddings(shape)
    n = 3 if multimask else 1
    want_masks, want_scores, want_low = reference_predictions(shape, prompt_id, multimask)
    masks, scores, low = tiny_sam_model.decode(
        emb, **DECODE_PROMPTS[prompt_id], multimask_output=multimask
    )
    assert masks.shape == (n, *shape) and masks.dtype == bool
    assert low.shape == (n, 256, 256) and low.dtype == np.float32
    np.testing.assert_allclose(scores, want_scores, atol=1e-4)
    np.testing.assert_allclose(low, want_low, atol=1e-3)
    assert (masks != want_masks).mean() < 1e-3
    # refinement with mask_input (the prep for the embedding is not used then)
    want = reference_predictions(shape, prompt_id, False, mask_input=want_low[:1])
    got = tiny_sam_model.decode(
        emb, **DECODE_PROMPTS[prompt_id], mask_input=low[:1], multimask_output=False
    )
    np.testing.assert_allclose(got[2], want[2], atol=1e-3)


def test_decoder_prep_is_kept_for_the_last_embedding(tiny_sam_model) -> None:
    emb = tiny_sam_model.embed(_image(40, 40))
    kwargs = DECODE_PROMPTS["click"]
    first = tiny_sam_model.decode(emb, **kwargs)
    assert tiny_sam_model._prep[0] is emb.embedding
    prep = tiny_sam_model._prep[1]
    again = tiny_sam_model.decode(emb, **kwargs)
    assert tiny_sam_model._prep[1] is prep
    np.testing.assert_array_equal(first[2], again[2])
    copy = SamEmbedding(emb.embedding.copy(), emb.original_size, emb.input_size)
    np.testing.assert_array_equal(tiny_sam_model.decode(copy, **kwargs)[2], first[2])
    assert tiny_sam_model._prep[0] is copy.embedding


@pytest.mark.parametrize(
    ("original", "input_size"),
    [
        ((768, 1024), (768, 1024)),
        ((120, 160), (768, 1024)),
        ((50, 300), (171, 1024)),
        ((1024, 1024), (1024, 1024)),
        ((3000, 1000), (1024, 341)),
        ((7, 5), (1024, 731)),
    ],
)
def test_masks_upscale_matches_sam_postprocess(tiny_sam_reference, original, input_size) -> None:
    low_res = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    want = tiny_sam_reference.postprocess_masks(low_res, input_size, original)[0]
    got = sam_model.masks_upscale(low_res, input_size, original, side=1024)
    assert got.shape == (3, *original)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    assert ((got > 0) != (want > 0)).float().mean() < 1e-4


@pytest.mark.parametrize(
    "bad",
    [np.zeros((8, 8), np.uint8), np.zeros((8, 8, 4), np.uint8), np.zeros((8, 8, 3), np.float32)],
)
def test_embed_rejects_non_rgb8(tiny_sam_model, bad) -> None:
    with pytest.raises(ImageError, match="uint8 RGB"):
        tiny_sam_model.embed(bad)


# ----------------------------------------------------------------- loader


def test_load_is_cached_per_process(tiny_sam_checkpoint) -> None:
    a = sam_model_load(
        model_type=tiny_sam_checkpoint.model_type, checkpoint=tiny_sam_checkpoint.checkpoint
    )
    b = sam_model_load(
        model_type=tiny_sam_checkpoint.model_type,
        checkpoint=Path(tiny_sam_checkpoint.checkpoint),
        device="cpu",
    )
    assert a is b
    assert a.model_type == tiny_sam_checkpoint.model_type
    assert a.dtype == "fp32" and a.dtype_requested == "fp32" and a.bf16_iou is None
    assert not a.sam.training


def test_concurrent_loads_build_one_model(tiny_sam_checkpoint_factory) -> None:
    ckpt = tiny_sam_checkpoint_factory(7)
    results = []

    def load() -> None:
        results.append(sam_model_load(model_type=ckpt.model_type, checkpoint=ckpt.checkpoint))

    threads = [threading.Thread(target=load) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 3 and all(r is results[0] for r in results)


def test_fingerprint_has_checkpoint_sha256_and_changes_with_weights(
    tiny_sam_checkpoint_factory,
) -> None:
    a, b = tiny_sam_checkpoint_factory(0), tiny_sam_checkpoint_factory(1)
    ma = sam_model_load(model_type=a.model_type, checkpoint=a.checkpoint)
    mb = sam_model_load(model_type=b.model_type, checkpoint=b.checkpoint)
    sha = hashlib.sha256(Path(a.checkpoint).read_bytes()).hexdigest()
    assert ma.checkpoint_sha256 == sha
    assert sha in ma.fingerprint and a.model_type in ma.fingerprint
    assert ma.fingerprint != mb.fingerprint
    backend = SamBackend(model_type=a.model_type, checkpoint=a.checkpoint)
    assert backend.fingerprint() == ma.fingerprint


def test_replaced_checkpoint_is_reloaded(tiny_sam_checkpoint_factory, tmp_path) -> None:
    a, b = tiny_sam_checkpoint_factory(0), tiny_sam_checkpoint_factory(1)
    path = tmp_path / "sam.pth"
    path.write_bytes(Path(a.checkpoint).read_bytes())
    first = sam_model_load(model_type=a.model_type, checkpoint=path)
    path.write_bytes(Path(b.checkpoint).read_bytes())
    os.utime(path, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    second = sam_model_load(model_type=a.model_type, checkpoint=path)
    assert second is not first
    assert second.fingerprint != first.fingerprint


def test_missing_checkpoint(tmp_path, tiny_sam_checkpoint) -> None:
    missing = tmp_path / "nope.pth"
    with pytest.raises(BackendError, match="not found") as info:
        sam_model_load(model_type=tiny_sam_checkpoint.model_type, checkpoint=missing)
    assert str(missing) in str(info.value)


@pytest.mark.parametrize(
    "content",
    [b"", b"this is not a checkpoint at all", b"PK\x03\x04" + b"\x00" * 200],
    ids=["empty", "text", "broken-zip"],
)
def test_garbage_checkpoint(tmp_path, tiny_sam_checkpoint, content) -> None:
    path = tmp_path / "garbage.pth"
    path.write_bytes(content)
    with pytest.raises(BackendError, match="not a readable torch weights file") as info:
        sam_model_load(model_type=tiny_sam_checkpoint.model_type, checkpoint=path)
    assert len(str(info.value)) < 400
    assert info.value.__cause__ is None


def test_pickled_object_is_refused_by_weights_only(tmp_path, tiny_sam_checkpoint) -> None:
    path = tmp_path / "pickle.pth"
    torch.save({"weights": Path("/etc/passwd")}, path)
    with pytest.raises(BackendError, match="not a readable torch weights file"):
        sam_model_load(model_type=tiny_sam_checkpoint.model_type, checkpoint=path)


def test_non_state_dict_checkpoint(tmp_path, tiny_sam_checkpoint) -> None:
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(2)], path)
    with pytest.raises(BackendError, match="does not hold a state_dict"):
        sam_model_load(model_type=tiny_sam_checkpoint.model_type, checkpoint=path)


def test_wrong_architecture_checkpoint(tmp_path, tiny_sam_checkpoint) -> None:
    state = torch.load(tiny_sam_checkpoint.checkpoint, weights_only=True)
    state["image_encoder.pos_embed"] = torch.zeros(1, 64, 64, 48)
    del state["mask_decoder.iou_token.weight"]
    state["image_encoder.extra.weight"] = torch.zeros(3)
    path = tmp_path / "other_arch.pth"
    torch.save(state, path)
    with pytest.raises(BackendError) as info:
        sam_model_load(model_type=tiny_sam_checkpoint.model_type, checkpoint=path)
    message = str(info.value)
    assert "does not fit model type" in message
    assert "image_encoder.pos_embed (1, 64, 64, 48) vs (1, 64, 64, 32)" in message
    assert "1 missing (mask_decoder.iou_token.weight)" in message
    assert "1 unexpected (image_encoder.extra.weight)" in message
    assert len(message) < 600


def test_wrapped_state_dict_is_accepted(tmp_path, tiny_sam_checkpoint) -> None:
    state = torch.load(tiny_sam_checkpoint.checkpoint, weights_only=True)
    path = tmp_path / "wrapped.pth"
    torch.save({"model": state}, path)
    model = sam_model_load(model_type=tiny_sam_checkpoint.model_type, checkpoint=path)
    assert model.embed(_image(32, 32)).embedding.shape == (1, 256, 64, 64)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"model_type": "vit_nope"}, "unknown SAM model type 'vit_nope'"),
        ({"dtype": "fp16"}, "unknown SAM dtype"),
        ({"device": "cuda:0"}, "CUDA is not available|cuda"),
        ({"device": "banana"}, "device"),
    ],
)
def test_bad_load_options(tiny_sam_checkpoint, options, match) -> None:
    if options.get("device", "").startswith("cuda") and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    kwargs = {
        "model_type": tiny_sam_checkpoint.model_type,
        "checkpoint": tiny_sam_checkpoint.checkpoint,
    }
    with pytest.raises(BackendError, match=match):
        sam_model_load(**(kwargs | options))


def test_model_type_registry_is_open(tiny_sam_checkpoint, monkeypatch) -> None:
    from tests.conftest import tiny_sam_build

    monkeypatch.setattr(sam_registry, "_MODEL_TYPES", dict(sam_registry._MODEL_TYPES))
    assert {"vit_b", "vit_l", "vit_h", tiny_sam_checkpoint.model_type} <= set(sam_model_types())
    sam_model_type_register("vit_t_test", tiny_sam_build)
    model = sam_model_load(model_type="vit_t_test", checkpoint=tiny_sam_checkpoint.checkpoint)
    assert model.model_type == "vit_t_test" and "vit_t_test" in model.fingerprint
    backend = backend_create(
        "sam", model_type="vit_t_test", checkpoint=tiny_sam_checkpoint.checkpoint
    )
    assert backend.extract(_image(30, 40)).features.shape == (48, 64, 256)


def test_model_types_from_environment(tiny_sam_checkpoint, monkeypatch) -> None:
    monkeypatch.setattr(sam_registry, "_MODEL_TYPES", dict(sam_registry._MODEL_TYPES))
    monkeypatch.setenv(
        sam_mod.MODEL_TYPES_ENV, "vit_env_test=tests.conftest:tiny_sam_build, broken=no_such_mod:x"
    )
    assert {"vit_env_test", "broken"} <= set(sam_model_types())
    model = sam_model_load(model_type="vit_env_test", checkpoint=tiny_sam_checkpoint.checkpoint)
    assert model.model_type == "vit_env_test"
    with pytest.raises(BackendError, match="cannot import 'no_such_mod:x'"):
        sam_model_load(model_type="broken", checkpoint=tiny_sam_checkpoint.checkpoint)


@pytest.mark.parametrize(("decode_threads", "expected"), [(1, 1), (0, None)])
def test_decode_runs_with_decode_threads_then_restores(
    tiny_sam_model, embeddings, monkeypatch, decode_threads, expected
) -> None:
    monkeypatch.setattr(tiny_sam_model, "decode_threads", decode_threads)
    before = torch.get_num_threads()
    seen = []
    original = tiny_sam_model.sam.prompt_encoder.forward

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return original(*args, **kwargs)

    monkeypatch.setattr(tiny_sam_model.sam.prompt_encoder, "forward", spy)
    tiny_sam_model.decode(embeddings((120, 160)), **DECODE_PROMPTS["click"])
    assert seen == [expected if expected is not None else before]
    assert torch.get_num_threads() == before


def test_malloc_tune_is_opt_out(monkeypatch) -> None:
    monkeypatch.setenv(sam_mod.MALLOC_TUNE_ENV, "0")
    assert sam_mod.malloc_tune() is False
    monkeypatch.delenv(sam_mod.MALLOC_TUNE_ENV)
    assert isinstance(sam_mod.malloc_tune(), bool)


def test_threads_are_capped_at_usable_cores() -> None:
    assert 1 <= torch_threads_configure() <= max(len(os.sched_getaffinity(0)), 1)


# ----------------------------------------------------------------- bf16


def test_bf16_validation_measures_mask_agreement(tiny_sam_model) -> None:
    iou = sam_bf16_validate(tiny_sam_model)
    assert 0.0 <= iou <= 1.0


@pytest.mark.parametrize(("iou", "in_use"), [(0.99, "bf16"), (0.98, "bf16"), (0.97, "fp32")])
def test_bf16_used_only_when_validated(
    tiny_sam_checkpoint, monkeypatch, caplog, iou, in_use
) -> None:
    monkeypatch.setattr(sam_bf16, "sam_bf16_validate", lambda model: iou)
    sam_model_cache_clear()
    caplog.set_level(logging.INFO, logger="prompting.features.sam")
    model = sam_model_load(
        model_type=tiny_sam_checkpoint.model_type,
        checkpoint=tiny_sam_checkpoint.checkpoint,
        dtype="bf16",
    )
    sam_model_cache_clear()
    assert model.dtype_requested == "bf16"
    assert model.dtype == in_use
    assert model.bf16_iou == iou
    assert f":{in_use}:" in model.fingerprint
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert bool(warned) == (in_use == "fp32")
    if warned:
        assert "using fp32" in warned[0].getMessage()


def test_bf16_embedding_runs_and_stays_close(tiny_sam_model) -> None:
    image = _image(48, 64)
    fp32 = tiny_sam_model._encode(image, bf16=False).embedding
    bf16 = tiny_sam_model._encode(image, bf16=True).embedding
    assert bf16.dtype == np.float32 and np.isfinite(bf16).all()
    assert not np.array_equal(bf16, fp32)
    rel = np.abs(bf16 - fp32).mean() / np.abs(fp32).mean()
    assert rel < 0.05


def test_bf16_decode_runs_the_decoder_under_autocast_and_stays_close(
    tiny_sam_model, monkeypatch
) -> None:
    import torch

    emb = tiny_sam_model._encode(_image(48, 64), bf16=False)
    prompt = {"point_coords": np.array([[30.0, 20.0]]), "point_labels": np.array([1])}
    seen = []
    real = tiny_sam_model._decode_masks

    def spy(*args, **kwargs):
        seen.append(torch.is_autocast_enabled("cpu"))
        return real(*args, **kwargs)

    monkeypatch.setattr(tiny_sam_model, "_decode_masks", spy)
    m32, s32, low32 = tiny_sam_model.decode(emb, **prompt)
    m16, s16, low16 = tiny_sam_model.decode(emb, bf16=True, **prompt)
    assert seen == [False, True]
    # outputs keep the fp32 interface: bool masks, float32 scores and logits
    assert m16.dtype == bool and m16.shape == m32.shape == (3, 48, 64)
    assert s16.dtype == np.float32 and low16.dtype == np.float32
    assert not np.array_equal(low16, low32)
    rel = np.abs(low16 - low32).mean() / np.abs(low32).mean()
    assert rel < 0.05
    # a model in bf16 mode decodes in bf16 by default; fp32 mode does not
    monkeypatch.setattr(tiny_sam_model, "dtype", "bf16")
    tiny_sam_model.decode(emb, **prompt)
    monkeypatch.setattr(tiny_sam_model, "dtype", "fp32")
    tiny_sam_model.decode(emb, **prompt)
    assert seen == [False, True, True, False]


def test_bf16_then_fp32_decode_on_one_embedding_matches_a_fresh_fp32_decode(
    tiny_sam_checkpoint,
) -> None:
    # the decoder's per-embedding work is kept in fp32 whichever decode came first
    from prompting.features.sam import SamModel

    fresh = sam_model_load(**tiny_sam_checkpoint._asdict())
    model = SamModel(
        sam=fresh.sam,
        model_type=fresh.model_type,
        checkpoint_sha256=fresh.checkpoint_sha256,
    )
    emb = model._encode(_image(48, 64), bf16=False)
    prompt = {"point_coords": np.array([[30.0, 20.0]]), "point_labels": np.array([1])}
    model.decode(emb, bf16=True, **prompt)
    _, _, low = model.decode(emb, bf16=False, **prompt)
    _, _, want = fresh.decode(emb, bf16=False, **prompt)
    np.testing.assert_allclose(low, want, atol=1e-5)


def test_bf16_validation_checks_the_bf16_decoder_too(tiny_sam_model, monkeypatch) -> None:
    calls = []
    real = tiny_sam_model.decode

    def spy(emb, **kwargs):
        calls.append(kwargs.get("bf16"))
        return real(emb, **kwargs)

    monkeypatch.setattr(tiny_sam_model, "decode", spy)
    sam_bf16_validate(tiny_sam_model)
    # each probe prompt: fp32 path then bf16 path
    assert calls and calls[0::2] == [False] * (len(calls) // 2)
    assert calls[1::2] == [True] * (len(calls) // 2)


# ----------------------------------------------------------------- backend


def test_backend_extract_is_cropped_feature_map(tiny_sam_checkpoint) -> None:
    backend = backend_create("sam", **tiny_sam_checkpoint._asdict())
    assert isinstance(backend, SamBackend) and backend.name == "sam"
    fmap = backend.extract(_image(480, 640))
    assert fmap.features.shape == (48, 64, 256)
    assert fmap.image_size == (480, 640)
    assert fmap.stride == (10.0, 10.0)
    assert backend.options == {
        "model_type": tiny_sam_checkpoint.model_type,
        "checkpoint": tiny_sam_checkpoint.checkpoint,
        "device": "cpu",
        "dtype": "fp32",
    }
    assert isinstance(backend.embed(_image(20, 20)), SamEmbedding)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({}, "needs checkpoint"),
        ({"checkpoint": "/nonexistent/sam.pth"}, "not found"),
        ({"checkpoint": "x.pth", "colour": "red"}, "unknown option"),
        ({"checkpoint": "x.pth", "model_type": "vit_zz"}, "unknown SAM model type"),
    ],
)
def test_backend_bad_options(options, match) -> None:
    with pytest.raises(BackendError, match=match):
        backend_create("sam", **options)


# ----------------------------------------------------------------- dtype "auto"


@pytest.mark.parametrize(
    ("device", "cuda_bf16", "amx", "chosen"),
    [
        ("cpu", False, True, "bf16"),  # a CPU with AMX tiles
        ("cpu", False, False, "fp32"),  # AVX2/AVX-512 only: bf16 would be slower
        ("cuda", True, False, "bf16"),
        ("cuda:1", False, True, "fp32"),  # an old GPU: the host CPU does not matter
    ],
)
def test_auto_dtype_follows_the_hardware(monkeypatch, device, cuda_bf16, amx, chosen) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: cuda_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    assert sam_mod.sam_dtype_resolve("auto", device=device) == chosen
    assert sam_mod.sam_dtype_resolve("fp32", device=device) == "fp32"
    assert sam_mod.sam_dtype_resolve("bf16", device=device) == "bf16"


def test_unknown_dtype_is_refused_by_the_resolver() -> None:
    with pytest.raises(BackendError, match="auto"):
        sam_mod.sam_dtype_resolve("fp16", device="cpu")


@pytest.mark.parametrize(("amx", "in_use"), [(False, "fp32"), (True, "bf16")])
def test_auto_dtype_loads_the_chosen_dtype_with_the_probe_check(
    tiny_sam_checkpoint, monkeypatch, amx, in_use
) -> None:
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    probed = []
    monkeypatch.setattr(sam_bf16, "sam_bf16_validate", lambda model: probed.append(1) or 0.99)
    sam_model_cache_clear()
    model = sam_model_load(
        model_type=tiny_sam_checkpoint.model_type,
        checkpoint=tiny_sam_checkpoint.checkpoint,
        dtype="auto",
    )
    sam_model_cache_clear()
    assert model.dtype_requested == "auto"
    assert model.dtype == in_use
    # bf16 is never used unchecked: the probe ran exactly when auto chose it
    assert probed == ([1] if amx else [])
    assert model.bf16_iou == (0.99 if amx else None)
    assert f":{in_use}:" in model.fingerprint
