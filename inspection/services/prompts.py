"""Prompts (strokes, points, boxes) painted on images. Deletion is soft."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.utils import timezone

from inspection.errors import InvalidInput
from inspection.models import Image, Prompt
from inspection.types import Actor
from prompting.errors import PromptError

MAX_PROMPTS_PER_IMAGE = 2000


def prompt_parse(*, image: Image, data: Mapping, field_prefix: str = "") -> Any:
    """Engine prompt from its dict form; PromptError → 400 naming the field."""
    # deferred: scikit-image and scipy load on first use
    from prompting.prompts import prompt_from_dict

    if not isinstance(data, Mapping):
        raise InvalidInput(
            "a prompt must be an object",
            field_errors={field_prefix or "prompt": ["must be an object"]},
        )
    try:
        return prompt_from_dict(
            data, classes=image.project.class_names, width=image.width, height=image.height
        )
    except PromptError as exc:
        field = f"{field_prefix}{exc.field or 'non_field_errors'}"
        raise InvalidInput(str(exc), field_errors={field: [str(exc)]}) from None


def prompt_create(*, image: Image, data: Mapping, user: Actor = None) -> Prompt:
    # deferred: scikit-image and scipy load on first use
    from prompting.prompts import prompt_to_dict

    prompt = prompt_parse(image=image, data=data)
    if image.prompts.filter(deleted_at__isnull=True).count() >= MAX_PROMPTS_PER_IMAGE:
        raise InvalidInput(f"an image holds at most {MAX_PROMPTS_PER_IMAGE} prompts")
    as_dict = prompt_to_dict(prompt)
    return Prompt.objects.create(
        image=image,
        kind=as_dict["kind"],
        label=as_dict["label"],
        data=as_dict,
        author=user if user and user.is_authenticated else None,
    )


def prompt_delete(*, prompt: Prompt) -> None:
    """Soft delete: the row stays so model versions can still name what they used."""
    if prompt.deleted_at is None:
        prompt.deleted_at = timezone.now()
        prompt.save(update_fields=["deleted_at"])
