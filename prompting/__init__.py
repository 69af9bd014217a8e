"""The inspection engine: visual prompts -> SAM and few-shot segmentation -> rules -> OK/NG.

Plain Python over numpy, torch, segment-anything and scikit-image. It never
imports Django, so it runs the same from the service, the tests and the command
line (``python -m prompting``). Importing this package is cheap: torch and the
SAM model load only when a SAM backend is first used.
"""

from prompting.errors import (
    ArtifactError,
    BackendError,
    ImageError,
    PromptError,
    PromptingError,
    RuleSetError,
    TrainingError,
)

__all__ = [
    "ArtifactError",
    "BackendError",
    "ImageError",
    "PromptError",
    "PromptingError",
    "RuleSetError",
    "TrainingError",
]
