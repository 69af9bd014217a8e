"""Post-processing rules: schema and validation, morphology, blobs, decision.

A rule set is data (:data:`DEFAULT_RULESET` shows its shape), validated by
:func:`ruleset_validate` into a :class:`RuleSet`, and applied to per-pixel
probabilities by :func:`rules_apply`, which returns an explained
:class:`Decision`.
"""

from prompting.overlay import render_overlay
from prompting.rules.blobs import Blob
from prompting.rules.decision import (
    Decision,
    Reason,
    RuleEvaluation,
    rules_apply,
    rules_verdict,
    severity_max,
)
from prompting.rules.regions import polygon_mask, regions_mask
from prompting.rules.schema import (
    DEFAULT_RULESET,
    MEASURES,
    SEVERITIES,
    BlobFilter,
    ClassConfig,
    MorphologyStep,
    Regions,
    Rule,
    RuleSet,
    ruleset_check_context,
    ruleset_validate,
)

__all__ = [
    "DEFAULT_RULESET",
    "MEASURES",
    "SEVERITIES",
    "Blob",
    "BlobFilter",
    "ClassConfig",
    "Decision",
    "MorphologyStep",
    "Reason",
    "Regions",
    "Rule",
    "RuleEvaluation",
    "RuleSet",
    "polygon_mask",
    "regions_mask",
    "render_overlay",
    "rules_apply",
    "rules_verdict",
    "ruleset_check_context",
    "ruleset_validate",
    "severity_max",
]
