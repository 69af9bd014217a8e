"""Apply a rule set to per-pixel class probabilities: blobs, reasons, verdict.

Pipeline, per class k (classes in model order):

1. a pixel is class k when the argmax over the defect classes (background
   excluded) is k and its probability >= k's threshold;
2. pixels outside the inspection regions (or inside ignore zones) are dropped,
   before morphology and after every step (so dilation cannot grow into an
   ignore zone, and areas count inspected pixels only);
3. the class's morphology steps run in order;
4. connected components (4- or 8-connected) become blobs, measured with
   ``skimage.measure.regionprops``; blobs failing a filter are discarded.

Then *every* rule is evaluated (no short-circuit) and each violation is a
:class:`Reason`; the verdict is NG when there is at least one, with the
highest severity among them.

The decision also carries its *uncertainty*: the fraction of inspected pixels
whose winning class probability lies within ``UNCERTAIN_MARGIN`` of that
class's threshold, i.e. pixels a slightly different model would label the
other way. Images with the most uncertain area are where a correction stroke
teaches the model most (on the benchmark data it ranks images by their pixel
errors; see ``benchmarks/README.md``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from prompting.rules.blobs import Blob, blob_passes, blobs_measure
from prompting.rules.morphology import components_label, morphology_apply
from prompting.rules.regions import regions_mask
from prompting.rules.schema import ClassConfig, RuleSet, ruleset_check_context
from prompting.rules.types import (
    ANOMALY_CLASS,
    SEVERITIES,
    Reason,
    RuleContext,
    RuleEvaluation,
)

AREA_ONLY_MEASURES = frozenset({"area_px", "area_mm2"})
#: a pixel is uncertain when its winning probability is this close to its class threshold
UNCERTAIN_MARGIN = 0.1


@dataclass
class Decision:
    """The verdict on one image.

    ``label_map``: (H, W) uint8, 0 none, k = class index + 1 for pixels of
    kept blobs. ``blob_map``: (H, W) int32, 0 none, else ``Blob.id``.
    ``reasons``: every violation of every rule; ``evaluations``: one entry per
    rule, violated or not. ``timings``: milliseconds per stage.
    ``uncertainty``: fraction (0..1) of the inspected pixels whose winning
    probability is within ``UNCERTAIN_MARGIN`` of its class threshold.
    """

    verdict: str
    severity: str | None
    reasons: list[Reason]
    blobs: list[Blob]
    label_map: np.ndarray
    timings: dict[str, float]
    evaluations: list[RuleEvaluation] = field(default_factory=list)
    blob_map: np.ndarray | None = None
    inspected_area_px: int = 0
    uncertainty: float = 0.0
    #: ``prompting.inputcheck.InputCheck.to_dict()`` when the image was checked
    input_check: dict[str, Any] | None = None

    def masks(self, classes: Sequence[str]) -> dict[str, np.ndarray]:
        """The pixels the decision was made on, per class: ``{name: (H, W) bool}``
        for every class in model order (``label_map == k + 1``: the kept blobs),
        then ``"anomaly"`` (:data:`~prompting.rules.types.ANOMALY_CLASS`) when an
        anomaly rule reported regions, which are pixels of no class.

        >>> d = Decision("NG", "major", [], [], np.array([[0, 1], [0, 0]], np.uint8), {})
        >>> {k: v.astype(int).tolist() for k, v in d.masks(["scratch"]).items()}
        {'scratch': [[0, 1], [0, 0]]}
        """
        label_map = np.asarray(self.label_map)
        out = {name: label_map == k + 1 for k, name in enumerate(classes)}
        found = [b.id for b in self.blobs if b.class_name == ANOMALY_CLASS]
        if found and self.blob_map is not None:
            out[ANOMALY_CLASS] = np.isin(self.blob_map, found)
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (no pixel maps)."""
        return {
            **({"input_check": self.input_check} if self.input_check is not None else {}),
            "verdict": self.verdict,
            "severity": self.severity,
            "reasons": [r.to_dict() for r in self.reasons],
            "blobs": [b.to_dict() for b in self.blobs],
            "evaluations": [e.to_dict() for e in self.evaluations],
            "inspected_area_px": self.inspected_area_px,
            "uncertainty": self.uncertainty,
            "timings": dict(self.timings),
        }


def severity_max(severities: Sequence[str]) -> str | None:
    """The highest of ``severities`` (minor < major < critical), None if empty."""
    return max(severities, key=SEVERITIES.index) if severities else None


