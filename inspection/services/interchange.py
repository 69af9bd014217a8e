"""Labelled data in and out: COCO instance masks, Label Studio tasks, PNG masks.

Export a project's ground truth (the images that have one) and its deployed
model's predictions; import COCO or Label Studio annotations as ground truth
for images already in the project, matched by ``sha256`` (our exports carry
it) or by file name. Ground truth here is one defect mask per image (any
class); predictions carry their class.

- COCO (``source`` ground_truth or predictions): ``images`` (with ``sha256``
  and ``verdict`` beside the standard fields), ``categories`` (the project's
  classes, ids from 1, and ``defect`` for ground truth when there are several
  classes), ``annotations``: one per connected blob (8-connected), compressed
  RLE ``segmentation``, ``area``, ``bbox``, ``iscrowd`` 0, ``score`` for
  predictions (the blob's mean class probability).
- Label Studio: one task per image, ``data.image`` the image's file URL,
  ``annotations`` (ground truth) and ``predictions`` (the deployed model) as
  ``brushlabels`` results with RLE, one per class. Labelling config:
  ``LABEL_STUDIO_CONFIG``.
- PNG masks: a zip of ``ground_truth/<name>.png`` (0 / 255) and
  ``predictions/<name>.png`` (0, or the class number 1..K), and
  ``manifest.json``.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import PurePosixPath

import numpy as np
from django.db import transaction
from django.utils import timezone

from inspection.errors import InvalidInput
from inspection.models import Image, Prediction, Project
from inspection.services import engine
from inspection.services.images import image_ground_truth_set
from inspection.services.predictions import probabilities_load
from inspection.storage import bytes_read
from prompting.interchange import (
    coco_bbox,
    coco_rle_decode,
    coco_rle_encode,
    ls_brush_decode,
    ls_brush_encode,
)

SOURCES = ("ground_truth", "predictions")
GT_DEFECT = "defect"
FROM_NAME, TO_NAME = "tag", "image"
#: most images one import may name (each decodes a mask)
IMPORT_MAX_IMAGES = 10_000


def label_studio_config(project: Project) -> str:
    """The labelling config our Label Studio tasks fit: one image, brush labels
    for the project's classes (and ``defect`` for class-less ground truth)."""
    names = _gt_label(project), *project.class_names
    labels = "".join(f'<Label value="{n}"/>' for n in dict.fromkeys(names))
    return (
        f'<View><Image name="{TO_NAME}" value="${TO_NAME}"/>'
        f'<BrushLabels name="{FROM_NAME}" toName="{TO_NAME}">{labels}</BrushLabels></View>'
    )


def _gt_label(project: Project) -> str:
    classes = project.class_names
    return classes[0] if len(classes) == 1 else GT_DEFECT


def _labelled(project: Project):
    """The images with a ground truth (a verdict or a mask), in upload order."""
    return [im for im in project.images.order_by("created_at", "id") if im.verdict or im.mask]


def _gt_mask(image: Image) -> np.ndarray:
    mask = engine.image_mask_load(image)
    return np.zeros((image.height, image.width), bool) if mask is None else mask


def _deployed_predictions(project: Project) -> dict:
    """image id -> the deployed model's prediction (the active rules' when there
    is one, else the newest)."""
    if project.deployed_model_id is None:
        return {}
    out = {}
    rows = Prediction.objects.filter(
        image__project=project, model_version_id=project.deployed_model_id
    ).order_by("created_at")
    for p in rows:
        current = out.get(p.image_id)
        if current is None or current.ruleset_id != project.active_ruleset_id:
            out[p.image_id] = p
    return out


