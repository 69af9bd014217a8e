"""Post-processing rules: schema and validation, morphology, blobs, decision.

A rule set is data (:data:`DEFAULT_RULESET` shows its shape), validated by
:func:`ruleset_validate` into a :class:`RuleSet`, and applied to per-pixel
probabilities by :func:`rules_apply`, which returns an explained
:class:`Decision`. Rule types (``blob_area``...) are classes registered in
:data:`RULE_TYPES` (:mod:`prompting.rules.types`); :func:`ruleset_vocabulary`
describes everything a rule set may say, for editors.
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
    BlobFilter,
    ClassConfig,
    MorphologyStep,
    Regions,
    RuleSet,
    ruleset_check_context,
    ruleset_validate,
    ruleset_vocabulary,
)
from prompting.rules.types import (
    RULE_TYPES,
    SEVERITIES,
    Rule,
    RuleContext,
    RuleField,
    rule_type_register,
)

__all__ = [
    "DEFAULT_RULESET",
    "MEASURES",
    "RULE_TYPES",
    "SEVERITIES",
    "Blob",
    "BlobFilter",
    "ClassConfig",
    "Decision",
    "MorphologyStep",
    "Reason",
    "Regions",
    "Rule",
    "RuleContext",
    "RuleEvaluation",
    "RuleField",
    "RuleSet",
    "polygon_mask",
    "regions_mask",
    "render_overlay",
    "rule_type_register",
    "rules_apply",
    "rules_verdict",
    "ruleset_check_context",
    "ruleset_validate",
    "ruleset_vocabulary",
    "severity_max",
]
