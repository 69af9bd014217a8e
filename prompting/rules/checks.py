"""Checked values for rule-set validation: each check records every problem by path.

A check returns the value (converted where needed) or None after recording an
error in a :class:`FieldErrors`, so one pass over a rule set reports every
invalid field at once, as :class:`~prompting.errors.RuleSetError` wants.

>>> errs = FieldErrors()
>>> check_number("x", "rules[0].min_count", errs, lo=1, hi=10, integer=True) is None
True
>>> errs.errors
{'rules[0].min_count': ["must be an integer, got 'x'"]}
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

MAX_NAME_LENGTH = 64


class FieldErrors:
    """Messages by field path (``"(root)"`` for the document itself)."""

    def __init__(self) -> None:
        self.errors: dict[str, list[str]] = {}

    def add(self, path: str, message: str) -> None:
        self.errors.setdefault(path or "(root)", []).append(message)


def is_number(value: Any) -> bool:
    """An int or float, not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def show(value: Any) -> str:
    """``repr(value)`` cut to 40 characters, for messages."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def check_number(
    value: Any,
    path: str,
    errs: FieldErrors,
    *,
    lo: float,
    hi: float,
    integer: bool = False,
    lo_open: bool = False,
) -> Any:
    """Checked number in [lo, hi] (or (lo, hi] with ``lo_open``), or None after recording an error."""
    if integer:
        if not isinstance(value, int) or isinstance(value, bool):
            if is_number(value) and float(value).is_integer():
                value = int(value)
            else:
                errs.add(path, f"must be an integer, got {show(value)}")
                return None
    elif not is_number(value):
        errs.add(path, f"must be a number, got {show(value)}")
        return None
    if not math.isfinite(value):
        errs.add(path, f"must be finite, got {value}")
        return None
    if (value <= lo) if lo_open else (value < lo):
        errs.add(path, f"must be {'>' if lo_open else '>='} {lo:g}, got {value:g}")
        return None
    if value > hi:
        errs.add(path, f"must be <= {hi:g}, got {value:g}")
        return None
    return value if integer else float(value)


def check_mapping(
    value: Any, path: str, errs: FieldErrors, allowed: Sequence[str]
) -> Mapping | None:
    """``value`` if it is an object (each key outside ``allowed`` is an error), else None."""
    if not isinstance(value, Mapping):
        errs.add(path, f"must be an object, got {type(value).__name__}")
        return None
    for key in value:
        if key not in allowed:
            sub = f"{path}.{key}" if path else str(key)
            errs.add(sub, f"unknown field; allowed: {', '.join(allowed)}")
    return value


def check_list(value: Any, path: str, errs: FieldErrors, *, max_len: int) -> list | None:
    """``value`` as a list of at most ``max_len`` items, else None."""
    if not isinstance(value, (list, tuple)):
        errs.add(path, f"must be a list, got {type(value).__name__}")
        return None
    if len(value) > max_len:
        errs.add(path, f"too many items: {len(value)} > {max_len}")
        return None
    return list(value)


def check_name(value: Any, path: str, errs: FieldErrors, what: str) -> str | None:
    """A non-empty string of at most ``MAX_NAME_LENGTH`` characters, else None."""
    if not isinstance(value, str) or not value.strip():
        errs.add(path, f"{what} must be a non-empty string")
        return None
    if len(value) > MAX_NAME_LENGTH:
        errs.add(path, f"{what} is longer than {MAX_NAME_LENGTH} characters")
        return None
    return value
