"""Hostile prompts, rule sets and project settings (reliability/prompts_rules.py):
each is refused with a field error, within bounded time and memory."""

from __future__ import annotations

import tracemalloc

import pytest

from reliability.prompts_rules import MAX_PEAK_BYTES, MAX_SECONDS, case_run, cases

CASES = cases()


@pytest.mark.parametrize("case", CASES, ids=[c.name[:60] for c in CASES])
def test_hostile_input_refused(db, world, case):
    from reliability.access import client_for

    problems, seconds, _ = case_run(client_for(world, "owner"), world, case)
    assert problems == [], f"{case.name}: {problems}"
    assert seconds <= MAX_SECONDS


def test_memory_bounded_for_the_biggest_bodies(db, world):
    from reliability.access import client_for

    big = [c for c in CASES if len(c.body) > 1_000_000]
    assert len(big) >= 4
    tracemalloc.start()
    try:
        for case in big:
            problems, _, peak = case_run(client_for(world, "owner"), world, case)
            assert [p for p in problems if not p.startswith("took")] == [], (
                case.name
            )  # tracing slows it
            assert peak <= MAX_PEAK_BYTES
    finally:
        tracemalloc.stop()


def test_request_size_limits_are_set():
    from django.conf import settings

    assert 0 < settings.DATA_UPLOAD_MAX_MEMORY_SIZE <= 16 * 1024 * 1024
    assert settings.DATA_UPLOAD_MAX_NUMBER_FILES <= settings.UPLOAD_MAX_FILES + 1
    assert settings.UPLOAD_MAX_BYTES <= 64 * 1024 * 1024
