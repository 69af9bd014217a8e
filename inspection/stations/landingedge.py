"""LandingEdge's inference protocol: the request a station receives and the
segmentation answer it gives, as plain functions (no Django).

The answer is what ``landingai.predict.EdgePredictor.predict`` parses
(``_EdgeExtractor._extract_edge_seg_prediction`` in landingai 0.3.49)::

    {"type": "SegmentationPrediction",
     "model_id": "...",
     "predictions": {
        "imageHeight": 240, "imageWidth": 352, "numClasses": 1,
        "encoding": {"algorithm": "rle", "options": {"map": {"Z": 0, "N": 1}}},
        "bitmaps": {"<id>": {"bitmap": "84000Z480N", "score": 0.93,
                             "labelName": "crack", "labelIndex": 1, "defectId": 1}}},
     "latency": {"preprocess_s": ..., "infer_s": ..., "postprocess_s": ...}}

Our decision rides along as extra top-level keys (``verdict``, ``severity``,
``reasons``, ...), which the SDK ignores.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from typing import Any

import numpy as np

ENCODING = {"algorithm": "rle", "options": {"map": {"Z": 0, "N": 1}}}
#: the metadata fields ``landingai.common.InferenceMetadata`` sends, under
#: their Python names (``metadata.json()``) and their camelCase aliases
METADATA_FIELDS = {
    "inspection_station_id": "inspectionStationId",
    "location_id": "locationId",
    "image_id": "imageId",
    "capture_timestamp": "captureTimestamp",
}
METADATA_MAX_CHARS = 200
_RUN = re.compile(r"(\d+)([ZN])")


def bitmap_rle_encode(mask: np.ndarray) -> str:
    """Run-length encode a mask row-major as LandingEdge does: ``"<count>Z"``
    for runs of 0, ``"<count>N"`` for runs of 1.

    ``mask``: (H, W) bool or integer, nonzero = the class.

    >>> bitmap_rle_encode(np.array([[0, 0, 1], [1, 1, 0]]))
    '2Z3N1Z'
    """
    flat = np.asarray(mask).ravel() != 0
    if flat.size == 0:
        return ""
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    starts = np.concatenate(([0], change))
    lengths = np.diff(np.concatenate((starts, [flat.size])))
    return "".join(
        f"{n}{'N' if v else 'Z'}"
        for n, v in zip(lengths.tolist(), flat[starts].tolist(), strict=True)
    )


def bitmap_rle_decode(bitmap: str, shape: tuple[int, int]) -> np.ndarray:
    """Inverse of :func:`bitmap_rle_encode`: (H, W) bool.

    >>> bitmap_rle_decode("2Z3N1Z", (2, 3)).astype(int).tolist()
    [[0, 0, 1], [1, 1, 0]]
    """
    runs = _RUN.findall(bitmap)
    if "".join(n + c for n, c in runs) != bitmap:
        raise ValueError("bitmap is not a sequence of <count>Z / <count>N runs")
    flat = np.concatenate([np.full(int(n), c == "N", bool) for n, c in runs] or [np.zeros(0, bool)])
    if flat.size != shape[0] * shape[1]:
        raise ValueError(
            f"bitmap has {flat.size} pixels, the shape {shape} needs {shape[0] * shape[1]}"
        )
    return flat.reshape(shape)


def metadata_parse(raw: str | None) -> dict[str, str]:
    """The ``metadata`` form field: a JSON object with any of the four
    ``InferenceMetadata`` fields (snake_case or camelCase), each a string.
    Returns them under their snake_case names; raises ``ValueError`` with a
    message for people on anything else.

    >>> metadata_parse('{"inspection_station_id": "cam-1", "imageId": "p7.jpg"}')
    {'inspection_station_id': 'cam-1', 'image_id': 'p7.jpg'}
    """
    if raw is None or raw == "":
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"metadata is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError("metadata must be a JSON object")
    known = {**{k: k for k in METADATA_FIELDS}, **{v: k for k, v in METADATA_FIELDS.items()}}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ValueError(f"metadata has unknown fields {unknown}; known: {sorted(METADATA_FIELDS)}")
    out: dict[str, str] = {}
    for key, value in data.items():
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            raise ValueError(f"metadata field {key} must be a string")
        if len(value) > METADATA_MAX_CHARS:
            raise ValueError(f"metadata field {key} is longer than {METADATA_MAX_CHARS} characters")
        out[known[key]] = value
    return out


def bitmap_id(model_id: str, class_name: str) -> str:
    """A stable id for a class's bitmap under one model version (a UUID, as
    LandingEdge gives)."""
    return str(uuid.uuid5(uuid.UUID(str(model_id)), class_name))


def segmentation_answer(
    *,
    model_id: str,
    classes: list[str],
    masks: Mapping[str, np.ndarray],
    probabilities: np.ndarray,
    latency: dict[str, float],
    extra: dict[str, Any],
    region_scores: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """LandingEdge's ``SegmentationPrediction`` for one image.

    ``masks``: ``{name: (H, W) bool}`` as the decision gives them
    (:meth:`prompting.rules.Decision.masks`): every class of ``classes`` (its
    kept-blob pixels), then any regions of no class the decision reported (the
    anomaly regions). ``probabilities``: (K+1, H, W) float, index 0 background.
    Each class has a bitmap (empty ones too, as LandingEdge sends);
    ``labelIndex`` counts from 1 (0 is LandingLens' background); ``score`` is
    the class's mean probability over its mask (0 when empty). A region's
    bitmap follows the classes, counted in ``numClasses``, its score from
    ``region_scores`` (0 when not given). ``extra`` joins the top level.
    """
    h, w = probabilities.shape[1:]
    bitmaps = {}
    for k, name in enumerate(classes):
        mask = masks[name]
        score = float(probabilities[k + 1][mask].mean()) if mask.any() else 0.0
        bitmaps[bitmap_id(model_id, name)] = _bitmap(mask, k + 1, name, score)
    regions = [name for name in masks if name not in classes]
    for j, name in enumerate(regions):
        score = (region_scores or {}).get(name, 0.0)
        index = len(classes) + 1 + j
        bitmaps[bitmap_id(model_id, name)] = _bitmap(masks[name], index, name, score)
    return {
        "type": "SegmentationPrediction",
        "model_id": str(model_id),
        "predictions": {
            "bitmaps": bitmaps,
            "encoding": ENCODING,
            "imageHeight": int(h),
            "imageWidth": int(w),
            "numClasses": len(classes) + len(regions),
        },
        "latency": latency,
        **extra,
    }


def _bitmap(mask: np.ndarray, index: int, name: str, score: float) -> dict[str, Any]:
    """One entry of an answer's ``bitmaps``: ``mask`` (H, W) bool as label ``index``."""
    return {
        "bitmap": bitmap_rle_encode(mask),
        "defectId": index,
        "labelIndex": index,
        "labelName": name,
        "score": round(float(score), 6),
    }
