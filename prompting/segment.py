"""Interactive SAM segmentation on a stored image embedding.

The image encoder runs once per image (:meth:`SamModel.embed`, cached on
disk); every click, stroke or box after that only runs SAM's prompt encoder
and mask decoder (:meth:`SamModel.decode`), tens of milliseconds on a CPU.

- :func:`segment_prompts`: the user's prompts for one class -> a mask. A single
  click is ambiguous, so it asks SAM for three masks and keeps the one with
  the best predicted IoU; passing the previous ``low_res_logits`` back as
  ``mask_input`` refines the previous answer.
- :func:`blob_refine`: a rough blob (from the few-shot learner) -> a crisp SAM
  mask, prompted with the blob's box and interior points.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from prompting.errors import PromptError
from prompting.features.sam import SamEmbedding, SamModel
from prompting.prompts import Prompt, SamPrompt, prompts_to_sam

#: side of SAM's low-resolution mask logits
LOW_RES = 256


@dataclass
class SegmentResult:
    """Masks SAM predicted for one target.

    ``mask``: (H, W) bool, the best mask. ``score``: its predicted IoU.
    ``low_res_logits``: (1, 256, 256) float32 logits of the best mask; pass
    them back as ``mask_input`` to refine. ``masks``/``scores``: every mask
    SAM returned (3 with multimask output, else 1), (H, W) bool each.
    ``time_ms``: prompt encoder + decoder + upsampling time.
    """

    mask: np.ndarray
    score: float
    low_res_logits: np.ndarray
    masks: list[np.ndarray]
    scores: list[float]
    time_ms: float


def _mask_input_check(mask_input: np.ndarray | None) -> np.ndarray | None:
    if mask_input is None:
        return None
    m = np.asarray(mask_input, dtype=np.float32)
    if m.shape not in ((LOW_RES, LOW_RES), (1, LOW_RES, LOW_RES), (1, 1, LOW_RES, LOW_RES)):
        raise PromptError(
            f"mask_input must be the (1, 256, 256) low_res_logits of a previous result, "
            f"got shape {m.shape}",
            field="mask_input",
        )
    if not np.isfinite(m).all():
        raise PromptError("mask_input has NaN or infinite values", field="mask_input")
    return m.reshape(1, LOW_RES, LOW_RES)


def sam_prompt_segment(
    model: SamModel,
    embedding: SamEmbedding,
    prompt: SamPrompt,
    *,
    multimask: bool | None = None,
    mask_input: np.ndarray | None = None,
) -> SegmentResult:
    """Segment with ready SAM inputs (see :func:`segment_prompts`).

    ``prompt.point_coords``: (N, 2) x,y image pixels; ``point_labels``: (N,)
    1/0; ``box``: (4,) XYXY. At least one positive point or a box is needed.
    ``multimask`` defaults to True iff the prompt is a single point.
    """
    coords, labels, box = prompt.point_coords, prompt.point_labels, prompt.box
    n_points = 0 if coords is None else len(coords)
    n_positive = 0 if labels is None else int(np.count_nonzero(np.asarray(labels) == 1))
    if n_positive == 0 and box is None:
        raise PromptError(
            "nothing to segment: give at least one positive stroke, point or box", field="prompts"
        )
    if multimask is None:
        multimask = n_points == 1 and box is None
    low_in = _mask_input_check(mask_input)
    started = time.perf_counter()
    masks, scores, low_res = model.decode(
        embedding,
        point_coords=coords,
        point_labels=labels,
        box=box,
        mask_input=low_in,
        multimask_output=bool(multimask),
    )
    time_ms = (time.perf_counter() - started) * 1000.0
    best = int(np.argmax(scores))
    return SegmentResult(
        mask=masks[best],
        score=float(scores[best]),
        low_res_logits=np.ascontiguousarray(low_res[best : best + 1], dtype=np.float32),
        masks=list(masks),
        scores=[float(s) for s in scores],
        time_ms=time_ms,
    )


def segment_prompts(
    model: SamModel,
    embedding: SamEmbedding,
    prompts: Sequence[Prompt],
    *,
    target: str,
    multimask: bool | None = None,
    mask_input: np.ndarray | None = None,
) -> SegmentResult:
    """Segment ``target`` from the user's prompts on a stored embedding.

    Prompts labelled ``target`` are positive, everything else negative (see
    :func:`prompting.prompts.prompts_to_sam`). ``multimask``: None = True iff
    the prompts are a single point (three candidates, best by predicted
    IoU). ``mask_input``: (1, 256, 256) float32, the ``low_res_logits`` of the
    previous result, to refine it. Raises :class:`PromptError` when there is
    no positive prompt for ``target``.

    Example::

        emb = model.embed(rgb8)                       # once per image (cache it)
        first = segment_prompts(model, emb, [Point(120, 80, "scratch")], target="scratch")
        len(first.masks)                              # 3: a single click is ambiguous
        again = segment_prompts(model, emb, prompts, target="scratch",
                                mask_input=first.low_res_logits)
    """
    return sam_prompt_segment(
        model,
        embedding,
        prompts_to_sam(prompts, target=target),
        multimask=multimask,
        mask_input=mask_input,
    )


def blob_interior_points(blob: np.ndarray, *, max_points: int = 3) -> np.ndarray:
    """Up to ``max_points`` points well inside a blob, as (N, 2) float64 x,y.

    The first is the pixel deepest inside (max distance to the border: inside
    even for rings and L shapes, unlike the centroid); the others are spread
    along elongated blobs (cracks), each at least twice the blob's thickness
    from the points before. ``blob``: (H, W) bool, one connected component.
    """
    padded = np.pad(np.asarray(blob, dtype=bool), 1)
    depth = ndimage.distance_transform_edt(padded)[1:-1, 1:-1]
    peak = float(depth.max())
    if peak <= 0:
        return np.zeros((0, 2), np.float64)
    ys, xs = np.nonzero(depth >= max(1.0, 0.5 * peak))
    cand = np.stack([xs, ys], axis=1).astype(np.float64)
    first = np.unravel_index(int(np.argmax(depth)), depth.shape)
    points = [np.array([first[1], first[0]], np.float64)]
    spacing = max(4.0, 4.0 * peak)
    nearest = np.hypot(*(cand - points[0]).T)
    while len(points) < max_points:
        j = int(np.argmax(nearest))
        if nearest[j] < spacing:
            break
        points.append(cand[j])
        nearest = np.minimum(nearest, np.hypot(*(cand - cand[j]).T))
    return np.stack(points)


def blob_refine(
    model: SamModel,
    embedding: SamEmbedding,
    blob_mask: np.ndarray,
    *,
    max_blobs: int = 32,
    min_overlap: float = 0.3,
    margin: float = 0.05,
) -> np.ndarray:
    """A crisp SAM mask for each blob of a rough mask.

    ``blob_mask``: (H, W) bool with H, W = ``embedding.original_size``. Each
    8-connected blob (the ``max_blobs`` largest; smaller ones stay as they
    are) prompts SAM with its bounding box (grown by ``margin`` of its size +
    2 px) and :func:`blob_interior_points`. SAM's mask is clipped to that
    box; when it overlaps the blob with IoU < ``min_overlap`` (SAM picked
    another object) the blob is kept unchanged. Returns (H, W) bool.
    """
    blob_mask = np.asarray(blob_mask, dtype=bool)
    height, width = embedding.original_size
    if blob_mask.shape != (height, width):
        raise ValueError(
            f"blob_mask shape {blob_mask.shape} differs from the embedded image {(height, width)}"
        )
    out = np.zeros_like(blob_mask)
    labels, n = ndimage.label(blob_mask, structure=np.ones((3, 3), bool))
    if n == 0:
        return out
    slices = ndimage.find_objects(labels)
    areas = ndimage.sum_labels(blob_mask, labels, index=np.arange(1, n + 1))
    order = np.argsort(-areas, kind="stable")
    for rank, idx in enumerate(order):
        sl = slices[idx]
        component = labels[sl] == idx + 1
        if rank >= max_blobs:
            out[sl] |= component
            continue
        y0, y1 = sl[0].start, sl[0].stop
        x0, x1 = sl[1].start, sl[1].stop
        grow_y = int(round(margin * (y1 - y0))) + 2
        grow_x = int(round(margin * (x1 - x0))) + 2
        by0, by1 = max(0, y0 - grow_y), min(height, y1 + grow_y)
        bx0, bx1 = max(0, x0 - grow_x), min(width, x1 + grow_x)
        points = blob_interior_points(component) + [x0, y0]
        masks, _, _ = model.decode(
            embedding,
            point_coords=points,
            point_labels=np.ones(len(points), np.int32),
            box=np.array([bx0, by0, bx1, by1], np.float32),
            multimask_output=False,
        )
        refined = masks[0][by0:by1, bx0:bx1]
        blob = np.zeros_like(refined)
        blob[y0 - by0 : y1 - by0, x0 - bx0 : x1 - bx0] = component
        union = np.count_nonzero(refined | blob)
        iou = np.count_nonzero(refined & blob) / union if union else 0.0
        out[by0:by1, bx0:bx1] |= refined if iou >= min_overlap else blob
    return out
