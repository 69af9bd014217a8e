"""Production review: which inspections keep their image, a person's verdict on a
decision, the line's real escapes and overkills, and adding a reviewed part to
the training images. The engine's decision is injected; the service is real."""

from __future__ import annotations

import csv
import io

import pytest

from inspection.models import Image, Inspection, InspectionReview
from inspection.services import reviews
from inspection.services.projects import membership_set


def _set_policy(line, policy):
    type(line.project).objects.filter(id=line.project.id).update(keep_inspection_images=policy)


@pytest.mark.parametrize(
    ("policy", "kept"),
    [
        ("none", {"NG": False, "unsure": False, "OK": False}),
        ("ng", {"NG": True, "unsure": False, "OK": False}),
        ("unsure", {"NG": True, "unsure": True, "OK": False}),
        ("all", {"NG": True, "unsure": True, "OK": True}),
    ],
)
def test_the_project_policy_decides_which_images_are_kept(line, policy, kept):
    _set_policy(line, policy)
    for seed, kind in enumerate(("NG", "unsure", "OK")):
        ins = line.inspect(kind, seed=seed)
        assert ins.verdict == ("NG" if kind == "NG" else "OK")
        assert bool(ins.image_file) is kept[kind], (policy, kind)


def test_the_unsure_cut_is_a_setting(line, settings):
    _set_policy(line, "unsure")
    settings.INSPECTION_KEEP_UNSURE_MIN = 0.3  # the unsure decision has 0.25
    assert not line.inspect("unsure").image_file


def test_the_kept_image_is_the_file_as_sent(line, api_for):
    _set_policy(line, "ng")
    ins = line.inspect("NG", seed=3)
    r = api_for(line.owner).get(f"/api/v1/inspections/{ins.id}/image/")
    assert r.status_code == 200
    assert b"".join(r.streaming_content) == line.png(3)
    assert ins.image_file.name == f"projects/{line.project.id}/inspections/{ins.id.hex}.png"
    other = line.inspect("OK", seed=4)
    r = api_for(line.owner).get(f"/api/v1/inspections/{other.id}/image/")
    assert r.status_code == 404 and "kept no image" in r.json()["detail"]
    r = api_for(line.owner).get(f"/api/v1/inspections/{other.id}/image/display/")
    assert r.status_code == 404 and "kept no image" in r.json()["detail"]


def test_a_kept_tiff_is_drawn_from_a_png_of_what_the_engine_saw(line, api_for, make_user):
    import numpy as np
    from PIL import Image as PILImage

    from inspection.services import inspections
    from prompting.images import image_decode, image_to_rgb8

    _set_policy(line, "ng")
    buf = io.BytesIO()
    PILImage.fromarray(np.arange(64, dtype=np.uint16).reshape(8, 8) * 60).save(buf, "TIFF")
    line.inspect("NG")  # plans the decision
    ins = inspections.inspection_run(project=line.project, data=buf.getvalue(), filename="c.tif")
    assert ins.image_file.name.endswith(".tif")
    r = api_for(line.owner).get(f"/api/v1/inspections/{ins.id}/image/display/")
    assert r.status_code == 200 and r["Content-Type"] == "image/png"
    assert r["Content-Disposition"] == f'inline; filename="inspection-{ins.id}-display.png"'
    shown = image_decode(r.content).pixels
    assert np.array_equal(shown, image_to_rgb8(image_decode(buf.getvalue()).pixels)[:, :, 0])
    r = api_for(make_user("stranger")).get(f"/api/v1/inspections/{ins.id}/image/display/")
    assert r.status_code == 404


def test_a_review_is_set_replaced_and_cleared_without_touching_the_log(line, api_for, make_user):
    operator = make_user("op")
    membership_set(project=line.project, username="op", role="operator")
    ins = line.inspect("NG")
    client = api_for(operator)
    url = f"/api/v1/inspections/{ins.id}/review/"
    r = client.post(url, {"verdict": "OK", "note": "dust on the lens"}, format="json")
    assert r.status_code == 200, r.content
    body = r.json()
    assert body["verdict"] == "NG" and body["misjudged"] is True
    assert body["review"]["verdict"] == "OK" and body["review"]["note"] == "dust on the lens"
    assert body["review"]["reviewed_by"] == "op"
    r = client.post(url, {"verdict": "NG"}, format="json")
    assert r.json()["misjudged"] is False and r.json()["review"]["note"] == ""
    assert InspectionReview.objects.count() == 1
    assert client.delete(url).status_code == 204
    r = client.delete(url)
    assert r.status_code == 409 and r.json()["code"] == "not_reviewed"
    logged = Inspection.objects.get(id=ins.id)
    assert logged.verdict == "NG" and logged.reasons == ins.reasons


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"verdict": "maybe"}, "verdict"),
        ({}, "verdict"),
        ({"verdict": "OK", "note": "x" * 501}, "note"),
    ],
)
def test_a_bad_review_names_its_field_and_keeps_the_old_one(line, api_for, body, field):
    ins = line.inspect("NG")
    client = api_for(line.owner)
    url = f"/api/v1/inspections/{ins.id}/review/"
    assert client.post(url, {"verdict": "OK"}, format="json").status_code == 200
    r = client.post(url, body, format="json")
    assert r.status_code == 400
    assert field in r.json()["errors"], r.json()
    assert InspectionReview.objects.get(inspection=ins).verdict == "OK"


