"""How far a project's defects reach (``defect_extent``): a backbone project whose
defects are large regions trains models that also read a coarse stage."""

from __future__ import annotations

import io

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image as PILImage

from inspection.models import ModelVersion, Project
from inspection.services import engine
from prompting.features.backbone.networks import architecture_get
from tests.inspection.svc_helpers import job_wait

pytestmark = pytest.mark.timeout(900)

CLASSES = [{"name": "defect", "colour": "#ff0000"}]


def _create(client, **fields):
    return client.post(
        "/api/v1/projects/", {"name": "tiles", "classes": CLASSES, **fields}, format="json"
    )


def test_defect_extent_is_checked_and_kept(db, make_user, api_for):
    client = api_for(make_user("eng-extent"))
    r = _create(client, backend="backbone")
    assert r.status_code == 201 and r.json()["defect_extent"] == "local"

    n = Project.objects.count()
    r = _create(client, backend="classic", defect_extent="regional")
    assert r.status_code == 400
    assert "defect_extent" in r.json()["errors"]
    assert "backbone" in r.json()["errors"]["defect_extent"][0]
    r = _create(client, backend="backbone", defect_extent="huge")
    assert r.status_code == 400 and "defect_extent" in r.json()["errors"]
    assert Project.objects.count() == n  # nothing half-created

    r = _create(client, backend="backbone", defect_extent="regional")
    assert r.status_code == 201 and r.json()["defect_extent"] == "regional"
    url = f"/api/v1/projects/{r.json()['id']}/"
    # switching to a backend without stages while regional: refused, nothing changed
    r = client.patch(url, {"backend": "classic"}, format="json")
    assert r.status_code == 400 and "defect_extent" in r.json()["errors"]
    stored = client.get(url).json()
    assert (stored["backend"], stored["defect_extent"]) == ("backbone", "regional")
    # both in one request is fine
    r = client.patch(url, {"backend": "classic", "defect_extent": "local"}, format="json")
    assert r.status_code == 200
    assert (r.json()["backend"], r.json()["defect_extent"]) == ("classic", "local")


def test_regional_stages_are_the_default_ones_and_a_coarse_one():
    for name in ("efficientnet_lite0", "efficientnet_lite2", "resnet18"):
        arch = architecture_get(name)
        assert arch.regional_stages is not None
        assert set(arch.default_stages) < set(arch.regional_stages)
        assert max(arch.regional_stages) > max(arch.default_stages)


def test_project_backend_options_follow_the_extent(db, make_user, settings):
    from inspection.errors import Conflict
    from inspection.services.projects import project_create

    settings.SAM_CHECKPOINT = ""
    owner = make_user("eng-options")
    local = project_create(user=owner, name="a", classes=["defect"], backend="backbone")
    assert engine.project_backend_options(local) is None  # the backend's defaults
    regional = project_create(
        user=owner, name="b", classes=["defect"], backend="backbone", defect_extent="regional"
    )
    options = engine.project_backend_options(regional)
    assert options["stages"] == [1, 4] and options["arch"] == "efficientnet_lite2"
    backend = engine.backend_get("backbone", options)
    assert backend.fingerprint() != engine.backend_get("backbone").fingerprint()
    # a network that does not say which stages are regional: refused with the reason
    settings.BACKBONE_ARCH = "timm:resnet18"
    with pytest.raises(Conflict, match="no regional stages"):
        engine.project_backend_options(regional)


def _tile(seed: int) -> tuple[np.ndarray, int]:
    """A 96x96 striped grey tile; odd seeds have a brighter band (a large region) in
    their lower half. Returns (pixels, band top row or -1)."""
    rng = np.random.default_rng(seed)
    x = np.arange(96)
    stripes = 8 * np.sin(x / 2.0)[None, :]
    g = 110 + stripes + rng.normal(0, 3, (96, 96))
    top = -1
    if seed % 2:
        top = 48 + int(rng.integers(0, 12))
        g[top:] += 35
    return np.clip(g, 0, 255).astype(np.uint8), top


def _png(pixels: np.ndarray, name: str) -> SimpleUploadedFile:
    buf = io.BytesIO()
    PILImage.fromarray(pixels).save(buf, format="PNG")
    return SimpleUploadedFile(name, buf.getvalue())


@pytest.mark.parametrize(("extent", "stages"), [("local", [1]), ("regional", [1, 4])])
def test_a_run_trains_and_predicts_with_the_extents_stages(
    jobs_db, make_user, api_for, extent, stages
):
    client = api_for(make_user(f"eng-run-{extent}"))
    r = _create(client, backend="backbone", defect_extent=extent)
    assert r.status_code == 201, r.content
    pid = r.json()["id"]
    tiles = [_tile(i) for i in range(10)]
    files = [_png(px, f"t{i}.png") for i, (px, _) in enumerate(tiles)]
    r = client.post(f"/api/v1/projects/{pid}/images/", {"file": files}, format="multipart")
    assert r.status_code == 201, r.content
    images = sorted(r.json()["images"], key=lambda im: im["original_name"])
    for im, (_, top) in zip(images, tiles, strict=True):
        strokes = [{"kind": "stroke", "label": "background", "points": [[4, 10], [90, 10]]}]
        if top >= 0:
            y = (top + 95) // 2
            strokes.append({"kind": "stroke", "label": "defect", "points": [[6, y], [88, y]]})
        for p in strokes:
            r = client.post(
                f"/api/v1/images/{im['id']}/prompts/", {**p, "radius": 2}, format="json"
            )
            assert r.status_code == 201, r.content
    r = client.post(f"/api/v1/projects/{pid}/train/")
    assert r.status_code == 202, r.content
    job = job_wait(r.json()["job"]["id"])
    assert job.state == "succeeded", (job.message, job.error)
    mv = ModelVersion.objects.get(project_id=pid)
    assert mv.config["backend_options"]["stages"] == stages
    # the model predicts with its own stages whatever the project says later
    assert engine.backend_for(mv).stages == tuple(stages)
    r = client.get(f"/api/v1/projects/{pid}/predictions/")
    preds = r.json()["results"]
    assert len(preds) == 10
    assert all(p["model_version"] == str(mv.id) for p in preds)
