"""Database models: what the product stores. Only services write them.

Primary keys are UUIDs so ids can't be enumerated across projects. Files live
under ``projects/<project id>/`` in the default storage (see ``storage.py``),
which makes deleting a project and finding orphans a matter of one folder.

One module per aggregate; every model is imported from here
(``from inspection.models import Project``), which is also where Django finds
them.
"""

from inspection.models.choices import DeployedHow, InputCheckMode, KeepImages, Role, Verdict
from inspection.models.images import Image, Prompt
from inspection.models.inspections import (
    ImmutableError,
    Inspection,
    InspectionReview,
    ShadowDecision,
)
from inspection.models.jobs import Job, JobChunk
from inspection.models.messages import MqttMessage, Webhook, WebhookDelivery
from inspection.models.projects import Membership, Project
from inspection.models.versions import ModelVersion, Prediction, RuleSet

__all__ = [
    "Role",
    "Verdict",
    "KeepImages",
    "InputCheckMode",
    "DeployedHow",
    "Project",
    "Membership",
    "Image",
    "Prompt",
    "Job",
    "JobChunk",
    "ModelVersion",
    "RuleSet",
    "Prediction",
    "ImmutableError",
    "Inspection",
    "ShadowDecision",
    "InspectionReview",
    "Webhook",
    "WebhookDelivery",
    "MqttMessage",
]
