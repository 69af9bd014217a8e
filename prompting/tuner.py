"""Tune a rule set on labelled images: the proposal the backtest then checks.

:func:`rules_tune` proposes a threshold and a minimum blob area for one
``blob_area`` rule by an exact search: blob areas are computed once per image
and threshold, after which every candidate minimum area costs one comparison
per image. When every image has an anomaly map, the ``anomaly_score`` rule's
minimum score is tuned with them. The proposal comes with its backtest
(:func:`prompting.backtest.backtest_run`) against the base rule set.

The proposal minimises escapes first. Where the labelled images allow fewer
overkills for more escapes, those operating points come with it as
``alternatives`` (the trade-off's Pareto front), so the engineer chooses
the balance the line needs rather than the tuner.
"""

from __future__ import annotations

import math
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from prompting.backtest import (
    BacktestReport,
    ProgressFn,
    backtest_run,
    progress_none,
    truths_check,
)
from prompting.rates import error_rates
from prompting.rules.decision import class_areas, probabilities_prepare
from prompting.rules.regions import regions_mask
from prompting.rules.schema import RuleSet, ruleset_check_context
from prompting.rules.types import ANY_CLASS, RULE_TYPES, Rule, RuleContext
from prompting.tuner_anomaly import (
    anomaly_peaks,
    anomaly_rule_of,
    good_parts_score,
    score_pick,
    trained_among,
    with_anomaly_score,
)
from prompting.tuner_search import AreaBest, best_min_area, threshold_pick, tradeoffs

DEFAULT_THRESHOLDS: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(1, 20))
TUNED_RULE_ID = "tuned-area"
#: a minimum blob area at least this share of an image judges parts by how far
#: their masks flood, not by defects: the proposal then says so
FLOOD_SHARE = 0.25


