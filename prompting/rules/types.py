"""Rule types: one small class per type, registered by name.

A rule is data like ``{"id": "big", "type": "blob_area", "class": "*",
"min_area_px": 30, "severity": "major"}``. Its ``type`` names a subclass of
:class:`Rule` in :data:`RULE_TYPES`; the class says which fields the type
takes (:attr:`Rule.fields`, which also drive the dashboard's rule editor
through the API), and how a rule of that type is evaluated on one image
(:meth:`Rule.evaluate`). Schema validation, the decision, the backtest and
the tuner all ask this registry, so a new rule type is one class here, with
``@rule_type_register``, and its test::

    @rule_type_register
    @dataclass(frozen=True)
    class BlobCount(Rule):
        type_name = "blob_count"
        label = "blob count ≥"
        fields = (RuleField("min_count", unit="blobs", integer=True, lo=1, hi=MAX_COUNT, default=1),)
        min_count: int | None = None

        def evaluate(self, ctx: RuleContext) -> tuple[RuleEvaluation, list[Reason]]:
            ...

Fields sharing a ``group`` are alternatives (give exactly one, e.g. an area
in px or in mm²); a field alone in its group is required.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, ClassVar

import numpy as np
from scipy import ndimage as ndi

from prompting.errors import RuleSetError
from prompting.rules.checks import FieldErrors, check_number

ANY_CLASS = "*"
SEVERITIES = ("minor", "major", "critical")
MAX_AREA = 1_000_000_000
MAX_COUNT = 1_000_000


def number_readable(x: float) -> str:
    """A measure as people write it in a reason: never scientific notation.

    >>> number_readable(12200.0), number_readable(3.5), number_readable(0.0125)
    ('12,200', '3.5', '0.0125')
    """
    x = float(x)
    if x.is_integer():
        return f"{int(x):,}"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 1:
        return f"{x:.2f}".rstrip("0").rstrip(".")
    return f"{x:.4f}".rstrip("0").rstrip(".") or "0"


@dataclass(frozen=True)
class RuleField:
    """One numeric field of a rule type.

    ``group``: fields of one group are alternatives (exactly one is given);
    defaults to the field's own name. ``lo``/``hi``: bounds (``lo_open``:
    ``lo`` itself excluded). ``default``: the editor's value for a new rule.
    ``mm_power``: the value is in px units divided by ``px_per_mm ** mm_power``
    (0: pixels, 2: mm²), so a field with ``mm_power > 0`` needs a calibration.
    ``unit``/``unit_label``/``suffix``/``step``: how the editor shows it.
    """

    name: str
    unit: str
    lo: float
    hi: float
    default: float
    group: str = ""
    integer: bool = False
    lo_open: bool = False
    mm_power: int = 0
    unit_label: str = ""
    suffix: str = ""
    step: float | str = "any"

    @property
    def group_name(self) -> str:
        return self.group or self.name

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "unit": self.unit,
            "unit_label": self.unit_label or self.unit,
            "integer": self.integer,
            "min": self.lo,
            "max": self.hi,
            "min_exclusive": self.lo_open,
            "default": self.default,
            "step": self.step,
            "mm_power": self.mm_power,
            "suffix": self.suffix,
        }


@dataclass
class Reason:
    """Why an image is NG: one violated rule (for blob rules, one blob)."""

    rule_id: str
    rule_type: str
    class_name: str
    blob_id: int | None
    measure: str
    value: float
    threshold: float
    severity: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RuleEvaluation:
    """The outcome of one rule, violated or not. ``value`` is what was compared
    with ``threshold``: the largest blob area, the blob count, or the area
    fraction of the inspected area."""

    rule_id: str
    rule_type: str
    class_name: str
    measure: str
    value: float
    threshold: float
    triggered: bool
    severity: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RuleContext:
    """What rules are evaluated on, for one image.

    ``areas_by_class``: class name -> (n,) int64 areas (px) of its kept blobs,
    classes in model order. ``ids_by_class``: the blobs' ids, in the same
    order; None when only the verdict is wanted (rules then give no reasons).
    ``inspected_area``: inspected pixels. ``probabilities``: (K+1, H, W)
    float32, index 0 background; ``inspected``: (H, W) bool, the inspected
    pixels; ``inputs``: further per-image data by name (e.g. maps a rule type
    reads), as given to ``rules_apply``.
    """

    areas_by_class: Mapping[str, np.ndarray]
    ids_by_class: Mapping[str, list[int]] | None
    inspected_area: int
    px_per_mm: float | None
    probabilities: np.ndarray | None = None
    inspected: np.ndarray | None = None
    inputs: Mapping[str, Any] = field(default_factory=dict)
    #: the id the next region a rule finds gets (after every class blob)
    next_blob_id: int = 1
    #: regions rules found beyond the classes' blobs: (labels, class name, values)
    found: list[tuple[np.ndarray, str, np.ndarray]] = field(default_factory=list)

    def regions_add(self, labels: np.ndarray, *, class_name: str, values: np.ndarray) -> list[int]:
        """Regions a rule found (``labels`` (H, W) int32, 1..n, 0 none), which
        join the decision's blobs as ``class_name`` (``values`` (H, W) float32:
        their ``mean_prob``/``max_prob``); returns their blob ids, in label order."""
        n = int(labels.max(initial=0))
        ids = list(range(self.next_blob_id, self.next_blob_id + n))
        self.next_blob_id += n
        self.found.append((labels, class_name, values))
        return ids


@dataclass(frozen=True)
class Rule:
    """A decision rule; subclasses are the rule types (see the module doc)."""

    id: str
    class_name: str
    severity: str

    #: the ``type`` of the rule's JSON
    type_name: ClassVar[str] = ""
    #: how the dashboard's rule editor names the type
    label: ClassVar[str] = ""
    #: the type's own fields, in JSON order
    fields: ClassVar[tuple[RuleField, ...]] = ()
    #: the tuner may set this rule's minimum blob area (see ``area_px``)
    tunable_area: ClassVar[bool] = False

    @property
    def type(self) -> str:
        return self.type_name

    def applies_to(self, class_name: str) -> bool:
        return self.class_name in (ANY_CLASS, class_name)

    def params(self) -> dict[str, Any]:
        """The type's fields that are set, in JSON order."""
        values = ((f.name, getattr(self, f.name)) for f in self.fields)
        return {k: v for k, v in values if v is not None}

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "class": self.class_name,
            **self.params(),
            "severity": self.severity,
        }

    def mm_fields(self) -> list[str]:
        """Names of the set fields that need px_per_mm."""
        return [f.name for f in self.fields if f.mm_power and getattr(self, f.name) is not None]

    @classmethod
    def parse(cls, raw: Mapping, path: str, errs: FieldErrors) -> dict[str, Any] | None:
        """The type's field values from ``raw`` (a rule's JSON object), or None
        after recording every invalid field in ``errs`` by path."""
        groups: dict[str, list[RuleField]] = {}
        for f in cls.fields:
            groups.setdefault(f.group_name, []).append(f)
        values: dict[str, Any] = {}
        ok = True
        for members in groups.values():
            given = [f for f in members if f.name in raw]
            if len(given) != 1:
                if len(members) == 1:
                    errs.add(f"{path}.{members[0].name}", "required")
                else:
                    names = ", ".join(f.name for f in members)
                    got = "both" if len(given) == 2 else "neither" if not given else len(given)
                    errs.add(
                        f"{path}.{members[0].name}", f"give exactly one of {names} (got {got})"
                    )
                ok = False
                continue
            f = given[0]
            values[f.name] = check_number(
                raw[f.name],
                f"{path}.{f.name}",
                errs,
                lo=f.lo,
                hi=f.hi,
                integer=f.integer,
                lo_open=f.lo_open,
            )
        return values if ok and None not in values.values() else None

    def evaluate(self, ctx: RuleContext) -> tuple[RuleEvaluation, list[Reason]]:
        """This rule on one image: its evaluation and, when ``ctx.ids_by_class``
        is given and the rule is violated, its reasons."""
        raise NotImplementedError

    # for types with ``tunable_area``
    def area_px(self, px_per_mm: float | None) -> int:
        """The rule's minimum blob area in pixels."""
        raise NotImplementedError

    def with_area_px(self, min_area_px: int, px_per_mm: float | None) -> Rule:
        """A copy whose minimum blob area is ``min_area_px`` pixels."""
        raise NotImplementedError

    # helpers for the types
    def classes_in(self, ctx: RuleContext) -> list[str]:
        """The classes of ``ctx`` this rule covers, in model order."""
        return [c for c in ctx.areas_by_class if self.applies_to(c)]

    @property
    def where(self) -> str:
        return "any class" if self.class_name == ANY_CLASS else self.class_name

    def reason(
        self,
        class_name: str,
        blob_id: int | None,
        measure: str,
        value: float,
        threshold: float,
        what: str,
    ) -> Reason:
        """A reason; ``what`` is the finding, the rule and severity are appended."""
        return Reason(
            rule_id=self.id,
            rule_type=self.type,
            class_name=class_name,
            blob_id=blob_id,
            measure=measure,
            value=value,
            threshold=threshold,
            severity=self.severity,
            message=f"{what} (rule {self.id!r}, {self.severity})",
        )

    def evaluation(
        self, measure: str, value: float, threshold: float, triggered: bool
    ) -> RuleEvaluation:
        return RuleEvaluation(
            rule_id=self.id,
            rule_type=self.type,
            class_name=self.class_name,
            measure=measure,
            value=value,
            threshold=threshold,
            triggered=bool(triggered),
            severity=self.severity,
        )


