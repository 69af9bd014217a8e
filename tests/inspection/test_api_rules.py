"""The rule editor's vocabulary comes from the engine's rule-type registry."""

from __future__ import annotations

from prompting.rules import RULE_TYPES, ruleset_vocabulary


def test_vocabulary_is_the_engines_for_any_signed_in_user(db, make_user, api_for):
    r = api_for(make_user("someone")).get("/api/v1/rules/vocabulary/")
    assert r.status_code == 200
    body = r.json()
    assert body == ruleset_vocabulary()
    assert [t["type"] for t in body["rule_types"]] == list(RULE_TYPES)
    assert {"length_mm", "width_mm"} <= set(body["measures"])


def test_vocabulary_needs_a_signed_in_user(db, api_for):
    assert api_for().get("/api/v1/rules/vocabulary/").status_code == 401
