"""gunicorn's settings for the product's web server, from the environment.

    gunicorn -c python:inspection.gunicorn_conf      # what scripts/run.sh runs

Each variable is in ``.env.example`` with its default.
"""

import os

# where the site listens
bind = [f"{os.environ.get('HOST') or '127.0.0.1'}:{os.environ.get('PORT') or '8000'}"]
# worker processes; an inspection is CPU-bound, so one per core by default
workers = int(os.environ.get("WEB_WORKERS") or os.cpu_count() or 1)
# threads per worker (1: sync workers)
threads = int(os.environ.get("WEB_THREADS") or 1)
# seconds a request may take before its worker is restarted
timeout = int(os.environ.get("WEB_TIMEOUT") or 120)
wsgi_app = "inspection.wsgi:application"
accesslog = "-"
# no control socket: it defaults to one path per user, which stations and other installs share
control_socket_disable = True


def post_worker_init(worker) -> None:
    """Each worker, once the site is loaded, warms the deployed models in the
    background (``WARMUP``; ``inspection.services.warmup``)."""
    from django.conf import settings

    if settings.WARMUP:
        # deferred: the site (and Django's settings) is loaded in the worker only by now
        from inspection.services.warmup import serving_warm_start

        serving_warm_start()