def _check_inputs(
    probabilities: np.ndarray, classes: Sequence[str], ruleset: RuleSet, px_per_mm: float | None
) -> None:
    if not isinstance(probabilities, np.ndarray) or probabilities.ndim != 3:
        raise ValueError("probabilities must be a (K+1, H, W) array")
    if len(classes) == 0:
        raise ValueError("classes is empty")
    if len(classes) > 254:
        raise ValueError(f"at most 254 classes fit the uint8 label map, got {len(classes)}")
    if probabilities.shape[0] != len(classes) + 1:
        raise ValueError(
            f"probabilities has {probabilities.shape[0]} channels; expected {len(classes) + 1} "
            f"(background + {len(classes)} classes)"
        )
    if px_per_mm is not None and not (math.isfinite(px_per_mm) and px_per_mm > 0):
        raise ValueError(f"px_per_mm must be a positive number, got {px_per_mm}")
    ruleset_check_context(ruleset, classes=classes, px_per_mm=px_per_mm)


@dataclass
class Prepared:
    """What does not depend on thresholds: computed once per image."""

    winner: np.ndarray  # (H, W) int: index of the most probable defect class (0-based)
    winner_prob: np.ndarray  # (H, W) float32: its probability
    probabilities: np.ndarray  # (K+1, H, W)


def probabilities_prepare(probabilities: np.ndarray) -> Prepared:
    """Most probable defect class per pixel (ties: the first), and its probability.

    A loop over classes: much faster than ``argmax(axis=0)`` on (K, H, W).
    """
    defect = probabilities[1:]
    winner = np.zeros(defect.shape[1:], np.int16)
    winner_prob = defect[0].copy()
    for k in range(1, defect.shape[0]):
        better = defect[k] > winner_prob
        winner[better] = k
        np.maximum(winner_prob, defect[k], out=winner_prob)
    return Prepared(winner=winner, winner_prob=winner_prob, probabilities=probabilities)


def _uncertainty(
    prep: Prepared, classes: Sequence[str], ruleset: RuleSet, inspected: np.ndarray
) -> float:
    """Fraction of ``inspected`` pixels whose winning probability is within
    ``UNCERTAIN_MARGIN`` of the threshold of the winning class."""
    n = int(inspected.sum())
    if n == 0:
        return 0.0
    thresholds = np.array([ruleset.config_for(name).threshold for name in classes], np.float32)
    if (thresholds == thresholds[0]).all():  # one threshold: no lookup per pixel
        margin = np.abs(prep.winner_prob - thresholds[0])
    else:
        margin = np.abs(prep.winner_prob - thresholds[prep.winner])
    return round(float(np.count_nonzero((margin < UNCERTAIN_MARGIN) & inspected)) / n, 4)


def _needs_measures(cfg: ClassConfig) -> bool:
    return any(f.measure not in AREA_ONLY_MEASURES for f in cfg.filters or ())


@dataclass
class _ClassBlobs:
    window: tuple[slice, slice]  # where ``labels`` lies in the image
    labels: np.ndarray  # (h, w) int32 over ``window``, 0 none, else local label of a kept blob
    label_ids: np.ndarray  # local labels of kept blobs, ascending
    areas: np.ndarray  # (n,) int64 areas of kept blobs
    blobs: list[Blob] | None  # measured kept blobs (when measured)


_EMPTY_WINDOW = (slice(0, 0), slice(0, 0))


def _growth(cfg: ClassConfig) -> int:
    """How far (px) morphology can grow a mask: the sum of every step's radius."""
    return sum(step.radius or 0 for step in cfg.morphology or ())


