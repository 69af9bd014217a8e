"""Escape and overkill rates with how far they can be trusted.

A rate measured on a handful of parts says little: no overkill on three OK
images is as consistent with a line that rejects half its good parts as with
one that rejects none. Every escape and overkill rate the product reports
comes with its 95 % Wilson score interval (Wilson 1927; the interval that
stays inside [0, 1] and keeps its coverage for small counts and for rates
near 0 or 1, where the normal approximation gives [0, 0] for 0 of 3).

Plain Python: the web process and the engine both use it.
"""

from __future__ import annotations

import math
from typing import Any

#: two-sided 95 %: the standard normal's 97.5th percentile
Z_95 = 1.959963984540054


def rate_interval(errors: int, n: int, *, z: float = Z_95) -> list[float] | None:
    """The Wilson score interval ``[low, high]`` of the rate ``errors / n``.

    None when ``n`` is 0 (nothing measured). Bounds are rounded to four places.

    >>> rate_interval(0, 3)
    [0.0, 0.5615]
    >>> rate_interval(5, 10)
    [0.2366, 0.7634]
    >>> rate_interval(0, 0) is None
    True
    """
    if n < 0 or errors < 0 or errors > n:
        raise ValueError(f"need 0 <= errors <= n, got errors={errors}, n={n}")
    if n == 0:
        return None
    p = errors / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    low = 0.0 if errors == 0 else max(0.0, centre - half)
    high = 1.0 if errors == n else min(1.0, centre + half)
    return [round(low, 4), round(high, 4)]


def error_rates(*, escapes: int, n_ng: int, overkills: int, n_ok: int) -> dict[str, Any]:
    """``escape_rate`` (escapes among ``n_ng`` real NG parts), ``overkill_rate``
    (overkills among ``n_ok`` real OK parts), each None when there is no part of
    its kind, and their 95 % intervals ``escape_interval`` / ``overkill_interval``."""
    return {
        "escape_rate": escapes / n_ng if n_ng else None,
        "overkill_rate": overkills / n_ok if n_ok else None,
        "escape_interval": rate_interval(escapes, n_ng),
        "overkill_interval": rate_interval(overkills, n_ok),
    }
