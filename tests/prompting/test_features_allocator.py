"""glibc malloc tuned once per process for feature work (prompting.features.allocator)."""

from __future__ import annotations

import platform

import pytest

from prompting.features import allocator, backend_create


def test_tuning_applies_on_glibc_and_is_opt_out(monkeypatch) -> None:
    on_glibc = platform.libc_ver()[0] == "glibc"
    assert allocator.malloc_tune() is on_glibc
    monkeypatch.setenv(allocator.MALLOC_TUNE_ENV, "0")
    assert allocator.malloc_tune() is False


@pytest.fixture
def fresh_process_state(monkeypatch):
    """As in a new process: not tuned yet; counts the calls of ``malloc_tune``."""
    calls = []
    monkeypatch.setattr(allocator, "_APPLIED", None)
    monkeypatch.setattr(allocator, "malloc_tune", lambda: calls.append(1) or True)
    return calls


def test_the_first_backend_of_a_process_tunes_malloc_once(fresh_process_state) -> None:
    backend_create("classic")
    backend_create("classic", sigmas=[1.0, 2.0])
    assert fresh_process_state == [1]
    assert allocator.malloc_tune_once() is True and fresh_process_state == [1]


def test_an_opted_out_process_stays_untuned(monkeypatch) -> None:
    monkeypatch.setattr(allocator, "_APPLIED", None)
    monkeypatch.setenv(allocator.MALLOC_TUNE_ENV, "0")
    backend_create("classic")
    assert allocator.malloc_tune_once() is False
