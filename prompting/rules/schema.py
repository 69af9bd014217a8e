"""The rule set: a declarative, validated description of post-processing.

A rule set is JSON data. :func:`ruleset_validate` builds it in one pass that
checks every field and reports *all* invalid ones at once, by path
(``"rules[2].severity"``, ``"classes.scratch.morphology[0].radius"``), as a
:class:`~prompting.errors.RuleSetError`. Sizes are bounded so hostile input is
rejected before any work is done on it.

Shape (defaults in brackets)::

    {"version": 1,
     "connectivity": 4 | 8 [8],
     "default": ClassConfig,                  # for classes not listed
     "classes": {"<class>": ClassConfig},     # missing keys inherit "default"
     "regions": {"include": [polygon, ...], "ignore": [polygon, ...]},
     "rules": [Rule, ...]}

    ClassConfig = {"threshold": 0..1 [0.5],
                   "morphology": [{"op": "opening"|"closing"|"erosion"|"dilation", "radius": 1..50},
                                  {"op": "fill_holes", "max_area": px},
                                  {"op": "remove_small", "min_area": px}],
                   "filters": [{"measure": <MEASURES>, "min": x, "max": y}]}
    polygon = [[x, y], ...]   (>= 3 points, image pixels)
    Rule = {"id": str, "type": <RULE_TYPES>, "class": name | "*",
            "severity": "minor"|"major"|"critical", <the type's fields>}
           e.g. {"id": "big", "type": "blob_area", "class": "*", "min_area_px": 30,
                 "severity": "major"}; every type, its fields and its evaluation
           are one class in :mod:`prompting.rules.types`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from prompting.errors import RuleSetError
from prompting.rules.checks import (
    FieldErrors,
    check_list,
    check_mapping,
    check_name,
    check_number,
    is_number,
    show,
)
from prompting.rules.types import (
    ANY_CLASS,
    MAX_AREA,
    RULE_TYPES,
    SEVERITIES,
    Rule,
    rule_types_describe,
)

FORMAT_VERSION = 1
RADIUS_OPS = ("opening", "closing", "erosion", "dilation")
MORPHOLOGY_OPS = (*RADIUS_OPS, "fill_holes", "remove_small")
MEASURES = (
    "area_px",
    "area_mm2",
    "length",
    "width",
    "length_mm",
    "width_mm",
    "eccentricity",
    "solidity",
    "mean_prob",
    "max_prob",
)
MM_MEASURES = ("area_mm2", "length_mm", "width_mm")
RESERVED_CLASS_NAMES = (ANY_CLASS, "background")

# Bounds that keep validation and evaluation cheap whatever the input.
MAX_RULES = 64
MAX_CLASS_ENTRIES = 64
MAX_MORPHOLOGY_STEPS = 10
MAX_MORPHOLOGY_RADIUS = 50
MAX_FILTERS = 16
MAX_POLYGONS = 32
MAX_POLYGON_POINTS = 1_000
MAX_COORDINATE = 1_000_000

DEFAULT_THRESHOLD = 0.5
DEFAULT_CONNECTIVITY = 8

DEFAULT_RULESET: dict[str, Any] = {
    "version": FORMAT_VERSION,
    "connectivity": DEFAULT_CONNECTIVITY,
    "default": {
        "threshold": DEFAULT_THRESHOLD,
        "morphology": [{"op": "remove_small", "min_area": 5}],
        "filters": [],
    },
    "classes": {},
    "regions": {"include": [], "ignore": []},
    "rules": [
        {
            "id": "any-defect",
            "type": "blob_area",
            "class": "*",
            "min_area_px": 20,
            "severity": "major",
        }
    ],
}

Polygon = tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class MorphologyStep:
    """One step: ``radius`` for opening/closing/erosion/dilation (disk footprint),
    ``max_area`` for fill_holes (holes of area <= max_area are filled),
    ``min_area`` for remove_small (objects of area >= min_area are kept)."""

    op: str
    radius: int | None = None
    max_area: int | None = None
    min_area: int | None = None

    def to_dict(self) -> dict[str, Any]:
        key = {"fill_holes": "max_area", "remove_small": "min_area"}.get(self.op, "radius")
        return {"op": self.op, key: getattr(self, key)}


@dataclass(frozen=True)
class BlobFilter:
    """Keep a blob only if ``min <= blob.<measure> <= max`` (bounds optional)."""

    measure: str
    min: float | None = None
    max: float | None = None

    def accepts(self, value: float | None) -> bool:
        if value is None:
            return False
        if self.min is not None and value < self.min:
            return False
        return not (self.max is not None and value > self.max)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"measure": self.measure}
        if self.min is not None:
            out["min"] = self.min
        if self.max is not None:
            out["max"] = self.max
        return out


@dataclass(frozen=True)
class ClassConfig:
    """Per-class post-processing. In ``RuleSet.classes`` a None field inherits
    the default; :meth:`RuleSet.config_for` returns a fully resolved one."""

    threshold: float | None = None
    morphology: tuple[MorphologyStep, ...] | None = None
    filters: tuple[BlobFilter, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.threshold is not None:
            out["threshold"] = self.threshold
        if self.morphology is not None:
            out["morphology"] = [s.to_dict() for s in self.morphology]
        if self.filters is not None:
            out["filters"] = [f.to_dict() for f in self.filters]
        return out


@dataclass(frozen=True)
class Regions:
    """Inspection regions: union of ``include`` polygons (whole image if none),
    minus the union of ``ignore`` polygons. Polygons are (x, y) pixel points."""

    include: tuple[Polygon, ...] = ()
    ignore: tuple[Polygon, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "include": [[list(p) for p in poly] for poly in self.include],
            "ignore": [[list(p) for p in poly] for poly in self.ignore],
        }


@dataclass(frozen=True)
class RuleSet:
    """A validated rule set. Build it with :func:`ruleset_validate`."""

    connectivity: int
    default: ClassConfig
    classes: dict[str, ClassConfig] = field(default_factory=dict)
    regions: Regions = field(default_factory=Regions)
    rules: tuple[Rule, ...] = ()
    version: int = FORMAT_VERSION

    def config_for(self, class_name: str) -> ClassConfig:
        """The resolved config of ``class_name`` (its entry merged over default)."""
        own = self.classes.get(class_name, ClassConfig())
        return ClassConfig(
            threshold=own.threshold if own.threshold is not None else self.default.threshold,
            morphology=own.morphology if own.morphology is not None else self.default.morphology,
            filters=own.filters if own.filters is not None else self.default.filters,
        )

    @property
    def uses_mm2(self) -> bool:
        """Whether applying this rule set needs a px_per_mm calibration."""
        return bool(self.mm2_fields())

    def mm2_fields(self) -> list[str]:
        """Paths of every field that needs px_per_mm."""
        paths = [f"rules[{i}].{name}" for i, r in enumerate(self.rules) for name in r.mm_fields()]
        entries = [("default", self.default)] + [
            (f"classes.{k}", v) for k, v in self.classes.items()
        ]
        for prefix, cfg in entries:
            for j, f in enumerate(cfg.filters or ()):
                if f.measure in MM_MEASURES:
                    paths.append(f"{prefix}.filters[{j}].measure")
        return paths

    def referenced_classes(self) -> dict[str, str]:
        """Class name -> path of every field naming a specific class."""
        out = {f"classes.{k}": k for k in self.classes}
        for i, r in enumerate(self.rules):
            if r.class_name != ANY_CLASS:
                out[f"rules[{i}].class"] = r.class_name
        return out

    def with_threshold(self, threshold: float, *, class_name: str = ANY_CLASS) -> RuleSet:
        """A copy with ``threshold`` for ``class_name`` ("*": default and every entry)."""
        if class_name == ANY_CLASS:
            classes = {
                k: replace(v, threshold=threshold) if v.threshold is not None else v
                for k, v in self.classes.items()
            }
            return replace(
                self, default=replace(self.default, threshold=threshold), classes=classes
            )
        own = self.classes.get(class_name, ClassConfig())
        return replace(
            self, classes={**self.classes, class_name: replace(own, threshold=threshold)}
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON form; ``ruleset_validate(rs.to_dict()) == rs``."""
        return {
            "version": self.version,
            "connectivity": self.connectivity,
            "default": self.default.to_dict(),
            "classes": {k: v.to_dict() for k, v in self.classes.items()},
            "regions": self.regions.to_dict(),
            "rules": [r.to_dict() for r in self.rules],
        }