#: rule type name -> class, in registration order (the editor lists them so)
RULE_TYPES: dict[str, type[Rule]] = {}


def rule_type_register(cls: type[Rule]) -> type[Rule]:
    """Class decorator: make ``cls`` the rule type named ``cls.type_name``."""
    if not cls.type_name or cls.type_name in RULE_TYPES:
        raise ValueError(f"rule type name {cls.type_name!r} is empty or taken")
    RULE_TYPES[cls.type_name] = cls
    return cls


def rule_types_describe() -> list[dict[str, Any]]:
    """Every rule type as the editor needs it: type, label, and field groups."""
    out = []
    for cls in RULE_TYPES.values():
        groups: dict[str, list[dict[str, Any]]] = {}
        for f in cls.fields:
            groups.setdefault(f.group_name, []).append(f.to_dict())
        out.append(
            {
                "type": cls.type_name,
                "label": cls.label,
                "params": [{"group": g, "fields": fs} for g, fs in groups.items()],
                "tunable_area": cls.tunable_area,
            }
        )
    return out


# ---------------------------------------------------------------- the types


@rule_type_register
@dataclass(frozen=True)
class BlobArea(Rule):
    """NG when a blob of the class is at least this large (px or mm²); one
    reason per such blob."""

    type_name = "blob_area"
    label = "blob area ≥"
    fields = (
        RuleField(
            "min_area_px",
            unit="px",
            group="min_area",
            integer=True,
            lo=1,
            hi=MAX_AREA,
            default=30,
            step=1,
        ),
        RuleField(
            "min_area_mm2",
            unit="mm2",
            unit_label="mm²",
            group="min_area",
            lo=0,
            hi=1e9,
            lo_open=True,
            default=1,
            mm_power=2,
        ),
    )
    tunable_area = True

    min_area_px: int | None = None
    min_area_mm2: float | None = None

    def area_px(self, px_per_mm: float | None) -> int:
        """The minimum area in pixels (mm² rounded up to whole pixels)."""
        if self.min_area_px is not None:
            return self.min_area_px
        assert self.min_area_mm2 is not None and px_per_mm
        return max(1, math.ceil(self.min_area_mm2 * px_per_mm**2 - 1e-9))

    def with_area_px(self, min_area_px: int, px_per_mm: float | None) -> BlobArea:
        """A copy with minimum area ``min_area_px``, kept in this rule's unit."""
        if self.min_area_mm2 is not None:
            assert px_per_mm
            return replace(self, min_area_mm2=min_area_px * (1.0 / px_per_mm**2))
        return replace(self, min_area_px=min_area_px)

    def evaluate(self, ctx: RuleContext) -> tuple[RuleEvaluation, list[Reason]]:
        if self.min_area_mm2 is not None:
            if not ctx.px_per_mm:
                raise RuleSetError(
                    {f"rule {self.id}.min_area_mm2": ["needs px_per_mm, which is not set"]}
                )
            measure, threshold = "area_mm2", self.min_area_mm2
            scale, unit = 1.0 / ctx.px_per_mm**2, "mm²"
        else:
            measure, threshold, scale, unit = "area_px", float(self.min_area_px), 1.0, "px"
        largest = 0.0
        reasons: list[Reason] = []
        for name in self.classes_in(ctx):
            values = ctx.areas_by_class[name] * scale
            if values.size:
                largest = max(largest, float(values.max()))
            if ctx.ids_by_class is None:
                continue
            for blob_id, value in zip(ctx.ids_by_class[name], values.tolist(), strict=True):
                if value >= threshold:
                    what = (
                        f"{name} blob #{blob_id}: area {number_readable(value)} {unit} >= "
                        f"{number_readable(threshold)} {unit}"
                    )
                    reasons.append(self.reason(name, blob_id, measure, value, threshold, what))
        triggered = largest >= threshold and largest > 0
        return self.evaluation(measure, largest, threshold, triggered), reasons