@dataclass
class Alternative:
    """Another operating point on the labelled images: more escapes, fewer overkills
    than the proposal, of ``n_ng`` NG and ``n_ok`` OK images. ``anomaly_min_score``:
    the anomaly rule's minimum score in ``ruleset`` (None: no anomaly rule was
    tuned); ``area_share``: the minimum area as a share of the labelled images'
    median inspected area."""

    escapes: int
    overkills: int
    n_ng: int
    n_ok: int
    threshold: float
    min_area_px: int
    anomaly_min_score: float | None
    area_share: float
    ruleset: RuleSet

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with the rates and their 95 % intervals."""
        return {
            "escapes": self.escapes,
            "overkills": self.overkills,
            **error_rates(
                escapes=self.escapes, n_ng=self.n_ng, overkills=self.overkills, n_ok=self.n_ok
            ),
            "threshold": self.threshold,
            "min_area_px": self.min_area_px,
            "anomaly_min_score": self.anomaly_min_score,
            "area_share": self.area_share,
            # judged by how far the masks flood, not by defects (see FLOOD_SHARE)
            "floods": self.area_share >= FLOOD_SHARE,
            "rules": self.ruleset.to_dict(),
        }


@dataclass
class TuneResult:
    """The tuner's proposal (not saved anywhere).

    ``ruleset``: ``base`` with the proposed ``threshold`` and minimum blob
    area ``min_area_px`` on rule ``rule_id`` (None only when nothing could be
    tuned and the base has no blob_area rule); ``report``: its backtest against
    ``base``; ``warning``: plain-language caveats (no NG or no OK examples...),
    None when there are none; ``alternatives``: the other operating points the
    labelled images allow, each with more escapes and fewer overkills than the
    one before (the proposal first; see :class:`Alternative`).
    """

    ruleset: RuleSet
    threshold: float
    min_area_px: int | None
    report: BacktestReport
    warning: str | None
    rule_id: str = TUNED_RULE_ID
    escapes: int = 0
    overkills: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    alternatives: list[Alternative] = field(default_factory=list)


def _tunable_names() -> str:
    """The rule types whose minimum blob area the tuner may set, for messages."""
    return "/".join(name for name, cls in RULE_TYPES.items() if cls.tunable_area)


def _tuned_rule(base: RuleSet, rule_id: str | None, notes: list[str]) -> Rule | None:
    candidates = [r for r in base.rules if r.tunable_area]
    if rule_id is not None:
        for r in base.rules:
            if r.id == rule_id:
                if not r.tunable_area:
                    raise ValueError(
                        f"rule {rule_id!r} is a {r.type} rule; "
                        f"only {_tunable_names()} rules can be tuned"
                    )
                return r
        raise ValueError(f"no rule {rule_id!r} in the base rule set")
    if len(candidates) > 1:
        others = ", ".join(repr(r.id) for r in candidates[1:])
        notes.append(
            f"tuned rule {candidates[0].id!r}, the first of {len(candidates)} "
            f"{_tunable_names()} rules; {others} kept as they are"
        )
    return candidates[0] if candidates else None


def _with_rule(base: RuleSet, rule: Rule, min_area_px: int, px_per_mm: float | None) -> RuleSet:
    new = rule.with_area_px(min_area_px, px_per_mm)
    rules = tuple(new if r.id == rule.id else r for r in base.rules)
    if not any(r.id == rule.id for r in base.rules):
        rules = (*rules, new)
    return replace(base, rules=rules)


@dataclass
class _Table:
    """Per image (rows) and threshold (columns), computed once."""

    tuned_max: np.ndarray  # (n, T) int64: largest blob area the tuned rule sees
    other_ng: np.ndarray  # (n, T) bool: another rule makes the image NG
    inspected_area: np.ndarray  # (n,) int64: pixels the rules inspect


def _same_config(a: RuleSet, b: RuleSet, classes: Sequence[str]) -> bool:
    """Whether ``a`` and ``b`` differ only in the thresholds of ``classes``."""
    return all(
        replace(a.config_for(c), threshold=None) == replace(b.config_for(c), threshold=None)
        for c in classes
    )


def _table(
    probabilities: Mapping[str, np.ndarray],
    image_ids: Sequence[str],
    *,
    classes: Sequence[str],
    base: RuleSet,
    rule: Rule,
    thresholds: Sequence[float],
    px_per_mm: float | None,
    progress: ProgressFn,
    inputs: Mapping[str, Mapping[str, Any]],
    skip: Collection[str] = (),
) -> _Table:
    n, n_t = len(image_ids), len(thresholds)
    tuned_max = np.zeros((n, n_t), np.int64)
    other_ng = np.zeros((n, n_t), bool)
    areas_inspected = np.zeros(n, np.int64)
    affected = [c for c in classes if rule.applies_to(c)]
    others = [r for r in base.rules if r.id != rule.id and r.id not in skip]
    rulesets = [base.with_threshold(t, class_name=rule.class_name) for t in thresholds]
    for i, image_id in enumerate(image_ids):
        progress(i / max(1, n), f"tuning {i + 1}/{n}")
        probs = probabilities[image_id]
        prep = probabilities_prepare(probs)
        inspected = regions_mask(base.regions, shape=probs.shape[1:])
        inspected_area = int(inspected.sum())
        areas_inspected[i] = inspected_area

        fixed = {
            name: class_areas(prep, k, name, base, inspected=inspected, px_per_mm=px_per_mm)
            for k, name in enumerate(classes)
            if name not in affected
        }
        # Masks are nested as the threshold rises: the same pixel count at two
        # thresholds means the same mask, hence the same row of results.
        candidates = np.isin(prep.winner, [classes.index(c) for c in affected]) & inspected
        counts = [int((candidates & (prep.winner_prob >= t)).sum()) for t in thresholds]
        for j, rs in enumerate(rulesets):
            if j and counts[j] == counts[j - 1] and _same_config(rs, rulesets[j - 1], affected):
                tuned_max[i, j], other_ng[i, j] = tuned_max[i, j - 1], other_ng[i, j - 1]
                continue
            areas = dict(fixed)
            for k, name in enumerate(classes):
                if name in affected:
                    areas[name] = class_areas(
                        prep, k, name, rs, inspected=inspected, px_per_mm=px_per_mm
                    )
            seen = [areas[c] for c in affected if areas[c].size]
            tuned_max[i, j] = max((int(a.max()) for a in seen), default=0)
            ctx = RuleContext(
                areas_by_class={c: areas[c] for c in classes},
                ids_by_class=None,
                inspected_area=inspected_area,
                px_per_mm=px_per_mm,
                probabilities=probs,
                inspected=inspected,
                inputs=inputs.get(image_id) or {},
            )
            other_ng[i, j] = any(r.evaluate(ctx)[0].triggered for r in others)
    return _Table(tuned_max=tuned_max, other_ng=other_ng, inspected_area=areas_inspected)


def _good_parts_proposal(
    base: RuleSet,
    inputs: Mapping[str, Mapping[str, Any]],
    image_ids: Sequence[str],
    trained_on: Collection[str],
    *,
    anomaly_held_out: bool,
    notes: list[str],
) -> RuleSet:
    """With only good parts labelled: ``base`` with its anomaly rule (added if it
    has none) just above their highest peak, where every one of them has an
    anomaly map scored as a new part's would be (held out of the memory bank, or
    not trained on); else ``base``. ``notes`` gets the why."""
    peaks = anomaly_peaks(inputs, image_ids, base)
    if peaks is None or (trained_among(image_ids, trained_on) and not anomaly_held_out):
        return base
    score = good_parts_score(peaks)
    proposal, _ = with_anomaly_score(base, anomaly_rule_of(base), score)
    n = len(image_ids)
    where = (
        "the good parts' own level (none of them reaches it scored as a new part)"
        if score == 1.0
        else "just above the highest any of them reaches scored as a new part"
    )
    notes.append(
        f"from the {n} good part(s) alone: proposed the anomaly score >= {score:g}, {where}; "
        f"at most about 1 in {n + 1} new good parts is that unusual (overkill near "
        f"{100.0 / (n + 1):.0f} %), and how many defects it catches is unknown until "
        "defective images are labelled"
    )
    return proposal


def rules_tune(
    probabilities: Mapping[str, np.ndarray],
    truths: Mapping[str, str],
    *,
    classes: Sequence[str],
    base: RuleSet,
    px_per_mm: float | None = None,
    rule_id: str | None = None,
    thresholds: Sequence[float] | None = None,
    trained_on: Collection[str] = (),
    progress: ProgressFn | None = None,
    inputs: Mapping[str, Mapping[str, Any]] | None = None,
    anomaly_held_out: bool = False,
) -> TuneResult:
    """Propose a threshold and minimum blob area from labelled images.

    Tunes one ``blob_area`` rule (``rule_id``, else the base's first; one is
    added for class "*" if the base has none) together with the threshold of
    the class(es) it covers. Minimises escapes first, then overkill; among
    equally good proposals prefers the widest range of optimal minimum areas
    (as a ratio), then the threshold in the middle of those with that range
    (the lower one on a tie), and the geometric middle of that area range. Every other rule and
    setting of ``base`` is kept and still counts in the verdicts.

    With no NG image escapes cannot be measured, so the base values are kept
    (optimising overkill alone would propose "never NG"), and ``warning`` says
    so; where those good parts have anomaly maps scored as a new part's would
    be, the anomaly rule is set just above their highest peak
    (:func:`_good_parts_proposal`); with no OK image overkill cannot be measured, so the base threshold is
    kept (minimising escapes alone would always pick the lowest threshold) and
    only the minimum area is tuned, and ``warning`` says that too. ``thresholds``: grid to search (default 0.05, 0.10, ... 0.95, plus the
    base threshold). ``trained_on``: ids of the images the model was trained on
    (see :func:`backtest_run`); when every labelled image is one of them,
    ``warning`` says the proposal was fitted to images the model has seen.
    ``progress(fraction, message)`` is called before each image of each pass
    (the search over the grid, then the proposal's backtest).

    ``inputs``: image id -> per-image data for rule types (see
    :func:`backtest_run`). When every labelled image has an anomaly map, the
    minimum score of the base's ``anomaly_score`` rule is tuned together with
    the threshold and area (one is proposed, for the anomaly score alone, when
    the base has none and it lowers escapes or overkill): candidates lie
    between the images' peak scores, and the middle of the optimal run is kept.
    A trained-on image's map is in-sample (its patches are in the memory bank,
    its score near 0), so the anomaly score is not tuned when a labelled image
    was trained on, unless ``anomaly_held_out``: the trained-on images' maps were
    scored against the bank without their own patches
    (:attr:`prompting.classifier.Learner.anomaly_held_out`), and ``warning`` says so.
    """
    inputs = inputs or {}
    t0 = time.perf_counter()
    report_progress = progress or progress_none
    truths_check(probabilities, truths)
    if not truths:
        raise ValueError("no labelled images: label some images OK or NG first")
    ruleset_check_context(base, classes=classes, px_per_mm=px_per_mm)
    notes: list[str] = []
    rule = _tuned_rule(base, rule_id, notes)
    if rule is None:
        # a new rule of the first type the tuner can set (blob_area)
        new_type = next(cls for cls in RULE_TYPES.values() if cls.tunable_area)
        rule = new_type(id=TUNED_RULE_ID, class_name=ANY_CLASS, severity="major")
        rule = rule.with_area_px(1, px_per_mm)
        while any(r.id == rule.id for r in base.rules):
            rule = replace(rule, id=rule.id + "-1")
        base_min_area = None
        notes.append(
            f"the base rule set has no {_tunable_names()} rule; proposed a new one, {rule.id!r}, for any class"
        )
    else:
        base_min_area = rule.area_px(px_per_mm)
    base_threshold = (
        base.default.threshold
        if rule.class_name == ANY_CLASS
        else base.config_for(rule.class_name).threshold
    )
    image_ids = list(truths)
    is_ng = np.array([truths[i] == "NG" for i in image_ids], bool)
    n_ng, n_ok = int(is_ng.sum()), int((~is_ng).sum())

    if n_ng == 0:
        notes.insert(
            0,
            f"no NG (defective) images are labelled, so escapes cannot be measured; "
            f"kept the base threshold {base_threshold:g} and minimum area "
            f"{base_min_area if base_min_area is not None else 'unset'} instead of tuning on OK images alone. "
            f"Label some defective images to tune",
        )
        proposal = _good_parts_proposal(
            base, inputs, image_ids, trained_on, anomaly_held_out=anomaly_held_out, notes=notes
        )
        report = backtest_run(
            probabilities,
            truths,
            classes=classes,
            ruleset=proposal,
            px_per_mm=px_per_mm,
            baseline=base,
            trained_on=trained_on,
            progress=report_progress,
            inputs=inputs,
        )
        if report.warning:
            notes.append(report.warning)
        return TuneResult(
            ruleset=proposal,
            threshold=float(base_threshold),
            min_area_px=base_min_area,
            report=report,
            warning="; ".join(notes),
            rule_id=rule.id,
            escapes=report.confusion["fn"],
            overkills=report.confusion["fp"],
            timings={"total_ms": (time.perf_counter() - t0) * 1000},
        )
    if n_ok == 0:
        notes.insert(
            0,
            "no OK (good) images are labelled, so overkill (good parts judged NG) cannot be measured; "
            f"kept the base threshold {base_threshold:g} (lowering it would always look safer) and "
            "tuned the minimum area for escapes only. Label some good images to tune the threshold",
        )
        if thresholds is None:
            # escapes alone always favour the lowest threshold, which floods
            # every image with false blobs: the threshold is not tunable here
            thresholds = [base_threshold]

    grid = sorted(
        {float(t) for t in (thresholds if thresholds is not None else DEFAULT_THRESHOLDS)}
        | {float(base_threshold)}
    )
    if any(not 0.0 <= t <= 1.0 for t in grid):
        raise ValueError("thresholds must lie in [0, 1]")
    t1 = time.perf_counter()
    anomaly_rule = anomaly_rule_of(base)
    peaks = anomaly_peaks(inputs, image_ids, base)
    in_bank = trained_among(image_ids, trained_on)
    if peaks is not None and in_bank and not anomaly_held_out:
        # a trained-on image's patches are in the memory bank: its score is in-sample
        # (near 0), so a threshold fitted on it would flag every new part
        peaks = None
        notes.append(
            f"the anomaly score was not tuned: {len(in_bank)} labelled image(s) were trained on, "
            "so their anomaly scores are in-sample; label parts the model was not trained on"
        )
    elif peaks is not None and in_bank:
        notes.append(
            f"the anomaly scores of the {len(in_bank)} trained-on labelled image(s) are held-out "
            "(each scored against the memory bank without its own patches)"
        )
    skip = {anomaly_rule.id} if anomaly_rule is not None and peaks is not None else set()
    table = _table(
        probabilities,
        image_ids,
        classes=classes,
        base=base,
        rule=rule,
        thresholds=grid,
        px_per_mm=px_per_mm,
        progress=lambda f, m: report_progress(0.8 * f, m),
        inputs=inputs,
        skip=skip,
    )
    t2 = time.perf_counter()
    # anomaly scores to try: None keeps the base as it is (its rule, if any, inside
    # the table); otherwise midpoints between the images' peak scores (inf: no rule)
    scores: list[float | None] = [None]
    if peaks is not None:
        ordered = np.unique(peaks)
        mids = (ordered[:-1] + ordered[1:]) / 2 if len(ordered) > 1 else ordered
        scores = [
            float(v) for v in mids[np.linspace(0, len(mids) - 1, min(len(mids), 40)).astype(int)]
        ]
        scores = sorted(set(scores)) + [math.inf]
    outcomes = []
    # every (escapes, overkills) an anomaly score, threshold and area can give
    points: dict[tuple[int, int], list[tuple[float | None, float, AreaBest]]] = {}
    for score in scores:
        extra = (
            np.zeros(len(image_ids), bool) if score is None or math.isinf(score) else peaks >= score
        )
        bests = [
            best_min_area(table.tuned_max[:, j], table.other_ng[:, j] | extra, is_ng, base_min_area)
            for j in range(len(grid))
        ]
        top = min((b.escapes, b.overkills) for b in bests)
        outcomes.append((top, score, bests))
        for j in range(len(grid)):
            other = table.other_ng[:, j] | extra
            for b in tradeoffs(table.tuned_max[:, j], other, is_ng, base_min_area):
                points.setdefault((b.escapes, b.overkills), []).append((score, grid[j], b))
    best_top = min(o[0] for o in outcomes)
    image_area = float(np.median(table.inspected_area))

    def floods(min_area: int) -> bool:
        """Whether a minimum blob area judges by how far the masks flood (FLOOD_SHARE)."""
        return min_area >= FLOOD_SHARE * image_area

    def dry_tied(bests: list[AreaBest]) -> list[int]:
        """The grid thresholds reaching the best outcome with a minimum area that
        judges defects, not how far the masks flood."""
        return [
            j
            for j, b in enumerate(bests)
            if (b.escapes, b.overkills) == best_top and not floods(b.min_area)
        ]

    # a flooding rule only where the labelled images allow no other at the best outcome
    reaching = [o for o in outcomes if o[0] == best_top]
    dry = [o for o in reaching if dry_tied(o[2])] or reaching
    score = score_pick([o[1] for o in dry], anomaly_rule)
    top, score, bests = next(o for o in dry if o[1] == score)
    tied = dry_tied(bests) or [j for j, b in enumerate(bests) if (b.escapes, b.overkills) == top]
    threshold, best = threshold_pick([(grid[j], bests[j]) for j in tied])

    proposal = _with_rule(
        base.with_threshold(threshold, class_name=rule.class_name), rule, best.min_area, px_per_mm
    )
    if score is not None:
        proposal, note = with_anomaly_score(proposal, anomaly_rule, score)
        if note:
            notes.append(note)
    report = backtest_run(
        probabilities,
        truths,
        classes=classes,
        ruleset=proposal,
        px_per_mm=px_per_mm,
        baseline=base,
        trained_on=trained_on,
        progress=lambda f, m: report_progress(0.8 + 0.2 * f, m),
        inputs=inputs,
    )
    alternatives = _alternatives(
        points,
        (best.escapes, best.overkills),
        near=threshold,
        scores=scores,
        counts=(n_ng, n_ok),
        image_area=image_area,
        base=base,
        rule=rule,
        anomaly_rule=anomaly_rule,
        px_per_mm=px_per_mm,
    )
    if floods(best.min_area):
        notes.append(
            f"the proposed minimum blob area ({best.min_area} px) is {best.min_area / image_area:.0%} "
            f"of an image: at threshold {threshold:g} the masks grow into image-sized blobs, and the "
            "rule tells the labelled parts apart by how far they flood rather than by their defects; "
            "check the masks, or choose another balance"
        )
    if best.escapes:
        notes.append(
            f"{best.escapes} NG image(s) escape with every threshold and minimum area tried "
            f"(their defects are not detected); retrain or relabel them"
        )
    if report.warning:
        notes.append(report.warning)
    return TuneResult(
        ruleset=proposal,
        threshold=threshold,
        min_area_px=best.min_area,
        report=report,
        warning="; ".join(notes) if notes else None,
        rule_id=rule.id,
        escapes=best.escapes,
        overkills=best.overkills,
        alternatives=alternatives,
        timings={
            "table_ms": (t2 - t1) * 1000,
            "search_ms": (time.perf_counter() - t2) * 1000,
            "total_ms": (time.perf_counter() - t0) * 1000,
        },
    )


def _alternatives(
    points: Mapping[tuple[int, int], list[tuple[float | None, float, AreaBest]]],
    proposed: tuple[int, int],
    *,
    near: float,
    scores: Sequence[float | None],
    counts: tuple[int, int],
    image_area: float,
    base: RuleSet,
    rule: Rule,
    anomaly_rule: Rule | None,
    px_per_mm: float | None,
) -> list[Alternative]:
    """The Pareto front beyond the proposal: each point more escapes and fewer
    overkills than the one before, its rules chosen as the proposal's are (a new
    anomaly rule only where it is needed, the middle score, the widest range of
    areas), but of equally good thresholds the one nearest the proposal's,
    ``near``: an alternative the blob rule plays no part in keeps the masks.
    ``counts``: the labelled (NG, OK) images; ``image_area``: their median
    inspected area."""
    out: list[Alternative] = []
    floor = proposed[1]
    for escapes, overkills in sorted(points):
        if escapes <= proposed[0] or overkills >= floor:
            continue
        floor = overkills
        candidates = points[(escapes, overkills)]
        score = score_pick(
            [sc for sc in scores if any(c[0] == sc for c in candidates)], anomaly_rule
        )
        group = sorted(((t, b) for sc, t, b in candidates if sc == score), key=lambda tb: tb[0])
        # of equally good thresholds, the proposal's: the masks change no more than needed
        threshold, b = threshold_pick(group, near=near)
        ruleset = _with_rule(
            base.with_threshold(threshold, class_name=rule.class_name), rule, b.min_area, px_per_mm
        )
        if score is not None:
            ruleset, _ = with_anomaly_score(ruleset, anomaly_rule, score)
        out.append(
            Alternative(
                escapes=escapes,
                overkills=overkills,
                n_ng=counts[0],
                n_ok=counts[1],
                threshold=threshold,
                min_area_px=b.min_area,
                anomaly_min_score=None if score is None or math.isinf(score) else round(score, 3),
                area_share=round(b.min_area / max(image_area, 1.0), 3),
                ruleset=ruleset,
            )
        )
    return out
