"""The choices several rows share: roles, verdicts, image keeping, the input
check's mode, how a model was deployed."""

from __future__ import annotations

from django.db import models


class Role(models.TextChoices):
    OWNER = "owner"
    ENGINEER = "engineer"
    OPERATOR = "operator"
    VIEWER = "viewer"


class Verdict(models.TextChoices):
    OK = "OK"
    NG = "NG"


class KeepImages(models.TextChoices):
    """Which production images an inspection keeps (for review and retraining)."""

    NONE = "none"  # only the decision and the image's sha256
    NG = "ng"  # images judged NG
    UNSURE = "unsure"  # NG, and OK images with uncertainty >= INSPECTION_KEEP_UNSURE_MIN
    ALL = "all"


class InputCheckMode(models.TextChoices):
    """What the input check (is the image taken like the training images?) does."""

    OFF = "off", "Off"
    FLAG = "flag", "Flag (the verdict stands)"  # recorded on the inspection
    NG = "ng", "Judge NG"  # an image unlike the training images is NG (fail-safe)


class DeployedHow(models.TextChoices):
    """How the deployed model came to be deployed."""

    FIRST = "first"  # the project's first model (nothing was deployed)
    AUTO = "auto"  # a Run under auto_deploy, before the first line inspection
    MANUAL = "manual"  # a person pressed Deploy (or kept a previous version)