@rule_type_register
@dataclass(frozen=True)
class BlobCount(Rule):
    """NG when the class has at least this many blobs."""

    type_name = "blob_count"
    label = "blob count ≥"
    fields = (
        RuleField(
            "min_count",
            unit="blobs",
            suffix="blobs",
            integer=True,
            lo=1,
            hi=MAX_COUNT,
            default=1,
            step=1,
        ),
    )

    min_count: int | None = None

    def evaluate(self, ctx: RuleContext) -> tuple[RuleEvaluation, list[Reason]]:
        threshold = float(self.min_count)
        value = float(sum(ctx.areas_by_class[n].size for n in self.classes_in(ctx)))
        triggered = value >= threshold
        reasons = []
        if triggered and ctx.ids_by_class is not None:
            what = f"{int(value)} {self.where} blobs >= {int(threshold)}"
            reasons.append(self.reason(self.class_name, None, "count", value, threshold, what))
        return self.evaluation("count", value, threshold, triggered), reasons


@rule_type_register
@dataclass(frozen=True)
class AreaFraction(Rule):
    """NG when the class covers at least this fraction of the inspected area."""

    type_name = "area_fraction"
    label = "area fraction ≥"
    fields = (
        RuleField(
            "min_fraction",
            unit="fraction",
            suffix="of the image",
            lo=0,
            hi=1,
            lo_open=True,
            default=0.01,
            step=0.001,
        ),
    )

    min_fraction: float | None = None

    def evaluate(self, ctx: RuleContext) -> tuple[RuleEvaluation, list[Reason]]:
        threshold = float(self.min_fraction)
        defect = sum(int(ctx.areas_by_class[n].sum()) for n in self.classes_in(ctx))
        value = defect / ctx.inspected_area if ctx.inspected_area else 0.0
        triggered = value >= threshold and defect > 0
        reasons = []
        if triggered and ctx.ids_by_class is not None:
            what = f"{self.where} covers {value:.2%} of the inspected area >= {threshold:.2%}"
            reasons.append(
                self.reason(self.class_name, None, "area_fraction", value, threshold, what)
            )
        return self.evaluation("area_fraction", value, threshold, triggered), reasons


