"""Interchange: COCO, Label Studio and PNG masks out; COCO and Label Studio in.

Our exports are read by the other tools' own code (pycocotools, the Label
Studio SDK's converter) in .venv-labelstudio, and a round trip (export, import
into a new project with the same images) gives identical masks."""

from __future__ import annotations

import io
import json
import os
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest

from prompting.interchange import (
    coco_rle_counts,
    coco_rle_decode,
    coco_rle_encode,
    ls_brush_decode,
    ls_brush_encode,
)

REPO = Path(__file__).resolve().parents[2]
READERS = REPO / "tests" / "inspection" / "interchange_readers.py"
LS_VENV = REPO / ".venv-labelstudio"
CLASSES = ["crack", "blowhole"]


# --------------------------------------------------------------------------- encodings
@pytest.mark.parametrize(
    "mask, counts",
    [
        ([[0, 1], [0, 1]], [2, 2]),
        ([[1, 1], [0, 0]], [0, 1, 1, 1, 1]),
        ([[0, 0, 0]], [3]),
        ([[1]], [0, 1]),
    ],
)
def test_coco_counts_are_column_major_from_a_zero_run(mask, counts):
    arr = np.array(mask, bool)
    assert coco_rle_counts(arr) == counts
    assert (coco_rle_decode({"size": list(arr.shape), "counts": counts}) == arr).all()
    assert (coco_rle_decode(coco_rle_encode(arr)) == arr).all()


def test_coco_string_is_what_pycocotools_writes():
    """Strings from ``pycocotools.mask.encode`` (2.0.11) of the same masks."""
    mask = np.array([[0, 1, 1], [1, 0, 1], [1, 0, 0], [0, 0, 0]], bool)
    assert coco_rle_counts(mask) == [1, 2, 1, 1, 3, 2, 2]
    assert coco_rle_encode(mask) == {"size": [4, 3], "counts": "121O21O"}
    big = np.zeros((300, 200), bool)
    big[100:250, 20:180] = True  # counts past 2**5: multi-character, differences from i - 2
    assert coco_rle_encode(big)["counts"] == "dn5f4f4" + "0" * 317 + "\\h5"
    for m in (mask, big):
        assert (coco_rle_decode(coco_rle_encode(m)) == m).all()


@pytest.mark.parametrize(
    "bad", [{"size": [2, 2], "counts": [1, 1]}, {"size": [2], "counts": "0"}, {}]
)
def test_coco_decode_refuses_what_does_not_fit(bad):
    with pytest.raises(ValueError):
        coco_rle_decode(bad)


