"""glibc malloc's thresholds for feature work: large arrays reused, not faulted in again.

A prediction allocates arrays of tens to hundreds of MB (the feature stack of a
480x320 image is 47 MB, of a 1024x683 one 212 MB; the network's activations
and padded copies besides). With glibc's defaults every block over 32 MB is
mapped fresh from the kernel and unmapped on free, so each prediction
page-faults all of it in again: on the benchmark machine's VM a prediction
took 13 % longer for it at 480x320 and 73 % longer at 1024x683 (0.413 against
0.361 s, 2.139 against 1.233 s; ``python -m benchmarks.allocator``). Raising
the mmap threshold and the trim threshold to 1 GB lets the process keep the
freed blocks and reuse them; it then holds on to the memory its largest image
needed (its peak, which it reaches anyway) instead of returning it between
images.

Applied once per process by :func:`prompting.features.backend_create`;
``PROMPTING_MALLOC_TUNE=0`` leaves glibc's defaults. Other C libraries: no-op.
"""

from __future__ import annotations

import os

#: environment variable: "0" leaves glibc malloc's settings alone
MALLOC_TUNE_ENV = "PROMPTING_MALLOC_TUNE"
#: blocks up to this size come from the heap and are reused (glibc default: 128 KB, dynamic up to 32 MB)
MMAP_THRESHOLD = 1 << 30
#: free memory at the heap's top kept before it is returned to the kernel
TRIM_THRESHOLD = 1 << 30

# glibc's mallopt parameter numbers (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

_APPLIED: bool | None = None


def malloc_tune() -> bool:
    """Set glibc's mmap and trim thresholds (:data:`MMAP_THRESHOLD`, :data:`TRIM_THRESHOLD`).

    Returns whether both were applied: False with ``PROMPTING_MALLOC_TUNE=0`` or
    without glibc. Cheap and safe to call again.
    """
    if os.environ.get(MALLOC_TUNE_ENV, "1") == "0":
        return False
    try:
        # deferred: only processes that compute features need it
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
        return libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 and ok
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        return False


def malloc_tune_once() -> bool:
    """:func:`malloc_tune` the first time a process calls it; its result after that."""
    global _APPLIED
    if _APPLIED is None:
        _APPLIED = malloc_tune()
    return _APPLIED