def _label_map(prediction: Prediction, n_classes: int) -> np.ndarray:
    """(H, W) uint8 class numbers (0 none, 1..K) from the stored mask PNG
    (``mask_visible``: class k is k * (255 // K))."""
    from PIL import Image as PILImage

    values = np.asarray(PILImage.open(io.BytesIO(bytes_read(prediction.mask.name))).convert("L"))
    step = 255 // max(1, n_classes)
    return (values.astype(np.uint16) // step).astype(np.uint8)


def _blobs(mask: np.ndarray) -> list[np.ndarray]:
    from skimage.measure import label

    labels = label(mask, connectivity=2)
    return [labels == i for i in range(1, int(labels.max()) + 1)]


def _image_entry(image: Image, n: int) -> dict:
    return {
        "id": n,
        "file_name": image.original_name or f"{image.id}.{image.format.lower() or 'png'}",
        "width": image.width,
        "height": image.height,
        "sha256": image.sha256,
        "verdict": image.verdict,
        "image_id": str(image.id),
    }


def project_export_coco(*, project: Project, source: str = "ground_truth") -> dict:
    """The project's ground truth or its deployed model's predictions as a COCO
    instance-segmentation dataset (see the module doc)."""
    if source not in SOURCES:
        raise InvalidInput(
            f"source must be one of {SOURCES}",
            field_errors={"source": [f"one of {', '.join(SOURCES)}"]},
        )
    classes = project.class_names
    categories = [
        {"id": k + 1, "name": n, "supercategory": "defect"} for k, n in enumerate(classes)
    ]
    if source == "ground_truth" and len(classes) > 1:
        categories.append({"id": len(classes) + 1, "name": GT_DEFECT, "supercategory": "defect"})
    gt_category = 1 if len(classes) == 1 else len(classes) + 1
    images, annotations = [], []

    def add(n: int, mask: np.ndarray, category: int, probs: np.ndarray | None = None) -> None:
        for blob in _blobs(mask):
            ann = {
                "id": len(annotations) + 1,
                "image_id": n,
                "category_id": category,
                "segmentation": coco_rle_encode(blob),
                "area": int(blob.sum()),
                "bbox": coco_bbox(blob),
                "iscrowd": 0,
            }
            if probs is not None:
                ann["score"] = round(float(probs[category][blob].mean()), 6)
            annotations.append(ann)

    if source == "ground_truth":
        for n, image in enumerate(_labelled(project), start=1):
            images.append(_image_entry(image, n))
            add(n, _gt_mask(image), gt_category)
    else:
        predictions = _deployed_predictions(project)
        for n, image in enumerate(project.images.order_by("created_at", "id"), start=1):
            pred = predictions.get(image.id)
            if pred is None:
                continue
            images.append(_image_entry(image, n))
            label_map = _label_map(pred, len(classes))
            probs = probabilities_load(pred)
            for k in range(len(classes)):
                add(n, label_map == k + 1, k + 1, probs)
    return {
        "info": {
            "description": f"{project.name}: {source.replace('_', ' ')}",
            "version": "1.0",
            "date_created": timezone.now().isoformat(),
            "project": str(project.id),
            "source": source,
        },
        "licenses": [],
        "images": images,
        "categories": categories,
        "annotations": annotations,
    }


def _brush_result(*, key: str, mask: np.ndarray, label: str) -> dict:
    h, w = mask.shape
    return {
        "id": key,
        "type": "brushlabels",
        "from_name": FROM_NAME,
        "to_name": TO_NAME,
        "original_width": int(w),
        "original_height": int(h),
        "image_rotation": 0,
        "value": {"format": "rle", "rle": ls_brush_encode(mask), "brushlabels": [label]},
    }


def project_export_labelstudio(*, project: Project) -> list[dict]:
    """One Label Studio task per image (see the module doc)."""
    classes = project.class_names
    predictions = _deployed_predictions(project)
    gt_label = _gt_label(project)
    tasks = []
    for n, image in enumerate(project.images.order_by("created_at", "id"), start=1):
        task: dict = {
            "id": n,
            "data": {
                TO_NAME: f"/api/v1/images/{image.id}/file/",
                "file_name": image.original_name,
                "sha256": image.sha256,
                "image_id": str(image.id),
            },
            "annotations": [],
            "predictions": [],
        }
        if image.mask or image.verdict == "OK":  # a mask to give (NG without one: none)
            mask = _gt_mask(image)
            result = [_brush_result(key=f"gt{n}", mask=mask, label=gt_label)] if mask.any() else []
            task["annotations"].append(
                {"id": n, "completed_by": 0, "ground_truth": True, "result": result}
            )
        pred = predictions.get(image.id)
        if pred is not None:
            label_map = _label_map(pred, len(classes))
            result = [
                _brush_result(key=f"p{n}-{k + 1}", mask=label_map == k + 1, label=name)
                for k, name in enumerate(classes)
                if (label_map == k + 1).any()
            ]
            task["predictions"].append(
                {"model_version": f"v{pred.model_version.number}", "result": result}
            )
        tasks.append(task)
    return tasks


def _png(mask: np.ndarray) -> bytes:
    # deferred: PIL loads on first use
    from prompting.images import png_encode

    return png_encode(mask.astype(np.uint8))


def _safe_stem(image: Image) -> str:
    stem = PurePosixPath(image.original_name or "").stem or str(image.id)
    return re.sub(r"[^A-Za-z0-9._-]", "_", stem)[:100] + f"-{image.id.hex[:8]}"


def project_export_masks_zip(*, project: Project) -> bytes:
    """A zip of PNG masks: ``ground_truth/`` (0 / 255), ``predictions/`` (class
    number 1..K), and ``manifest.json`` (file name, sha256, verdicts, classes)."""
    classes = project.class_names
    predictions = _deployed_predictions(project)
    manifest = {"project": str(project.id), "classes": classes, "images": []}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for image in project.images.order_by("created_at", "id"):
            stem = _safe_stem(image)
            entry = {
                "file_name": image.original_name,
                "sha256": image.sha256,
                "verdict": image.verdict,
            }
            if image.verdict or image.mask:
                zf.writestr(f"ground_truth/{stem}.png", _png(_gt_mask(image) * 255))
                entry["ground_truth"] = f"ground_truth/{stem}.png"
            pred = predictions.get(image.id)
            if pred is not None:
                zf.writestr(f"predictions/{stem}.png", _png(_label_map(pred, len(classes))))
                entry["predictions"] = f"predictions/{stem}.png"
                entry["predicted_verdict"] = pred.verdict
            manifest["images"].append(entry)
        zf.writestr("manifest.json", json.dumps(manifest, indent=1))
    return buf.getvalue()


# --------------------------------------------------------------------------- import
@dataclass
class ImportResult:
    """What an import did: images given, matched (and so set), not found, masks."""

    images: int = 0
    matched: int = 0
    ng: int = 0
    unmatched: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


class _Matcher:
    def __init__(self, project: Project) -> None:
        self.by_sha = {}
        self.by_name: dict[str, list[Image]] = {}
        for im in project.images.all():
            self.by_sha[im.sha256] = im
            self.by_name.setdefault(im.original_name, []).append(im)

    def find(self, *, sha256: str = "", name: str = "") -> Image | None:
        if sha256 and sha256 in self.by_sha:
            return self.by_sha[sha256]
        base = PurePosixPath(str(name or "").split("?")[0]).name
        hits = self.by_name.get(base, [])
        if not hits:  # Label Studio prefixes uploads with "<hash>-"
            hits = [
                im for n, ims in self.by_name.items() if n and base.endswith(f"-{n}") for im in ims
            ]
        return hits[0] if len(hits) == 1 else None


def _bad(field_name: str, message: str) -> InvalidInput:
    return InvalidInput(message, field_errors={field_name: [message]})


def ground_truth_import_coco(*, project: Project, data: dict) -> ImportResult:
    """Set the ground truth of the project's images named in a COCO dataset:
    each listed image's mask is the union of its annotations' masks (RLE, any
    category; an image with none is OK). Images are matched by ``sha256``, else
    by file name; the rest are reported. All or nothing."""
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise _bad("images", "a COCO dataset is an object with an `images` list")
    anns = data.get("annotations", [])
    if not isinstance(anns, list):
        raise _bad("annotations", "must be a list")
    if len(data["images"]) > IMPORT_MAX_IMAGES:
        raise _bad("images", f"at most {IMPORT_MAX_IMAGES} images per import")
    matcher = _Matcher(project)
    result = ImportResult(images=len(data["images"]))
    targets: dict[int, tuple[Image, np.ndarray]] = {}
    for i, entry in enumerate(data["images"]):
        if not isinstance(entry, dict) or "id" not in entry:
            raise _bad(f"images[{i}]", "each image needs an `id`")
        image = matcher.find(
            sha256=str(entry.get("sha256", "")), name=str(entry.get("file_name", ""))
        )
        if image is None:
            result.unmatched.append(str(entry.get("file_name", entry["id"]))[:200])
            continue
        try:
            key = int(entry["id"])
        except (TypeError, ValueError):
            raise _bad(f"images[{i}].id", "must be an integer") from None
        targets[key] = (
            image,
            np.zeros((image.height, image.width), bool),
            str(entry.get("verdict", "")),
        )
    for i, ann in enumerate(anns):
        if not isinstance(ann, dict):
            raise _bad(f"annotations[{i}]", "must be an object")
        try:
            target = targets.get(int(ann.get("image_id")))
        except (TypeError, ValueError):
            raise _bad(f"annotations[{i}].image_id", "must be an integer") from None
        if target is None:
            continue
        image, mask, _ = target
        seg = ann.get("segmentation")
        if not isinstance(seg, dict):
            raise _bad(
                f"annotations[{i}].segmentation", "must be an RLE object (polygons are not read)"
            )
        try:
            part = coco_rle_decode(seg)
        except ValueError as exc:
            raise _bad(f"annotations[{i}].segmentation", str(exc)) from None
        if part.shape != mask.shape:
            raise _bad(
                f"annotations[{i}].segmentation",
                f"mask is {part.shape[1]}x{part.shape[0]}, the image {image.width}x{image.height}",
            )
        mask |= part
    _apply(targets.values(), result)
    return result


def ground_truth_import_labelstudio(*, project: Project, tasks: list) -> ImportResult:
    """Set the ground truth of the project's images from Label Studio tasks: a
    task's first annotation (its ``ground_truth`` one when marked) gives the
    mask, the union of its brush results (any label); a task without
    annotations is skipped. Images are matched by ``data.sha256``, else by the
    file name in ``data.file_name`` or ``data.image``. All or nothing."""
    if not isinstance(tasks, list):
        raise _bad("tasks", "Label Studio tasks are a JSON list")
    if len(tasks) > IMPORT_MAX_IMAGES:
        raise _bad("tasks", f"at most {IMPORT_MAX_IMAGES} tasks per import")
    matcher = _Matcher(project)
    result = ImportResult()
    targets = []
    for i, task in enumerate(tasks):
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            raise _bad(f"tasks[{i}]", "each task is an object with `data`")
        annotations = task.get("annotations") or []
        if not isinstance(annotations, list):
            raise _bad(f"tasks[{i}].annotations", "must be a list")
        annotations = [a for a in annotations if isinstance(a, dict) and not a.get("was_cancelled")]
        if not annotations:
            continue
        result.images += 1
        d = task["data"]
        image = matcher.find(
            sha256=str(d.get("sha256", "")), name=str(d.get("file_name") or d.get(TO_NAME) or "")
        )
        if image is None:
            result.unmatched.append(str(d.get("file_name") or d.get(TO_NAME) or i)[:200])
            continue
        chosen = next((a for a in annotations if a.get("ground_truth")), annotations[0])
        mask = np.zeros((image.height, image.width), bool)
        for j, item in enumerate(chosen.get("result") or []):
            where = f"tasks[{i}].annotations.result[{j}]"
            if not isinstance(item, dict) or str(item.get("type", "")).lower() != "brushlabels":
                continue
            value = item.get("value") if isinstance(item.get("value"), dict) else {}
            rle = value.get("rle", item.get("rle"))
            if rle is None:
                continue
            h = item.get("original_height", image.height)
            w = item.get("original_width", image.width)
            if (h, w) != (image.height, image.width):
                raise _bad(where, f"brush is {w}x{h}, the image {image.width}x{image.height}")
            try:
                mask |= ls_brush_decode(rle, height=image.height, width=image.width)
            except ValueError as exc:
                raise _bad(where, str(exc)) from None
        targets.append((image, mask, ""))
    _apply(targets, result)
    return result


def _apply(targets, result: ImportResult) -> None:
    """Set each (image, mask, verdict hint): the mask when it has pixels (NG);
    an empty mask is OK unless the hint says NG (a verdict without a mask:
    our COCO export writes such images with ``verdict`` NG and no annotation)."""
    with transaction.atomic():
        for image, mask, hint in targets:
            if not mask.any() and hint == "NG":
                image_ground_truth_set(image=image, verdict="NG", clear_mask=True)
            else:
                image_ground_truth_set(image=image, mask=_png(mask * 255))
            result.matched += 1
            result.ng += int(mask.any() or hint == "NG")
