"""Imported by the fault-suite's Celery worker (``--include reliability.worker_setup``).

The suite shortens training runs through the product's own ``TRAIN_STEPS``
setting (see ``worker_faults.TRAIN_STEPS``); here the worker only learns to dump
its stacks on request when ``RELIABILITY_STACKS`` is set.
"""

import os

if os.environ.get("RELIABILITY_STACKS"):
    import faulthandler
    import signal

    faulthandler.register(
        signal.SIGUSR2, all_threads=True
    )  # kill -USR2 <pid>: dump stacks to stderr
