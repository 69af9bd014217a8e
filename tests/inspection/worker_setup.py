"""Imported by the test Celery worker (``--include tests.inspection.worker_setup``):
registers the tiny SAM model type so the worker can load the tests' checkpoint."""

from prompting.features.sam.tiny import tiny_sam_register

tiny_sam_register()
