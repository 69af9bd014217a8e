"""Typed errors raised by the engine. Every message says what is wrong."""

from __future__ import annotations


class PromptingError(Exception):
    """Base class of every error the engine raises on purpose."""


class ImageError(PromptingError):
    """An image could not be decoded, or breaks a limit (format, size, pixels)."""


class PromptError(PromptingError):
    """A prompt is malformed: outside the image, unknown class, too many points.

    ``field`` names the offending field (``"points[3]"``, ``"label"``) when known.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class RuleSetError(PromptingError):
    """A rule set is invalid. ``errors`` maps a field path to its messages.

    Every invalid field is reported at once, e.g.
    ``{"rules[0].min_area_px": ["must be >= 0"], "connectivity": ["must be 4 or 8"]}``.
    """

    def __init__(self, errors: dict[str, list[str]]) -> None:
        self.errors = errors
        summary = "; ".join(f"{k}: {', '.join(v)}" for k, v in sorted(errors.items()))
        super().__init__(f"invalid rule set: {summary}")


class ArtifactError(PromptingError):
    """A model artifact is corrupt, foreign or incompatible with this engine."""


class BundleError(PromptingError):
    """An inspection bundle is corrupt, foreign, tampered with or inconsistent."""


class BackendError(PromptingError):
    """A feature backend cannot be built (unknown name, missing checkpoint...)."""


class TrainingError(PromptingError):
    """Training cannot start or finish (no strokes for a class, no background...)."""
