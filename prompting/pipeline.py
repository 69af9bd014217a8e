"""One image in, one decision out: features -> probabilities -> rules -> verdict.

Example::

    result = inspect_image(rgb8, learner=learner, backend=backend, ruleset=ruleset)
    result.decision.verdict          # "OK" | "NG"
    result.probabilities.shape       # (K+1, H, W) float32
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from prompting.features.base import FeatureBackend
from prompting.learner import Learner


@dataclass
class InspectionResult:
    """Decision of one image, its probabilities (K+1,H,W) float32, timings in ms."""

    decision: Any  # prompting.rules.Decision
    probabilities: np.ndarray
    timings: dict[str, float] = field(default_factory=dict)


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
) -> InspectionResult:
    """Inspect ``rgb8`` (H,W,3) uint8 RGB with a trained learner and a rule set.

    ``ruleset``: a ``prompting.rules.RuleSet`` (from ``ruleset_validate``).
    ``timings``: ``predict_ms``, ``rules_ms``, ``total_ms``.
    """
    from prompting.rules import rules_apply

    t0 = time.perf_counter()
    probs = learner.predict_proba(
        rgb8, backend=backend, cache=cache, image_hash=image_hash, sam_model=sam_model
    )
    t1 = time.perf_counter()
    decision = rules_apply(probs, classes=learner.classes, ruleset=ruleset, px_per_mm=px_per_mm)
    t2 = time.perf_counter()
    timings = {
        "predict_ms": (t1 - t0) * 1000.0,
        "rules_ms": (t2 - t1) * 1000.0,
        "total_ms": (t2 - t0) * 1000.0,
    }
    return InspectionResult(decision=decision, probabilities=probs, timings=timings)
