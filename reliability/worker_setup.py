"""Imported by the fault-suite's Celery worker (``--include reliability.worker_setup``).

``RELIABILITY_TRAIN_STEPS`` shortens (or lengthens) the learner's optimiser so a
training run takes a few seconds: long enough to be killed mid-way, short enough
to repeat. Training is otherwise the product's own, end to end.
"""

import os

from prompting import learner

if os.environ.get("RELIABILITY_TRAIN_STEPS"):
    learner.learner_train.__kwdefaults__["steps"] = int(os.environ["RELIABILITY_TRAIN_STEPS"])

if os.environ.get("RELIABILITY_STACKS"):
    import faulthandler
    import signal

    faulthandler.register(signal.SIGUSR2, all_threads=True)  # kill -USR2 <pid>: dump stacks to stderr