def test_a_review_is_announced_with_whether_the_line_was_wrong(line, monkeypatch):
    from inspection.services import webhooks as webhook_services

    sent = []
    monkeypatch.setattr(webhook_services, "webhook_event_emit", lambda **kw: sent.append(kw))
    ins = line.inspect("OK", part_id="A-7")
    reviews.inspection_review_set(inspection=ins, verdict="NG")
    assert [e["event"] for e in sent] == ["inspection.reviewed"]
    payload = sent[0]["payload"]
    assert payload["misjudged"] is True and payload["part_id"] == "A-7"
    assert payload["verdict"] == "OK" and payload["review_verdict"] == "NG"


def test_the_summary_counts_the_lines_real_escapes_and_overkills(line, api_for):
    _set_policy(line, "ng")
    plan = [("NG", "NG"), ("NG", "OK"), ("OK", "NG"), ("OK", "OK"), ("OK", None), ("NG", None)]
    made = []
    for seed, (kind, truth) in enumerate(plan):
        ins = line.inspect(kind, seed=seed)
        made.append(ins)
        if truth:
            reviews.inspection_review_set(inspection=ins, verdict=truth)
    client = api_for(line.owner)
    summary = client.get(f"/api/v1/projects/{line.project.id}/inspections/summary/").json()
    assert summary["n_inspections"] == 6 and summary["n_ng"] == 3
    assert summary["ng_rate"] == 0.5 and summary["n_images_kept"] == 3
    assert summary["reviews"] == {
        "reviewed": 4,
        "really_ng": 2,
        "really_ok": 2,
        "escapes": 1,
        "overkills": 1,
        "promoted": 0,
        "misjudged": 2,
        "escape_rate": 0.5,
        "overkill_rate": 0.5,
        # 1 of 2 reviewed: the 95 % Wilson interval says how little that pins down
        "escape_interval": [0.0945, 0.9055],
        "overkill_interval": [0.0945, 0.9055],
    }
    base = f"/api/v1/projects/{line.project.id}/inspections/"

    def ids(query):
        r = client.get(base + query)
        assert r.status_code == 200, r.content
        return {i["id"] for i in r.json()["results"]}

    assert ids("?misjudged=true") == {str(made[1].id), str(made[2].id)}
    assert ids("?misjudged=false") == {str(m.id) for m in made} - ids("?misjudged=true")
    assert ids("?reviewed=false") == {str(made[4].id), str(made[5].id)}
    assert ids("?review_verdict=NG") == {str(made[0].id), str(made[2].id)}
    assert ids("?image_kept=true") == {str(made[i].id) for i in (0, 1, 5)}
    r = client.get(base + "?review_verdict=maybe")
    assert r.status_code == 400 and "review_verdict" in r.json()["errors"]
    rows = list(
        csv.DictReader(io.StringIO(client.get(base + "export/?format=csv").content.decode()))
    )
    by_id = {row["id"]: row for row in rows}
    assert by_id[str(made[1].id)]["review_verdict"] == "OK"
    # empty cells stay empty (the spreadsheet-formula guard only prefixes =, +, -, @...)
    assert (
        by_id[str(made[4].id)]["review_verdict"] == "" and by_id[str(made[4].id)]["station"] == ""
    )


def test_promoting_adds_the_part_with_the_reviewed_verdict_once(line, api_for):
    _set_policy(line, "all")
    ins = line.inspect("OK", seed=9)
    reviews.inspection_review_set(inspection=ins, verdict="NG", note="crack at the rim")
    client = api_for(line.owner)
    r = client.post(f"/api/v1/inspections/{ins.id}/promote/")
    assert r.status_code == 201, r.content
    image = Image.objects.get(id=r.json()["image"]["id"])
    assert image.project_id == line.project.id and image.verdict == "NG"
    assert image.original_name == "part9.png" and image.sha256 == ins.image_sha256
    assert InspectionReview.objects.get(inspection=ins).image_id == image.id
    assert r.json()["job"]["kind"] == "predict"  # the new image gets the deployed model's view
    again = client.post(f"/api/v1/inspections/{ins.id}/promote/")
    assert again.status_code == 200 and again.json()["created"] is False
    assert again.json()["job"] is None
    assert again.json()["image"]["id"] == str(image.id)
    assert Image.objects.filter(project=line.project).count() == 1
    assert reviews.inspection_review_summary(project=line.project)["promoted"] == 1


def test_an_unreviewed_part_is_promoted_without_a_verdict(line):
    _set_policy(line, "all")
    ins = line.inspect("NG", seed=11)
    result = reviews.inspection_promote(inspection=ins)
    assert result.created and result.image.verdict == ""


