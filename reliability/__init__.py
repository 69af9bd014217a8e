"""Reliability suites: each is a command that prints its figures.

    python -m reliability.uploads        hostile uploads (generated corpus)
    python -m reliability.prompts_rules  hostile prompts and rule sets
    python -m reliability.access         access matrix, CSRF, throttling, id probing
    python -m reliability.fuzz           Schemathesis over /api/schema/ (in-process WSGI)
    python -m reliability.worker_faults  real Celery worker over Redis + PostgreSQL
    python -m reliability.retention      deletion, orphans, immutable inspections
    python -m reliability.deploy         check --deploy and file-serving headers

A fast slice of each (except worker_faults) runs in ``tests/hardening``.
"""