@rule_type_register
@dataclass(frozen=True)
class AnomalyScore(Rule):
    """NG when the image's anomaly score (distance to the nearest good-part patch,
    1.0 = the level good training images reach; :mod:`prompting.anomaly`) is at
    least this high anywhere in the inspected area. Needs a model with a memory
    bank of good parts (the ``backbone`` backend); the class is ignored."""

    type_name = "anomaly_score"
    label = "anomaly score ≥"
    fields = (
        RuleField(
            "min_score",
            unit="score",
            suffix="× the good parts' level",
            lo=0,
            hi=1000,
            lo_open=True,
            default=1.5,
            step=0.05,
        ),
    )

    min_score: float | None = None

    def evaluate(self, ctx: RuleContext) -> tuple[RuleEvaluation, list[Reason]]:
        threshold = float(self.min_score)
        score = ctx.inputs.get("anomaly")
        if score is None:
            raise RuleSetError(
                {
                    f"rule {self.id}.min_score": [
                        "needs an anomaly map: the model has no memory bank of good parts "
                        "(train on the backbone backend with good parts marked OK or background painted)"
                    ]
                }
            )
        score = np.asarray(score, np.float32)
        if ctx.inspected is not None and ctx.inspected.shape == score.shape:
            score = np.where(ctx.inspected, score, 0.0)
        value = float(score.max(initial=0.0))
        triggered = value >= threshold
        reasons = []
        if triggered and ctx.ids_by_class is not None:
            y, x = np.unravel_index(int(score.argmax()), score.shape)
            labels = anomaly_region(score, threshold=threshold)
            ids = ctx.regions_add(labels, class_name=ANOMALY_CLASS, values=score)
            peak = labels[y, x]
            region = labels == peak
            x0, x1 = np.flatnonzero(region.any(0))[[0, -1]]
            y0, y1 = np.flatnonzero(region.any(1))[[0, -1]]
            what = (
                f"anomaly score {value:.2f} >= {threshold:.2f} at (x={x}, y={y}), in an "
                f"anomalous region of {int(region.sum())} px (x {x0}-{x1 + 1}, "
                f"y {y0}-{y1 + 1}); {len(ids)} region{'' if len(ids) == 1 else 's'} in all"
            )
            reasons.append(
                self.reason(ANY_CLASS, ids[peak - 1], "anomaly_score", value, threshold, what)
            )
        return self.evaluation("anomaly_score", value, threshold, triggered), reasons


