"""Access matrix (reliability/access_matrix.py MATRIX): every role × endpoint × method."""

from __future__ import annotations

import pytest

from reliability.access import (
    cell_run,
    csrf_check,
    foreign_rows_check,
    matrix_cases,
    probe_check,
    station_cell_run,
    throttle_check,
)
from reliability.access_matrix import MATRIX, ROLES, STATION_MATRIX


def test_matrix_is_complete_for_every_role():
    assert all(len(row[3].split()) == len(ROLES) for row in MATRIX)


def test_matrix_covers_every_api_route():
    from django.urls import get_resolver

    routed = set()
    for p in get_resolver().url_patterns:
        if str(p.pattern) == "api/v1/":
            routed = {str(sub.pattern) for sub in p.url_patterns}
    covered = {path for _, path, _, _ in MATRIX}
    import re

    def norm(s: str) -> str:
        return re.sub(r"<[^>]+>|\{[^}]+\}", "X", s.replace("/api/v1/", ""))

    missing = {r for r in routed if norm(r) not in {norm(c) for c in covered}} - {
        "auth/token/",  # throttled login: test_throttle
        "auth/session/",  # GET in the matrix, POST in test_csrf
    }
    assert not missing, f"routes with no row in the access matrix: {sorted(missing)}"


@pytest.mark.parametrize(
    "role,method,path,body,expected",
    matrix_cases(),
    ids=[f"{c[0]}-{c[1]}-{c[2]}" for c in matrix_cases()],
)
def test_matrix(db, world, hooks_private, role, method, path, body, expected):
    ok, detail = cell_run(world, role, method, path, body, expected)
    assert ok, detail


@pytest.mark.parametrize("row", STATION_MATRIX, ids=["-".join(r[:4]) for r in STATION_MATRIX])
def test_station_matrix(db, world, row):
    """A station answers POST /images to allowed clients only, and nothing else
    of the product through its port."""
    ok, detail = station_cell_run(world, *row)
    assert ok, detail


def test_lists_hold_no_foreign_rows(db, world):
    assert foreign_rows_check(world) == []


def test_probing_foreign_ids_looks_like_missing_ids(db, world):
    n, problems = probe_check(world)
    assert n > 20
    assert problems == []


def test_csrf_enforced_for_session_writes(db, world):
    n, problems = csrf_check(world)
    assert problems == []


def test_login_and_token_throttled(db, world):
    n, problems = throttle_check(world)
    assert problems == []