class _NotGiven:
    def __repr__(self) -> str:
        return "NOT_GIVEN"


NOT_GIVEN: Any = _NotGiven()


def _parse_step(raw: Any, path: str, errs: FieldErrors) -> MorphologyStep | None:
    if not isinstance(raw, Mapping):
        errs.add(path, "must be an object like {'op': 'opening', 'radius': 1}")
        return None
    op = raw.get("op")
    if op not in MORPHOLOGY_OPS:
        errs.add(f"{path}.op", f"must be one of {', '.join(MORPHOLOGY_OPS)}, got {show(op)}")
        return None
    key = {"fill_holes": "max_area", "remove_small": "min_area"}.get(op, "radius")
    check_mapping(raw, path, errs, ("op", key))
    if key not in raw:
        errs.add(f"{path}.{key}", f"required for {op}")
        return None
    hi = MAX_MORPHOLOGY_RADIUS if key == "radius" else MAX_AREA
    value = check_number(raw[key], f"{path}.{key}", errs, lo=1, hi=hi, integer=True)
    if value is None:
        return None
    return MorphologyStep(op=op, **{key: value})


def _parse_filter(raw: Any, path: str, errs: FieldErrors) -> BlobFilter | None:
    if check_mapping(raw, path, errs, ("measure", "min", "max")) is None:
        return None
    ok = True
    measure = raw.get("measure")
    if measure not in MEASURES:
        errs.add(f"{path}.measure", f"must be one of {', '.join(MEASURES)}, got {show(measure)}")
        ok = False
    bounds: dict[str, float | None] = {"min": None, "max": None}
    for key in bounds:
        if key in raw:
            bounds[key] = check_number(raw[key], f"{path}.{key}", errs, lo=-1e12, hi=1e12)
            ok = ok and bounds[key] is not None
    if "min" not in raw and "max" not in raw:
        errs.add(path, "give min, max or both")
        ok = False
    lo, hi = bounds["min"], bounds["max"]
    if lo is not None and hi is not None and lo > hi:
        errs.add(f"{path}.max", f"must be >= min ({lo:g}), got {hi:g}")
        ok = False
    return BlobFilter(measure=measure, min=lo, max=hi) if ok else None


