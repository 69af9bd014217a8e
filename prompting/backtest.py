"""Backtest a rule set on labelled images, and tune it.

NG (defective) is the positive class of the confusion matrix:

- ``tp``: NG judged NG; ``fn``: NG judged OK (an *escape*);
- ``tn``: OK judged OK; ``fp``: OK judged NG (an *overkill*);
- escape rate = fn / (tp + fn), overkill rate = fp / (fp + tn); None when
  there is no image of the kind to measure it on. Each comes with its 95 %
  interval (:mod:`prompting.rates`): ten labelled images pin a rate down only
  loosely, and the report says how loosely.

Images the model was trained on (painted) score better than unseen parts do:
given ``trained_on``, reports carry the held-out images' figures separately
and say when every judged image was trained on.

The tuner, which proposes a rule set from the same evidence, is
:mod:`prompting.tuner`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from prompting.rates import error_rates
from prompting.rules.decision import rules_verdict
from prompting.rules.schema import RuleSet

VERDICTS = ("OK", "NG")

#: ``progress(fraction 0..1, message)``: called once per judged image, so a job
#: can record a heartbeat (and stop, by raising, when it was cancelled)
ProgressFn = Callable[[float, str], None]


def progress_none(_fraction: float, _message: str) -> None:
    """A ``ProgressFn`` that records nothing."""
    return None


def verdict_from_mask(mask: np.ndarray) -> str:
    """Ground-truth verdict of a defect mask (H, W) bool/int: NG if any pixel is set."""
    return "NG" if np.any(mask) else "OK"


@dataclass
class BacktestReport:
    """Outcome of a rule set on labelled images (NG = positive).

    ``verdicts``: image id -> predicted verdict. ``changes``: images whose
    verdict differs from the baseline rule set's, as
    ``{"image_id", "before", "after", "truth"}``. ``baseline``: the baseline's
    own confusion and rates, when one was given. ``held_out``: confusion and
    rates of the judged images the model was not trained on (``n_images`` 0
    when there is none); ``n_trained_on``: how many judged images it was
    trained on; ``warning``: set when every judged image was trained on.
    """

    confusion: dict[str, int]
    escape_rate: float | None
    overkill_rate: float | None
    n_images: int
    verdicts: dict[str, str]
    changes: list[dict[str, str]] = field(default_factory=list)
    baseline: dict[str, Any] | None = None
    timings: dict[str, float] = field(default_factory=dict)
    held_out: dict[str, Any] | None = None
    n_trained_on: int = 0
    warning: str | None = None
    escape_interval: list[float] | None = None
    overkill_interval: list[float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "confusion": dict(self.confusion),
            "escape_rate": self.escape_rate,
            "overkill_rate": self.overkill_rate,
            "escape_interval": self.escape_interval,
            "overkill_interval": self.overkill_interval,
            "n_images": self.n_images,
            "verdicts": dict(self.verdicts),
            "changes": [dict(c) for c in self.changes],
            "baseline": dict(self.baseline) if self.baseline is not None else None,
            "timings": dict(self.timings),
            "held_out": dict(self.held_out) if self.held_out is not None else None,
            "n_trained_on": self.n_trained_on,
            "warning": self.warning,
        }


def _confusion(predicted: Mapping[str, str], truths: Mapping[str, str]) -> dict[str, int]:
    out = {"tp": 0, "fp": 0, "tn": 0, "fn": 0}
    for image_id, truth in truths.items():
        ng = predicted[image_id] == "NG"
        if truth == "NG":
            out["tp" if ng else "fn"] += 1
        else:
            out["fp" if ng else "tn"] += 1
    return out


def _rates(confusion: Mapping[str, int]) -> dict[str, Any]:
    """Escape and overkill rates of ``confusion`` with their 95 % intervals."""
    return error_rates(
        escapes=confusion["fn"],
        n_ng=confusion["tp"] + confusion["fn"],
        overkills=confusion["fp"],
        n_ok=confusion["fp"] + confusion["tn"],
    )


def truths_check(probabilities: Mapping[str, np.ndarray], truths: Mapping[str, str]) -> None:
    """ValueError unless every truth is OK or NG and has probabilities."""
    bad = [k for k, v in truths.items() if v not in VERDICTS]
    if bad:
        raise ValueError(
            f"truths must be 'OK' or 'NG'; bad value for {', '.join(map(str, bad[:5]))}"
        )
    missing = [k for k in truths if k not in probabilities]
    if missing:
        raise ValueError(
            f"no probabilities for labelled image(s) {', '.join(map(str, missing[:5]))}"
        )


def backtest_run(
    probabilities: Mapping[str, np.ndarray],
    truths: Mapping[str, str],
    *,
    classes: Sequence[str],
    ruleset: RuleSet,
    px_per_mm: float | None = None,
    baseline: RuleSet | None = None,
    trained_on: Collection[str] = (),
    progress: ProgressFn | None = None,
    inputs: Mapping[str, Mapping[str, Any]] | None = None,
) -> BacktestReport:
    """Apply ``ruleset`` (and ``baseline``, if given) to every labelled image.

    ``probabilities``: image id -> (K+1, H, W) float32; ``truths``: image id ->
    "OK" | "NG". Only images in ``truths`` are judged, each read once (both rule
    sets are applied to it in turn). ``trained_on``: ids of the images the model
    was trained on; the others' figures are reported apart as ``held_out``.
    ``progress(fraction, message)`` is called before each image. ``inputs``:
    image id -> further per-image data for rule types that read it (the
    anomaly map, ``{"anomaly": (H, W) float32}``).
    """
    t0 = time.perf_counter()
    truths_check(probabilities, truths)
    inputs = inputs or {}
    report = progress or progress_none
    verdicts: dict[str, str] = {}
    before: dict[str, str] = {}
    for n, image_id in enumerate(truths):
        report(n / max(1, len(truths)), f"backtest {n + 1}/{len(truths)}")
        probs = probabilities[image_id]
        extra = inputs.get(image_id)
        verdicts[image_id] = rules_verdict(
            probs, classes=classes, ruleset=ruleset, px_per_mm=px_per_mm, inputs=extra
        )
        if baseline is not None:
            before[image_id] = rules_verdict(
                probs, classes=classes, ruleset=baseline, px_per_mm=px_per_mm, inputs=extra
            )
    confusion = _confusion(verdicts, truths)
    rates = _rates(confusion)
    changes: list[dict[str, str]] = []
    baseline_summary = None
    if baseline is not None:
        changes = [
            {"image_id": i, "before": before[i], "after": verdicts[i], "truth": truths[i]}
            for i in truths
            if before[i] != verdicts[i]
        ]
        base_confusion = _confusion(before, truths)
        baseline_summary = {"confusion": base_confusion, **_rates(base_confusion)}
    seen = {str(i) for i in trained_on}
    unseen = {i: t for i, t in truths.items() if str(i) not in seen}
    held_confusion = _confusion(verdicts, unseen)
    n_trained_on = len(truths) - len(unseen)
    warning = None
    if truths and not unseen and seen:
        warning = (
            f"all {len(truths)} judged image(s) were trained on (painted, or good parts its "
            "memory bank learned), so these rates are optimistic (the model has seen them); "
            "label OK/NG images it was not trained on to measure it on unseen parts"
        )
    return BacktestReport(
        confusion=confusion,
        escape_rate=rates["escape_rate"],
        overkill_rate=rates["overkill_rate"],
        escape_interval=rates["escape_interval"],
        overkill_interval=rates["overkill_interval"],
        n_images=len(truths),
        verdicts=verdicts,
        changes=changes,
        baseline=baseline_summary,
        timings={"total_ms": (time.perf_counter() - t0) * 1000},
        held_out={"n_images": len(unseen), "confusion": held_confusion, **_rates(held_confusion)},
        n_trained_on=n_trained_on,
        warning=warning,
    )
