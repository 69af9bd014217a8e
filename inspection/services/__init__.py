"""Business operations: the only code that writes models and calls the engine.

Each function is named ``<noun>_<verb>(*, ...)``; views and Celery tasks call
them. Reads live in ``inspection.selectors``.
"""