def _class_blobs(
    prep: Prepared,
    k: int,
    class_name: str,
    cfg: ClassConfig,
    *,
    inspected: np.ndarray,
    connectivity: int,
    px_per_mm: float | None,
    measure: bool,
) -> _ClassBlobs:
    """Kept blobs of class ``k``, worked out in a window around its pixels.

    The window is the mask's bounding box grown by every morphology radius
    plus a 2-pixel margin, so its outer ring stays empty through every step
    and the result equals working on the whole image (erosion, hole filling
    and connectivity all see the same neighbourhood), at a fraction of the cost
    when defects are small.
    """
    mask = (prep.winner == k) & (prep.winner_prob >= cfg.threshold) & inspected
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        empty = np.zeros((0, 0), np.int32)
        none = np.zeros(0, np.int64)
        return _ClassBlobs(_EMPTY_WINDOW, empty, none, none, [] if measure else None)
    cols = np.flatnonzero(mask.any(axis=0))
    pad = _growth(cfg) + 2
    height, width = mask.shape
    r0, r1 = max(0, int(rows[0]) - pad), min(height, int(rows[-1]) + pad + 1)
    c0, c1 = max(0, int(cols[0]) - pad), min(width, int(cols[-1]) + pad + 1)
    window = (slice(r0, r1), slice(c0, c1))
    mask = mask[window]
    # Trailing remove_small steps only drop whole components: fold them into
    # the labelling below instead of labelling twice.
    steps = list(cfg.morphology or ())
    min_area = 1
    while steps and steps[-1].op == "remove_small":
        min_area = max(min_area, steps.pop().min_area)
    if steps:
        mask = morphology_apply(mask, steps, connectivity=connectivity, within=inspected[window])
    labels, n = components_label(mask, connectivity=connectivity)
    all_areas = np.bincount(labels.ravel(), minlength=n + 1)[1:].astype(np.int64)
    ids = np.arange(1, n + 1)
    if min_area > 1 and n:
        small = all_areas < min_area
        if small.any():
            lut = np.zeros(n + 1, np.int32)
            n = int((~small).sum())
            lut[1:][~small] = np.arange(1, n + 1, dtype=np.int32)
            labels = lut[labels]
            all_areas = all_areas[~small]
            ids = np.arange(1, n + 1)
    blobs: list[Blob] | None = None
    if measure or _needs_measures(cfg):
        measured = blobs_measure(
            labels,
            probability=prep.probabilities[k + 1][window],
            class_name=class_name,
            px_per_mm=px_per_mm,
            offset=(c0, r0),
        )
        keep = np.array([blob_passes(b, cfg.filters, px_per_mm=px_per_mm) for b in measured], bool)
        blobs = [b for b, kept in zip(measured, keep, strict=True) if kept]
    else:
        keep = np.ones(n, bool)
        for f in cfg.filters or ():
            values = all_areas / px_per_mm**2 if f.measure == "area_mm2" else all_areas
            if f.min is not None:
                keep &= values >= f.min
            if f.max is not None:
                keep &= values <= f.max
    if n and not keep.all():
        lut = np.zeros(n + 1, np.int32)
        lut[1:][keep] = ids[keep]
        labels = lut[labels]
    return _ClassBlobs(window, labels, ids[keep], all_areas[keep], blobs)


