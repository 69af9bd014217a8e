"""Hostile uploads: a slice of the generated corpus (reliability/corpus.py) through
the real upload endpoint. The full corpus: ``python -m reliability.uploads``."""

from __future__ import annotations

import warnings
from pathlib import Path

from reliability.corpus import corpus, corpus_slice


def test_corpus_is_big_and_varied():
    cases = corpus()
    assert len(cases) >= 300
    assert {c.category for c in cases} >= {
        "truncated",
        "corrupt",
        "empty/garbage",
        "wrong ext/MIME",
        "polyglot",
        "bomb",
        "oversize",
        "modes",
        "animated",
        "filename",
        "exif",
    }
    assert {c.orientation for c in cases if c.orientation} == set(range(1, 9))


def test_upload_slice(db, world):
    from django.conf import settings

    from reliability.access import client_for
    from reliability.uploads import run

    cases = corpus_slice(corpus(), per_category=5)
    assert len(cases) >= 60
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        figures = run(
            cases,
            client=client_for(world, "engineer"),
            project=world.project,
            media_root=Path(settings.MEDIA_ROOT),
            var_dir=Path(settings.VAR_DIR),
        )
    assert figures["failures"] == []
    assert figures["outcomes"].get("accepted", 0) > 10
    assert figures["outcomes"].get("rejected", 0) > 20
    assert "5xx" not in figures["outcomes"]


def test_orientation_swaps_dimensions(db, world):
    from reliability.access import client_for
    from reliability.uploads import case_check

    cases = [c for c in corpus() if c.orientation in (6, 8) and c.files[0][0].endswith("jpeg")]
    for case in cases:
        problems, outcome, _ = case_check(
            client_for(world, "engineer"), str(world.project.id), case
        )
        assert (problems, outcome) == ([], "accepted"), case.name
