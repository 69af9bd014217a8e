"""The feature backend registry: built-in names, lazy imports, errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from prompting.errors import BackendError
from prompting.features import (
    FeatureBackend,
    backend_create,
    backend_names,
    backend_register,
)
from prompting.features import base as features_base


def test_builtin_backends_are_registered() -> None:
    assert {"classic", "sam"} <= set(backend_names())


def test_classic_is_created_lazily_by_name() -> None:
    from prompting.features.classic import ClassicBackend

    backend = backend_create("classic")
    assert isinstance(backend, ClassicBackend) and backend.name == "classic"
    assert isinstance(backend, FeatureBackend)


def test_sam_is_created_by_name(tiny_sam_checkpoint) -> None:
    backend = backend_create("sam", **tiny_sam_checkpoint._asdict())
    assert backend.name == "sam" and isinstance(backend, FeatureBackend)


def test_unknown_backend_names_the_available_ones() -> None:
    with pytest.raises(BackendError, match="unknown feature backend 'dino'.*classic.*sam"):
        backend_create("dino")


def test_register_adds_a_backend(monkeypatch) -> None:
    monkeypatch.setattr(features_base, "_REGISTRY", dict(features_base._REGISTRY))

    class Fake:
        name = "fake"

        def __init__(self, **options) -> None:
            self.options = options

    backend_register("fake", Fake)
    assert "fake" in backend_names()
    assert backend_create("fake", k=1).options == {"k": 1}


def test_importing_features_loads_no_torch() -> None:
    code = (
        "import sys, prompting.features, prompting.features.sam, prompting.features.cache; "
        "sys.exit(1 if 'torch' in sys.modules or 'segment_anything' in sys.modules else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
