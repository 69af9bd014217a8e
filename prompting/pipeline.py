"""One image in, one decision out: features -> probabilities -> rules -> verdict.

Example::

    result = inspect_image(rgb8, learner=learner, backend=backend, ruleset=ruleset)
    result.decision.verdict          # "OK" | "NG"
    result.probabilities.shape       # (K+1, H, W) float32
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from prompting.features.base import FeatureBackend
from prompting.inputcheck import DEFAULT_MARGIN, InputCheck, image_profile, input_check
from prompting.learner import Learner
from prompting.probmaps import anomaly_as_stored, probabilities_as_stored

#: what the input check does: nothing, report (the decision stands), or judge NG
INPUT_CHECK_MODES = ("off", "flag", "ng")
INPUT_CHECK_RULE_ID = "input-check"


@dataclass
class InspectionResult:
    """Decision of one image, its probabilities (K+1,H,W) float32, timings in ms,
    the input check (None when off) and the anomaly map (H,W) float32 (None
    when the model has no memory bank of good parts)."""

    decision: Any  # prompting.rules.Decision
    probabilities: np.ndarray
    timings: dict[str, float] = field(default_factory=dict)
    input_check: InputCheck | None = None
    anomaly: np.ndarray | None = None


def decision_input_apply(decision: Any, check: InputCheck, *, mode: str) -> Any:
    """Attach ``check`` to ``decision``; in mode ``"ng"`` every issue becomes a
    reason (rule ``input-check``, severity major) and the verdict NG: an image
    unlike the training images is not passed on the model's word."""
    if mode not in INPUT_CHECK_MODES:
        raise ValueError(f"input check mode must be one of {INPUT_CHECK_MODES}, got {mode!r}")
    # deferred: scikit-image loads on first use
    from prompting.rules.decision import Reason, severity_max

    reasons = list(decision.reasons)
    verdict, severity = decision.verdict, decision.severity
    if mode == "ng" and check.issues:
        reasons += [
            Reason(
                rule_id=INPUT_CHECK_RULE_ID,
                rule_type="input_check",
                class_name="",
                blob_id=None,
                measure=issue.measure,
                value=issue.value,
                threshold=issue.bound,
                severity="major",
                message=issue.message,
            )
            for issue in check.issues
        ]
        verdict = "NG"
        severity = severity_max([r.severity for r in reasons])
    return replace(
        decision, verdict=verdict, severity=severity, reasons=reasons, input_check=check.to_dict()
    )


def inspect_image(
    rgb8: np.ndarray,
    *,
    learner: Learner,
    backend: FeatureBackend,
    ruleset: Any,
    px_per_mm: float | None = None,
    cache: Any = None,
    image_hash: str | None = None,
    sam_model: Any = None,
    input_mode: str = "flag",
    input_margin: float = DEFAULT_MARGIN,
) -> InspectionResult:
    """Inspect ``rgb8`` (H,W,3) uint8 RGB with a trained learner and a rule set.

    ``ruleset``: a ``prompting.rules.RuleSet`` (from ``ruleset_validate``).
    ``input_mode``: the input check against the learner's training images
    (``prompting.inputcheck``): ``"off"``, ``"flag"`` (reported in
    ``decision.input_check``, the verdict stands) or ``"ng"`` (an image outside
    the training conditions is NG, one reason per measure); ``input_margin``
    its tolerance. Models without ranges are reported as not checked.
    ``timings``: ``predict_ms``, ``rules_ms``, ``input_ms``, ``total_ms``.
    """
    # deferred: scikit-image loads on first use
    from prompting.rules import rules_apply

    if input_mode not in INPUT_CHECK_MODES:
        raise ValueError(f"input_mode must be one of {INPUT_CHECK_MODES}, got {input_mode!r}")
    t0 = time.perf_counter()
    probs, anomaly = learner.predict(
        rgb8, backend=backend, cache=cache, image_hash=image_hash, sam_model=sam_model
    )
    t1 = time.perf_counter()
    # judged as stored (probabilities on the 1/255 grid, the anomaly map in float16), so
    # the line, a stored prediction re-judged under new rules, the backtest and the
    # tuner see the same numbers and agree to the pixel at any threshold
    probs, anomaly = probabilities_as_stored(probs), anomaly_as_stored(anomaly)
    decision = rules_apply(
        probs,
        classes=learner.classes,
        ruleset=ruleset,
        px_per_mm=px_per_mm,
        inputs=None if anomaly is None else {"anomaly": anomaly},
    )
    t2 = time.perf_counter()
    check = None
    if input_mode != "off":
        ranges = learner.info.get("input_ranges")
        check = input_check(image_profile(rgb8), ranges, margin=input_margin)
        decision = decision_input_apply(decision, check, mode=input_mode)
    t3 = time.perf_counter()
    timings = {
        "predict_ms": (t1 - t0) * 1000.0,
        "rules_ms": (t2 - t1) * 1000.0,
        "input_ms": (t3 - t2) * 1000.0,
        "total_ms": (t3 - t0) * 1000.0,
    }
    return InspectionResult(
        decision=decision,
        probabilities=probs,
        timings=timings,
        input_check=check,
        anomaly=anomaly,
    )