def test_brush_round_trip_and_long_runs():
    rng = np.random.default_rng(1)
    for shape in [(1, 1), (9, 7), (130, 140)]:
        mask = rng.random(shape) < 0.3
        mask[: shape[0] // 2] = False  # a run longer than 2**16 values on the biggest
        assert (
            ls_brush_decode(ls_brush_encode(mask), height=shape[0], width=shape[1]) == mask
        ).all()
    with pytest.raises(ValueError, match="values"):
        ls_brush_decode(ls_brush_encode(np.zeros((3, 3), bool)), height=4, width=3)
    with pytest.raises(ValueError, match="truncated"):
        ls_brush_decode(ls_brush_encode(np.eye(5, dtype=bool))[:8], height=5, width=5)


# --------------------------------------------------------------------------- a labelled project
def _tiles(n: int):
    from PIL import Image as PILImage

    from tests.inspection.svc_helpers import image_path, magnetic_pick, mask_path

    out = []
    for row in magnetic_pick(n - 2, 2, seed=5):
        data = image_path(row).read_bytes()
        mask = np.asarray(PILImage.open(mask_path(row)).convert("L")) > 0
        out.append((image_path(row).name, data, mask))
    return out


def _project(owner, name: str):
    from inspection.services.projects import project_create

    return project_create(
        user=owner, name=name, classes=[{"name": c, "colour": "#ff0000"} for c in CLASSES]
    )


@pytest.fixture
def labelled(db, make_user):
    """Project A: 5 real tiles: 2 with defect masks, 1 OK, 1 NG without a mask,
    1 unlabelled; a deployed model whose stored predictions split each defect
    mask into its two classes."""
    from inspection.models import ModelVersion
    from inspection.services.images import image_ground_truth_set, images_upload
    from inspection.services.predictions import prediction_store
    from inspection.services.rulesets import ruleset_active_get
    from prompting.images import png_encode

    owner = make_user("eng")
    project = _project(owner, "A")
    tiles = _tiles(5)
    images = [
        r.image
        for r in images_upload(project=project, files=[(n, d) for n, d, _ in tiles], user=owner)
    ]
    for k, (image, (_, _, mask)) in enumerate(zip(images, tiles, strict=True)):
        if k < 2:
            image_ground_truth_set(image=image, mask=png_encode(mask.astype(np.uint8) * 255))
        elif k == 2:
            image_ground_truth_set(image=image, verdict="OK")
        elif k == 3:
            image_ground_truth_set(image=image, verdict="NG")
    mv = ModelVersion.objects.create(
        project=project, number=1, backend="classic", classes=CLASSES, artifact="m.npz"
    )
    project.deployed_model = mv
    project.save(update_fields=["deployed_model"])
    ruleset = ruleset_active_get(project=project)
    for image, (_, _, mask) in zip(images, tiles, strict=True):
        h, w = mask.shape
        probs = np.full((3, h, w), 0.02, np.float32)
        left = np.zeros_like(mask)
        left[:, : w // 2] = True
        probs[1][mask & left] = 0.95
        probs[2][mask & ~left] = 0.9
        probs[0] = 1 - probs[1] - probs[2]
        prediction_store(
            image=image, model_version=mv, ruleset=ruleset, probabilities=probs,
            rgb8=np.zeros((h, w, 3), np.uint8),
        )  # fmt: skip
    project.refresh_from_db()
    return project, owner, tiles


def _gt(image) -> np.ndarray:
    from inspection.services import engine

    mask = engine.image_mask_load(image)
    return np.zeros((image.height, image.width), bool) if mask is None else mask


def _fresh_copy(owner, tiles, name: str):
    """Project with the same images and no ground truth."""
    from inspection.services.images import images_upload

    project = _project(owner, name)
    images_upload(project=project, files=[(n, d) for n, d, _ in tiles], user=owner)
    return project


def _by_sha(project) -> dict:
    return {im.sha256: im for im in project.images.all()}


@pytest.mark.parametrize("fmt", ["coco", "labelstudio"])
def test_round_trip_gives_identical_masks(labelled, api_for, fmt):
    """Export A's ground truth, import it into B (same images, no ground truth):
    every mask and verdict is the same; the unlabelled image stays unlabelled."""
    project, owner, tiles = labelled
    api = api_for(owner)
    path = "coco/" if fmt == "coco" else "labelstudio/"
    r = api.get(f"/api/v1/projects/{project.id}/export/{path}")
    assert r.status_code == 200 and "attachment" in r["Content-Disposition"]
    exported = r.json()
    copy = _fresh_copy(owner, tiles, "B")
    r = api.post(f"/api/v1/projects/{copy.id}/import/{path}", exported, format="json")
    assert r.status_code == 200, r.content
    expected_matched = 4 if fmt == "coco" else 3  # Label Studio has no mask-less NG
    assert (r.json()["matched"], r.json()["unmatched"]) == (expected_matched, [])
    a, b = _by_sha(project), _by_sha(copy)
    for sha, image in a.items():
        if fmt == "labelstudio" and image.verdict == "NG" and not image.mask:
            assert b[sha].verdict == ""
            continue
        assert b[sha].verdict == image.verdict, image.original_name
        assert (_gt(b[sha]) == _gt(image)).all(), image.original_name
    assert sum(1 for im in b.values() if im.verdict == "NG") >= 2


def test_import_as_a_file_and_by_name(labelled, api_for):
    """A COCO file without our sha256 (as other tools write it) matches by file name."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    project, owner, tiles = labelled
    api = api_for(owner)
    data = api.get(f"/api/v1/projects/{project.id}/export/coco/").json()
    for entry in data["images"]:
        del entry["sha256"]
    data["images"].append({"id": 99, "file_name": "not-here.png", "width": 5, "height": 5})
    copy = _fresh_copy(owner, tiles, "C")
    upload = SimpleUploadedFile("coco.json", json.dumps(data).encode(), "application/json")
    r = api.post(f"/api/v1/projects/{copy.id}/import/coco/", {"file": upload}, format="multipart")
    assert r.status_code == 200, r.content
    assert r.json()["matched"] == 4 and r.json()["unmatched"] == ["not-here.png"]
    a, b = _by_sha(project), _by_sha(copy)
    assert all((_gt(b[s]) == _gt(im)).all() for s, im in a.items())


@pytest.mark.parametrize(
    "fmt, doc, field",
    [
        ("coco", {"annotations": []}, "images"),
        ("coco", {"images": [{"file_name": "x"}]}, "images[0]"),
        ("coco", "IMAGES", "annotations[0].segmentation"),
        ("labelstudio", {"not": "a list"}, "tasks"),
        ("labelstudio", "TASKS", "tasks[0].annotations.result[0]"),
    ],
)
def test_bad_imports_name_the_field_and_change_nothing(labelled, api_for, fmt, doc, field):
    project, owner, tiles = labelled
    api = api_for(owner)
    if doc == "IMAGES":  # a polygon, which we don't read
        doc = api.get(f"/api/v1/projects/{project.id}/export/coco/").json()
        doc["annotations"][0]["segmentation"] = [[0, 0, 5, 0, 5, 5]]
    if doc == "TASKS":  # a brush of another size
        doc = api.get(f"/api/v1/projects/{project.id}/export/labelstudio/").json()
        doc = [t for t in doc if t["annotations"] and t["annotations"][0]["result"]]
        doc[0]["annotations"][0]["result"][0]["original_width"] += 1
    copy = _fresh_copy(owner, tiles, "D")
    r = api.post(f"/api/v1/projects/{copy.id}/import/{fmt}/", doc, format="json")
    assert r.status_code == 400, r.content
    assert field in r.json()["errors"]
    assert not copy.images.exclude(verdict="").exists()


def test_masks_zip(labelled, api_for):
    from inspection.services.interchange import _deployed_predictions, _label_map

    project, owner, _ = labelled
    r = api_for(owner).get(f"/api/v1/projects/{project.id}/export/masks/")
    assert r.status_code == 200 and r["Content-Type"] == "application/zip"
    zf = zipfile.ZipFile(io.BytesIO(r.content))
    manifest = json.loads(zf.read("manifest.json"))
    assert manifest["classes"] == CLASSES and len(manifest["images"]) == 5
    preds = _deployed_predictions(project)
    by_sha = _by_sha(project)
    from PIL import Image as PILImage

    for entry in manifest["images"]:
        image = by_sha[entry["sha256"]]
        if "ground_truth" in entry:
            gt = np.asarray(PILImage.open(io.BytesIO(zf.read(entry["ground_truth"]))))
            assert ((gt == 255) == _gt(image)).all() and set(np.unique(gt)) <= {0, 255}
        else:
            assert image.verdict == ""
        pred = np.asarray(PILImage.open(io.BytesIO(zf.read(entry["predictions"]))))
        assert (pred == _label_map(preds[image.id], 2)).all()
    assert sum("ground_truth" in e for e in manifest["images"]) == 4


def test_viewers_export_engineers_import(labelled, api_for, make_user):
    from inspection.services.projects import membership_set

    project, _, _ = labelled
    viewer = make_user("viewer")
    membership_set(project=project, username="viewer", role="viewer")
    api = api_for(viewer)
    assert (
        api.get(f"/api/v1/projects/{project.id}/export/coco/?source=predictions").status_code == 200
    )
    assert (
        api.post(
            f"/api/v1/projects/{project.id}/import/coco/", {"images": []}, format="json"
        ).status_code
        == 403
    )
    r = api.get(f"/api/v1/projects/{project.id}/export/coco/?source=nope")
    assert r.status_code == 400 and "source" in r.json()["errors"]


# --------------------------------------------------------------------------- the other tools read it
@pytest.fixture(scope="session")
def labelstudio_python() -> Path:
    """The readers' interpreter: .venv-labelstudio, made by the test setup
    (scripts/test.sh; here too when missing). Never skipped."""
    python = LS_VENV / "bin" / "python"
    if not (LS_VENV / ".installed-requirements-labelstudio.txt").exists():
        subprocess.run(
            ["bash", "scripts/setup.sh", "requirements-labelstudio.txt", str(LS_VENV)],
            cwd=REPO,
            check=True,
        )
    assert python.exists(), f"{python} missing after scripts/setup.sh"
    return python


def test_pycocotools_and_label_studio_converter_read_our_exports(
    labelled, api_for, labelstudio_python, tmp_path
):
    """pycocotools' COCO API (annToMask) and label-studio-sdk's converter
    (BRUSH_TO_NUMPY) and decode_rle give exactly our ground truth and predictions."""
    from inspection.services.interchange import (
        _deployed_predictions,
        _label_map,
        label_studio_config,
    )

    project, owner, _ = labelled
    api = api_for(owner)
    base = f"/api/v1/projects/{project.id}/export/"
    (tmp_path / "coco-gt.json").write_bytes(api.get(base + "coco/").content)
    (tmp_path / "coco-pred.json").write_bytes(api.get(base + "coco/?source=predictions").content)
    (tmp_path / "labelstudio.json").write_bytes(api.get(base + "labelstudio/").content)
    (tmp_path / "config.xml").write_text(label_studio_config(project))
    (tmp_path / "classes.json").write_text(json.dumps(CLASSES))
    preds = _deployed_predictions(project)
    expected = {}
    for image in project.images.all():
        expected[f"gt-{image.sha256}"] = _gt(image)
        expected[f"pred-{image.sha256}"] = _label_map(preds[image.id], len(CLASSES))
    assert sum(int(v.any()) for k, v in expected.items() if k.startswith("pred-")) >= 2
    np.savez(tmp_path / "expected.npz", **expected)
    proc = subprocess.run(
        [str(labelstudio_python), str(READERS), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary == {
        "coco_gt_images": 4, "coco_pred_images": 5, "ls_annotations": 3, "ls_predictions": 5,
    }  # fmt: skip
