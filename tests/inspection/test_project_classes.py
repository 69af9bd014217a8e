"""A project's class names: the names the product gives its own pixels are refused
with an error naming the field, and nothing is stored; a project that already has
such a class keeps it."""

from __future__ import annotations

import pytest

from inspection.models import Project
from inspection.services.projects import project_create


@pytest.mark.parametrize("name", ["anomaly", "Anomaly", "background", "BACKGROUND"])
def test_a_reserved_class_name_is_refused_naming_the_field(db, make_user, api_for, name):
    client = api_for(make_user("engineer-cls"))
    body = {"name": "tiles", "classes": [{"name": "scratch"}, {"name": name}]}
    r = client.post("/api/v1/projects/", body, format="json")
    assert r.status_code == 400, r.content
    assert list(r.json()["errors"]) == ["classes[1].name"]
    assert "is reserved" in r.json()["errors"]["classes[1].name"][0]
    assert not Project.objects.filter(name="tiles").exists()


def test_adding_a_reserved_class_to_a_project_keeps_what_is_stored(db, make_user, api_for):
    owner = make_user("engineer-cls2")
    client = api_for(owner)
    r = client.post("/api/v1/projects/", {"name": "tiles", "classes": ["scratch"]}, format="json")
    assert r.status_code == 201, r.content
    pid = r.json()["id"]
    r = client.patch(f"/api/v1/projects/{pid}/", {"classes": ["scratch", "anomaly"]}, format="json")
    assert r.status_code == 400, r.content
    assert list(r.json()["errors"]) == ["classes[1].name"]
    assert Project.objects.get(id=pid).class_names == ["scratch"]


def test_a_project_that_has_the_name_already_keeps_it(db, make_user, api_for):
    """Made before the name was reserved: recolouring it and adding a class work."""
    owner = make_user("engineer-cls3")
    project = project_create(user=owner, name="old", classes=["scratch"])
    Project.objects.filter(id=project.id).update(classes=[{"name": "anomaly", "colour": "#ff0000"}])
    r = api_for(owner).patch(
        f"/api/v1/projects/{project.id}/",
        {"classes": [{"name": "anomaly", "colour": "#00ff00"}, {"name": "dent"}]},
        format="json",
    )
    assert r.status_code == 200, r.content
    project.refresh_from_db()
    assert project.class_names == ["anomaly", "dent"]
    assert project.classes[0]["colour"] == "#00ff00"
