"""Imported by the test Celery worker (``--include worker_setup``): registers the
tiny SAM model type of ``tests/conftest.py`` so the worker can load its checkpoint."""

import importlib.util
from pathlib import Path

from prompting.features.sam import sam_model_type_register

_spec = importlib.util.spec_from_file_location(
    "_tests_root_conftest", Path(__file__).resolve().parents[1] / "conftest.py"
)
_root = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_root)
sam_model_type_register(_root.TINY_SAM_TYPE, _root.tiny_sam_build)