def _parse_class_config(
    raw: Any, path: str, errs: FieldErrors, *, is_default: bool
) -> ClassConfig | None:
    if check_mapping(raw, path, errs, ("threshold", "morphology", "filters")) is None:
        return None
    threshold = morphology = filters = None
    ok = True
    if "threshold" in raw:
        threshold = check_number(raw["threshold"], f"{path}.threshold", errs, lo=0, hi=1)
        ok = ok and threshold is not None
    elif is_default:
        threshold = DEFAULT_THRESHOLD
    if "morphology" in raw:
        items = check_list(
            raw["morphology"], f"{path}.morphology", errs, max_len=MAX_MORPHOLOGY_STEPS
        )
        if items is None:
            ok = False
        else:
            steps = [_parse_step(s, f"{path}.morphology[{i}]", errs) for i, s in enumerate(items)]
            ok = ok and None not in steps
            morphology = tuple(s for s in steps if s is not None)
    elif is_default:
        morphology = ()
    if "filters" in raw:
        items = check_list(raw["filters"], f"{path}.filters", errs, max_len=MAX_FILTERS)
        if items is None:
            ok = False
        else:
            parsed = [_parse_filter(f, f"{path}.filters[{i}]", errs) for i, f in enumerate(items)]
            ok = ok and None not in parsed
            filters = tuple(f for f in parsed if f is not None)
    elif is_default:
        filters = ()
    return ClassConfig(threshold=threshold, morphology=morphology, filters=filters) if ok else None