#: the class name of anomaly regions among a decision's blobs
ANOMALY_CLASS = "anomaly"
#: an anomaly region grows from where the score reaches the rule's threshold down
#: to this share of it (magnetic tiles from ten good parts: pixel IoU 0.03 at the
#: threshold itself, 0.21 at 0.65; benchmarks/README.md)
ANOMALY_REGION_RATIO = 0.65


def anomaly_region(
    score: np.ndarray, *, threshold: float, ratio: float = ANOMALY_REGION_RATIO
) -> np.ndarray:
    """(H, W) int32 labels 1..n of the anomalous regions of ``score`` (H, W)
    float32: the 8-connected regions scoring at least ``ratio`` x ``threshold``
    that reach ``threshold`` somewhere (hysteresis); 0 elsewhere.

    >>> s = np.zeros((4, 6), np.float32); s[1, 1:4] = [0.7, 1.2, 0.7]; s[2, 5] = 0.9
    >>> anomaly_region(s, threshold=1.0).tolist()
    [[0, 0, 0, 0, 0, 0], [0, 1, 1, 1, 0, 0], [0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]]
    """
    labels, n = ndi.label(score >= ratio * threshold, structure=np.ones((3, 3), bool))
    keep = np.unique(labels[score >= threshold])
    keep = keep[keep > 0]
    lut = np.zeros(n + 1, np.int32)
    lut[keep] = np.arange(1, len(keep) + 1, dtype=np.int32)
    return lut[labels]