def rules_apply(
    probabilities: np.ndarray,
    *,
    classes: Sequence[str],
    ruleset: RuleSet,
    px_per_mm: float | None = None,
    inputs: Mapping[str, Any] | None = None,
) -> Decision:
    """Turn per-pixel probabilities into blobs and an explained OK/NG decision.

    ``probabilities``: (K+1, H, W) float32, index 0 = background, k = class
    ``classes[k-1]``. ``px_per_mm``: pixels per millimetre, needed by mm²
    rules and filters (RuleSetError naming them otherwise). ``inputs``: further
    per-image data by name, for rule types that read it (see
    :class:`~prompting.rules.types.RuleContext`).

    >>> from prompting.rules import DEFAULT_RULESET, ruleset_validate
    >>> p = np.zeros((2, 8, 8), np.float32); p[0] = 1
    >>> p[:, 2:7, 2:7] = [[[0.1]], [[0.9]]]
    >>> d = rules_apply(p, classes=["dent"], ruleset=ruleset_validate(DEFAULT_RULESET))
    >>> d.verdict, d.severity, [b.area_px for b in d.blobs]
    ('NG', 'major', [25])
    """
    t0 = time.perf_counter()
    _check_inputs(probabilities, classes, ruleset, px_per_mm)
    shape = probabilities.shape[1:]
    inspected = regions_mask(ruleset.regions, shape=shape)
    prep = probabilities_prepare(probabilities)
    t1 = time.perf_counter()

    label_map = np.zeros(shape, np.uint8)
    blob_map = np.zeros(shape, np.int32)
    blobs: list[Blob] = []
    areas_by_class: dict[str, np.ndarray] = {}
    ids_by_class: dict[str, list[int]] = {}
    for k, name in enumerate(classes):
        result = _class_blobs(
            prep,
            k,
            name,
            ruleset.config_for(name),
            inspected=inspected,
            connectivity=ruleset.connectivity,
            px_per_mm=px_per_mm,
            measure=True,
        )
        assert result.blobs is not None
        first = len(blobs) + 1
        lut = np.zeros(int(result.labels.max(initial=0)) + 1, np.int32)
        lut[result.label_ids] = np.arange(first, first + len(result.label_ids), dtype=np.int32)
        hit = result.labels > 0
        label_map[result.window][hit] = k + 1
        blob_map[result.window][hit] = lut[result.labels[hit]]
        for offset, blob in enumerate(result.blobs):
            blob.id = first + offset
        blobs.extend(result.blobs)
        areas_by_class[name] = result.areas
        ids_by_class[name] = [b.id for b in result.blobs]
    t2 = time.perf_counter()

    inspected_area = int(inspected.sum())
    uncertainty = _uncertainty(prep, classes, ruleset, inspected)
    reasons: list[Reason] = []
    evaluations: list[RuleEvaluation] = []
    ctx = RuleContext(
        areas_by_class=areas_by_class,
        ids_by_class=ids_by_class,
        inspected_area=inspected_area,
        px_per_mm=px_per_mm,
        probabilities=probabilities,
        inspected=inspected,
        inputs=inputs or {},
        next_blob_id=len(blobs) + 1,
    )
    for rule in ruleset.rules:
        evaluation, rule_reasons = rule.evaluate(ctx)
        evaluations.append(evaluation)
        reasons.extend(rule_reasons)
    for labels, class_name, values in ctx.found:  # regions rules found (an anomaly region)
        first = len(blobs) + 1
        found = blobs_measure(
            labels, probability=values, class_name=class_name, px_per_mm=px_per_mm
        )
        for offset, blob in enumerate(found):
            blob.id = first + offset
            blob_map[(labels == offset + 1) & (blob_map == 0)] = blob.id
        blobs.extend(found)
    t3 = time.perf_counter()

    severity = severity_max([r.severity for r in reasons])
    return Decision(
        verdict="NG" if reasons else "OK",
        severity=severity,
        reasons=reasons,
        blobs=blobs,
        label_map=label_map,
        timings={
            "prepare_ms": (t1 - t0) * 1000,
            "blobs_ms": (t2 - t1) * 1000,
            "rules_ms": (t3 - t2) * 1000,
            "total_ms": (t3 - t0) * 1000,
        },
        evaluations=evaluations,
        blob_map=blob_map,
        inspected_area_px=inspected_area,
        uncertainty=uncertainty,
    )


def class_areas(
    prep: Prepared,
    k: int,
    name: str,
    ruleset: RuleSet,
    *,
    inspected: np.ndarray,
    px_per_mm: float | None,
) -> np.ndarray:
    """Areas (px) of the kept blobs of class ``name`` (index ``k``) under ``ruleset``, unmeasured."""
    return _class_blobs(
        prep,
        k,
        name,
        ruleset.config_for(name),
        inspected=inspected,
        connectivity=ruleset.connectivity,
        px_per_mm=px_per_mm,
        measure=False,
    ).areas


def rules_verdict(
    probabilities: np.ndarray,
    *,
    classes: Sequence[str],
    ruleset: RuleSet,
    px_per_mm: float | None = None,
    inputs: Mapping[str, Any] | None = None,
) -> str:
    """``rules_apply(...).verdict`` without measuring blobs that no filter needs.

    Same arguments and errors as :func:`rules_apply`; for backtests over many
    images.
    """
    _check_inputs(probabilities, classes, ruleset, px_per_mm)
    shape = probabilities.shape[1:]
    inspected = regions_mask(ruleset.regions, shape=shape)
    prep = probabilities_prepare(probabilities)
    areas_by_class = {
        name: class_areas(prep, k, name, ruleset, inspected=inspected, px_per_mm=px_per_mm)
        for k, name in enumerate(classes)
    }
    ctx = RuleContext(
        areas_by_class=areas_by_class,
        ids_by_class=None,
        inspected_area=int(inspected.sum()),
        px_per_mm=px_per_mm,
        probabilities=probabilities,
        inspected=inspected,
        inputs=inputs or {},
    )
    triggered = [r.evaluate(ctx)[0].triggered for r in ruleset.rules]
    return "NG" if any(triggered) else "OK"