def _parse_polygon(raw: Any, path: str, errs: FieldErrors) -> Polygon | None:
    points = check_list(raw, path, errs, max_len=MAX_POLYGON_POINTS)
    if points is None:
        return None
    if len(points) < 3:
        errs.add(path, f"a polygon needs at least 3 points, got {len(points)}")
        return None
    out = []
    for i, p in enumerate(points):
        if not isinstance(p, (list, tuple)) or len(p) != 2:
            errs.add(f"{path}[{i}]", "must be [x, y]")
            continue
        x = check_number(p[0], f"{path}[{i}]", errs, lo=-MAX_COORDINATE, hi=MAX_COORDINATE)
        y = check_number(p[1], f"{path}[{i}]", errs, lo=-MAX_COORDINATE, hi=MAX_COORDINATE)
        if x is not None and y is not None:
            out.append((x, y))
    return tuple(out) if len(out) == len(points) else None


def _parse_regions(raw: Any, path: str, errs: FieldErrors) -> Regions | None:
    if check_mapping(raw, path, errs, ("include", "ignore")) is None:
        return None
    parsed: dict[str, tuple[Polygon, ...]] = {}
    ok = True
    for key in ("include", "ignore"):
        items = check_list(raw.get(key, []), f"{path}.{key}", errs, max_len=MAX_POLYGONS)
        if items is None:
            ok = False
            continue
        polys = [_parse_polygon(p, f"{path}.{key}[{i}]", errs) for i, p in enumerate(items)]
        ok = ok and None not in polys
        parsed[key] = tuple(p for p in polys if p is not None)
    return Regions(**parsed) if ok else None


def _parse_rule(raw: Any, path: str, errs: FieldErrors) -> Rule | None:
    if not isinstance(raw, Mapping):
        errs.add(path, f"must be an object, got {type(raw).__name__}")
        return None
    rule_type = raw.get("type")
    cls = RULE_TYPES.get(rule_type) if isinstance(rule_type, str) else None
    common = ("id", "type", "class", "severity")
    if cls is None:
        errs.add(f"{path}.type", f"must be one of {', '.join(RULE_TYPES)}, got {show(rule_type)}")
        allowed = (*common, *{f.name for t in RULE_TYPES.values() for f in t.fields})
    else:
        allowed = (*common, *(f.name for f in cls.fields))
    check_mapping(raw, path, errs, allowed)
    rule_id = check_name(raw.get("id"), f"{path}.id", errs, "id")
    class_name = check_name(raw.get("class"), f"{path}.class", errs, "class")
    severity = raw.get("severity")
    ok = cls is not None
    if severity not in SEVERITIES:
        errs.add(
            f"{path}.severity", f"must be one of {', '.join(SEVERITIES)}, got {show(severity)}"
        )
        ok = False
    ok = ok and rule_id is not None and class_name is not None
    if cls is None:
        return None
    values = cls.parse(raw, path, errs)
    if not ok or values is None:
        return None
    return cls(id=rule_id, class_name=class_name, severity=severity, **values)


def ruleset_vocabulary() -> dict[str, Any]:
    """What a rule set may say, for editors: severities, blob measures,
    morphology operations (op -> its parameter), and every rule type with its
    fields (see :func:`prompting.rules.types.rule_types_describe`)."""
    return {
        "version": FORMAT_VERSION,
        "any_class": ANY_CLASS,
        "severities": list(SEVERITIES),
        "measures": list(MEASURES),
        "mm_measures": list(MM_MEASURES),
        "morphology_ops": {
            op: {"fill_holes": "max_area", "remove_small": "min_area"}.get(op, "radius")
            for op in MORPHOLOGY_OPS
        },
        "rule_types": rule_types_describe(),
    }


_TOP_KEYS = ("version", "connectivity", "default", "classes", "regions", "rules")


