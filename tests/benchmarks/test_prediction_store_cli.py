"""benchmarks.prediction_store loads without a database (it builds its own)."""

from __future__ import annotations


def test_the_benchmark_and_what_it_uses_load():
    from benchmarks import prediction_store

    for name in ("project_build", "_run_timed", "N_VISIBLE"):
        assert hasattr(prediction_store.prop, name)
    assert callable(prediction_store.main) and callable(prediction_store.cpu_name)
