"""A model keeps predicting with the feature options it was trained with, whatever
the backend's defaults are now."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inspection.models import ModelVersion
from inspection.services import engine, inspections
from inspection.services.projects import project_create
from inspection.storage import bytes_save
from prompting.errors import ArtifactError
from prompting.features import backend_create
from prompting.features.backbone.networks import LITE0_WHEEL_SHA256, LITE2_WHEEL_SHA256
from prompting.images import png_encode
from prompting.learner import TrainingImage, learner_train


def _image(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A grey image with a dark square, and strokes: the square's centre and a background row."""
    rng = np.random.default_rng(seed)
    rgb = np.clip(150 + rng.normal(0, 5, (40, 40, 3)), 0, 255).astype(np.uint8)
    rgb[12:24, 12:24] = 60
    labels = np.full((40, 40), -1, np.int16)
    labels[15:21, 15:21] = 1
    labels[33:36, 2:38] = 0
    return rgb, labels


@pytest.fixture
def model_with_own_options(db, make_user, tmp_path):
    """A classic model trained on scales 1 and 2 only (the default is 1 to 16)."""
    owner = make_user("eng")
    project = project_create(user=owner, name="p", classes=["scratch"])
    backend = backend_create("classic", sigmas=[1.0, 2.0])
    images = [TrainingImage(f"im{i}", *_image(i)) for i in range(3)]
    learner = learner_train(images, classes=["scratch"], backend=backend, calibrate=False).learner
    path = Path(tmp_path) / "model.npz"
    learner.save(path)
    name = bytes_save(f"projects/{project.id}/models/own-options.npz", path.read_bytes())
    mv = ModelVersion.objects.create(
        project=project,
        number=1,
        backend="classic",
        backend_fingerprint=learner.backend_fingerprint,
        artifact=name,
    )
    project.deployed_model = mv
    project.save(update_fields=["deployed_model"])
    return project, mv


def test_backend_for_rebuilds_the_models_own_options(model_with_own_options):
    _, mv = model_with_own_options
    learner = engine.learner_get(mv)
    backend = engine.backend_for(mv)
    assert backend.sigmas == (1.0, 2.0)
    learner.check_backend(backend)  # same fingerprint
    # the backend's defaults are not what this model was trained on
    with pytest.raises(ArtifactError):
        learner.check_backend(engine.backend_get("classic"))


def test_inspecting_with_a_non_default_model_works(model_with_own_options):
    project, _ = model_with_own_options
    rgb, _ = _image(9)
    ins = inspections.inspection_run(project=project, data=png_encode(rgb), station="s")
    assert ins.verdict == "NG"
    # a blob on the dark square (rows and columns 12-23), none elsewhere
    assert ins.blobs and all(12 <= c <= 24 for b in ins.blobs for c in b["centroid"])


def _own_options_cache_entry(mv, pixels_hash: str) -> str:
    from prompting.features.cache import cache_key

    key = cache_key(mv.backend_fingerprint, pixels_hash)
    engine.feature_cache_get().put(key, np.zeros((4, 4, 2), np.float32))
    return key


def test_cache_purge_removes_entries_of_a_models_own_options(model_with_own_options):
    """A deleted image's features computed for a non-default model go too."""
    from inspection.services.retention import cache_purge

    _, mv = model_with_own_options
    key = _own_options_cache_entry(mv, "ab" * 32)  # no image has this hash
    cache = engine.feature_cache_get()
    assert key in cache
    assert cache_purge(images=["ab" * 32]) == 1
    assert key not in cache


def test_orphans_keep_a_live_images_entries_of_a_models_own_options(model_with_own_options):
    """While the model exists, its features of a stored image are not orphans; once
    the model is gone, they are."""
    from inspection.models import Image
    from inspection.services.retention import orphans_find

    project, mv = model_with_own_options
    image = Image.objects.create(
        project=project, file="x.png", sha256="ef" * 32, width=4, height=4, pixels_hash="cd" * 32
    )
    key = _own_options_cache_entry(mv, image.pixels_hash)
    assert key not in orphans_find(load_sam=False).cache
    project.deployed_model = None
    project.save(update_fields=["deployed_model"])
    mv.delete()
    assert key in orphans_find(load_sam=False).cache


def test_new_backbone_models_fuse_sam_when_it_is_configured(settings, tiny_sam_checkpoint):
    settings.SAM_CHECKPOINT = ""
    assert "sam" not in engine.backbone_options()
    settings.SAM_MODEL_TYPE = tiny_sam_checkpoint.model_type
    settings.SAM_CHECKPOINT = str(tiny_sam_checkpoint.checkpoint)
    settings.BACKBONE_FUSE_SAM = True
    options = engine.backbone_options()
    assert options["sam"]["checkpoint"] == str(tiny_sam_checkpoint.checkpoint)
    backend = engine.backend_get("backbone")
    assert backend.sam is not None and backend.sam.model_type == tiny_sam_checkpoint.model_type
    settings.BACKBONE_FUSE_SAM = False
    assert "sam" not in engine.backbone_options()


def test_backbone_arch_setting_picks_the_shipped_network_for_new_models(settings):
    settings.SAM_CHECKPOINT = ""
    assert engine.backbone_options()["arch"] == "efficientnet_lite2"
    assert engine.backend_get("backbone").sha256 == LITE2_WHEEL_SHA256
    settings.BACKBONE_ARCH = "efficientnet_lite0"
    assert engine.backbone_options()["arch"] == "efficientnet_lite0"
    lite0 = engine.backend_get("backbone")
    assert lite0.sha256 == LITE0_WHEEL_SHA256
    assert LITE0_WHEEL_SHA256[:12] in lite0.fingerprint()
