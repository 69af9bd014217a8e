"""CPU tuning for SAM: torch's thread counts (and glibc malloc's thresholds,
:mod:`prompting.features.allocator`).

Set once per process when a model loads (:func:`torch_threads_configure`), and
around each mask decode (:func:`intra_op_threads`). A SAM decode allocates
~30 MB of short-lived tensors; with glibc's defaults each came fresh from the
kernel (~8000 minor faults per decode, 10-20 % of its time on this CPU).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from prompting.features.allocator import malloc_tune_once

#: environment variable that pins torch's intra-op CPU threads
THREADS_ENV = "PROMPTING_TORCH_THREADS"
#: environment variable: torch intra-op threads for mask decoding (default 1;
#: 0 keeps the process setting). A decode is ~50 small ops: on a small shared
#: CPU, threads mostly wait for each other (see benchmarks/sam_timings.py)
DECODE_THREADS_ENV = "PROMPTING_SAM_DECODE_THREADS"

_THREADS_DONE = False


def torch_threads_configure() -> int:
    """Cap torch's intra-op CPU threads at the cores this process may use.

    ``PROMPTING_TORCH_THREADS`` overrides. Never raises the count above what
    torch chose. Also tunes glibc malloc once per process
    (:func:`prompting.features.allocator.malloc_tune_once`). Returns the thread
    count in use.
    """
    global _THREADS_DONE
    # deferred: torch loads on first use
    import torch

    if not _THREADS_DONE:
        _THREADS_DONE = True
        malloc_tune_once()
        wanted = int(os.environ.get(THREADS_ENV, "0") or 0)
        if wanted > 0:
            torch.set_num_threads(wanted)
        else:
            try:
                cores = len(os.sched_getaffinity(0))
            except AttributeError:  # pragma: no cover - not Linux
                cores = os.cpu_count() or 1
            if torch.get_num_threads() > cores:
                torch.set_num_threads(cores)
    return torch.get_num_threads()


@contextlib.contextmanager
def intra_op_threads(n: int) -> Iterator[None]:
    """Run the body with ``n`` torch intra-op threads (0: unchanged), then restore.

    With torch's OpenMP backend the count read and set here is the calling
    thread's own, so concurrent decodes in several threads each restore their
    own setting.
    """
    if n <= 0:
        yield
        return
    # deferred: torch loads on first use
    import torch

    saved = torch.get_num_threads()
    if saved == n:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(saved)