def ruleset_validate(
    data: Mapping,
    *,
    classes: Sequence[str] | None = None,
    px_per_mm: float | None = NOT_GIVEN,
) -> RuleSet:
    """Build a :class:`RuleSet` from JSON data, checking every field.

    ``classes``: when given, every class named in ``classes`` entries or rules
    must be one of them. ``px_per_mm``: when given (a number or None), it is
    the calibration the rule set will run with; None then makes every mm-based
    field (``min_area_mm2``, ``area_mm2`` filters...) an error, since it could
    never be applied. Left out, calibration is checked at apply time.

    Raises RuleSetError whose ``errors`` map each invalid field's path to its
    messages, all of them, e.g. ``{"rules[2].severity": ["must be one of ..."]}``.

    >>> ruleset_validate({"connectivity": 4}).connectivity
    4
    """
    errs = FieldErrors()
    if check_mapping(data, "", errs, _TOP_KEYS) is None:
        raise RuleSetError(errs.errors)

    version = data.get("version", FORMAT_VERSION)
    if version != FORMAT_VERSION or isinstance(version, bool):
        errs.add(
            "version", f"unsupported version {show(version)}; this engine reads {FORMAT_VERSION}"
        )

    connectivity = data.get("connectivity", DEFAULT_CONNECTIVITY)
    if connectivity not in (4, 8) or isinstance(connectivity, bool):
        errs.add("connectivity", f"must be 4 or 8, got {show(connectivity)}")

    default = _parse_class_config(data.get("default", {}), "default", errs, is_default=True)

    class_configs: dict[str, ClassConfig] = {}
    raw_classes = data.get("classes", {})
    if not isinstance(raw_classes, Mapping):
        errs.add(
            "classes",
            f"must be an object mapping class name to settings, got {type(raw_classes).__name__}",
        )
    elif len(raw_classes) > MAX_CLASS_ENTRIES:
        errs.add("classes", f"too many entries: {len(raw_classes)} > {MAX_CLASS_ENTRIES}")
    else:
        for name, raw in raw_classes.items():
            path = f"classes.{name}"
            if check_name(name, path, errs, "class name") is None:
                continue
            if name in RESERVED_CLASS_NAMES:
                errs.add(
                    path, f"{name!r} is not a class; use 'default' for settings of every class"
                )
                continue
            cfg = _parse_class_config(raw, path, errs, is_default=False)
            if cfg is not None:
                class_configs[name] = cfg

    regions = _parse_regions(data.get("regions", {}), "regions", errs)

    rules: list[Rule] = []
    raw_rules = check_list(data.get("rules", []), "rules", errs, max_len=MAX_RULES)
    if raw_rules is not None:
        seen: dict[str, int] = {}
        for i, raw in enumerate(raw_rules):
            rule = _parse_rule(raw, f"rules[{i}]", errs)
            rule_id = raw.get("id") if isinstance(raw, Mapping) else None
            if isinstance(rule_id, str):
                if rule_id in seen:
                    errs.add(
                        f"rules[{i}].id", f"duplicate id {rule_id!r} (also rules[{seen[rule_id]}])"
                    )
                    rule = None
                else:
                    seen[rule_id] = i
            if rule is not None:
                rules.append(rule)

    if errs.errors:
        raise RuleSetError(errs.errors)
    assert default is not None and regions is not None
    ruleset = RuleSet(
        connectivity=connectivity,
        default=default,
        classes=class_configs,
        regions=regions,
        rules=tuple(rules),
        version=version,
    )
    ruleset_check_context(ruleset, classes=classes, px_per_mm=px_per_mm)
    return ruleset


def ruleset_check_context(
    ruleset: RuleSet,
    *,
    classes: Sequence[str] | None = None,
    px_per_mm: float | None = NOT_GIVEN,
) -> None:
    """Check a rule set against a model's classes and a calibration.

    Raises RuleSetError naming every field that refers to an unknown class,
    and, when ``px_per_mm`` is given as None, every mm-based field.
    """
    errs = FieldErrors()
    if classes is not None:
        known = ", ".join(classes)
        for path, name in ruleset.referenced_classes().items():
            if name not in classes:
                errs.add(
                    path if path.startswith("rules") else path,
                    f"unknown class {name!r}; classes: {known}",
                )
    if px_per_mm is not NOT_GIVEN:
        if px_per_mm is None:
            for path in ruleset.mm2_fields():
                errs.add(path, "needs px_per_mm (pixels per millimetre), which is not set")
        elif not is_number(px_per_mm) or not math.isfinite(px_per_mm) or px_per_mm <= 0:
            errs.add("px_per_mm", f"must be a positive number, got {show(px_per_mm)}")
    if errs.errors:
        raise RuleSetError(errs.errors)