def test_promoting_needs_a_kept_image(line, api_for):
    ins = line.inspect("NG")  # policy "none"
    r = api_for(line.owner).post(f"/api/v1/inspections/{ins.id}/promote/")
    assert r.status_code == 409 and r.json()["code"] == "image_not_kept"
    assert not Image.objects.filter(project=line.project).exists()


def test_keep_images_is_a_project_setting_that_names_its_field(line, api_for):
    client = api_for(line.owner)
    url = f"/api/v1/projects/{line.project.id}/"
    assert client.get(url).json()["keep_inspection_images"] == "none"
    r = client.patch(url, {"keep_inspection_images": "sometimes"}, format="json")
    assert r.status_code == 400 and "keep_inspection_images" in r.json()["errors"]
    r = client.patch(url, {"keep_inspection_images": "unsure"}, format="json")
    assert r.status_code == 200 and r.json()["keep_inspection_images"] == "unsure"
    assert line.inspect("unsure").image_file


def test_deleting_the_project_removes_kept_images_and_reviews(
    line, django_capture_on_commit_callbacks
):
    from django.core.files.storage import default_storage

    from inspection.services.projects import project_delete

    _set_policy(line, "all")
    ins = line.inspect("NG")
    reviews.inspection_review_set(inspection=ins, verdict="NG")
    name = ins.image_file.name
    assert default_storage.exists(name)
    with django_capture_on_commit_callbacks(execute=True):  # files go after the commit
        project_delete(project=line.project)
    assert not default_storage.exists(name)
    assert not InspectionReview.objects.exists()


def test_no_one_outside_the_project_reviews_or_sees_kept_images(line, api_for, make_user):
    _set_policy(line, "all")
    ins = line.inspect("NG")
    stranger = api_for(make_user("stranger"))
    for method, suffix in (("get", "image/"), ("post", "review/"), ("post", "promote/")):
        r = getattr(stranger, method)(f"/api/v1/inspections/{ins.id}/{suffix}", {"verdict": "OK"})
        assert r.status_code == 404, (suffix, r.status_code)
    assert not InspectionReview.objects.exists()


def test_kept_images_expire_but_decisions_and_reviews_stay(line, settings):
    from datetime import timedelta

    from django.core.files.storage import default_storage
    from django.core.management import call_command
    from django.utils import timezone

    _set_policy(line, "all")
    old, recent = line.inspect("NG", seed=1), line.inspect("OK", seed=2)
    reviews.inspection_review_set(inspection=old, verdict="OK")
    Inspection.objects.filter(id=old.id).update(created_at=timezone.now() - timedelta(days=40))
    settings.INSPECTION_IMAGES_KEEP_DAYS = 0  # keep forever: nothing goes
    assert reviews.inspection_images_expire() == 0
    assert reviews.inspection_images_expire(older_than_days=30) == 1
    assert not default_storage.exists(old.image_file.name)
    assert default_storage.exists(recent.image_file.name)
    after = Inspection.objects.get(id=old.id)
    assert after.image_file.name == "" and after.verdict == "NG" and after.reasons == old.reasons
    assert after.review.verdict == "OK"
    assert reviews.inspection_images_expire(older_than_days=30) == 0  # safe to run twice
    r = reviews.inspection_summary(project=line.project)
    assert r["n_images_kept"] == 1 and r["reviews"]["reviewed"] == 1
    with pytest.raises(Exception, match="kept no image"):
        reviews.inspection_promote(inspection=after)
    out = io.StringIO()
    call_command("expire_inspection_images", "--older-than-days", "0", stdout=out)
    assert out.getvalue().strip() == "0 kept inspection images older than 0 days deleted"


def test_the_expiry_sweep_is_scheduled():
    from django.conf import settings

    from inspection.celery import app

    entry = settings.CELERY_BEAT_SCHEDULE["expire-inspection-images"]
    assert entry["task"] in app.tasks


def test_the_review_queue_puts_the_most_unsure_unreviewed_kept_decisions_first(line, api_for):
    _set_policy(line, "all")
    made = [line.inspect(kind, seed=i) for i, kind in enumerate(("OK", "unsure", "NG", "unsure"))]
    Inspection.objects.filter(id=made[3].id).update(uncertainty=0.4)
    Inspection.objects.filter(id=made[0].id).update(uncertainty=None)
    reviews.inspection_review_set(inspection=made[1], verdict="OK")
    client = api_for(line.owner)
    base = f"/api/v1/projects/{line.project.id}/inspections/"
    r = client.get(base + "?reviewed=false&image_kept=true&ordering=-uncertainty")
    assert r.status_code == 200, r.content
    # 0.4 first, then NG (0.0), the unmeasured one last; the reviewed one is not listed
    assert [i["id"] for i in r.json()["results"]] == [str(made[k].id) for k in (3, 2, 0)]
    r = client.get(base + "?ordering=created_at")
    assert [i["id"] for i in r.json()["results"]] == [str(m.id) for m in made]
    r = client.get(base + "?ordering=blobs")
    assert r.status_code == 400 and "ordering" in r.json()["errors"]
