"""A small, complete world for the suites: users in every role, two projects,
and one row of every kind (image, prompt, job, model version, rule set,
prediction, inspection, webhook) in each project.

Images are tiny synthetic tiles (a dark scratch on noise), so a real training
run with the classic backend takes about a second. Everything goes through the
product's own services; nothing here writes models directly except where noted.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field

import numpy as np

PASSWORD = "a-long-reliability-password-1"
ROLES = ("viewer", "operator", "engineer", "owner")


def tile_png(seed: int, *, size: int = 48, defect: bool = True, fmt: str = "PNG") -> bytes:
    """A (size, size, 3) uint8 RGB tile as encoded bytes: noise, plus a dark
    horizontal scratch on row size//2 when ``defect``."""
    from PIL import Image as PILImage

    rng = np.random.default_rng(seed)
    rgb = (150 + rng.normal(0, 12, (size, size, 3))).clip(0, 255).astype(np.uint8)
    if defect:
        rgb[size // 2 - 1 : size // 2 + 2, 6 : size - 6] = 30
    buf = io.BytesIO()
    PILImage.fromarray(rgb).save(buf, format=fmt)
    return buf.getvalue()


def _png(array: np.ndarray) -> bytes:
    from PIL import Image as PILImage

    buf = io.BytesIO()
    PILImage.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def stroke(label: str, points, radius: float = 2.0) -> dict:
    return {"kind": "stroke", "label": label, "points": [list(p) for p in points], "radius": radius}


@contextlib.contextmanager
def fast_training(steps: int = 60):
    """Real training with fewer optimiser steps (the default 900 takes ~25 s on
    this shared CPU; the suites need the rows and a loadable artifact, not quality)."""
    from prompting import learner

    old = learner.learner_train.__kwdefaults__["steps"]
    learner.learner_train.__kwdefaults__["steps"] = steps
    try:
        yield
    finally:
        learner.learner_train.__kwdefaults__["steps"] = old


@dataclass
class World:
    users: dict = field(default_factory=dict)  # role name -> User
    tokens: dict = field(default_factory=dict)  # role name -> token key
    project: object = None  # project A (the one under test)
    other: object = None  # project B, owned by "other"
    ids: dict = field(default_factory=dict)  # kind -> id of a row of project A
    foreign: dict = field(default_factory=dict)  # kind -> id of a row of project B


def _populate(
    project, user, *, seed: int, n_images: int = 2, settle=contextlib.nullcontext
) -> dict:
    """Images (one NG, one OK), strokes, one training run (eager), a deploy,
    an inspection, a webhook, a rule-set v2. Returns kind -> id."""
    from django.conf import settings

    from inspection.models import Inspection, Job, ModelVersion, Prediction, Prompt, Webhook
    from inspection.services import images as image_services
    from inspection.services import inspections as inspection_services
    from inspection.services import prompts as prompt_services
    from inspection.services import rules as rule_services
    from inspection.services import training as training_services

    files = [
        (f"tile{seed}_{i}.png", tile_png(seed * 100 + i, defect=(i % 2 == 0)))
        for i in range(n_images)
    ]
    results = image_services.images_upload(project=project, files=files, user=user)
    images = [r.image for r in results]
    for i, image in enumerate(images):
        if i % 2 == 0:
            prompt_services.prompt_create(
                image=image, data=stroke("scratch", [[8, 24], [40, 24]], 1), user=user
            )
        prompt_services.prompt_create(
            image=image, data=stroke("background", [[6, 6], [42, 6]], 2), user=user
        )
        prompt_services.prompt_create(
            image=image, data=stroke("background", [[6, 42], [42, 42]], 2), user=user
        )
    mask = np.zeros((48, 48), np.uint8)
    mask[23:26, 6:42] = 255
    image_services.image_ground_truth_set(image=images[0], verdict="NG", mask=_png(mask))
    image_services.image_ground_truth_set(image=images[1], verdict="OK")
    with fast_training(), settle():
        training_services.training_start(project=project, user=user)  # eager: runs on commit
    job = Job.objects.filter(project=project, kind="train").order_by("-created_at").first()
    assert job is not None and job.state == "succeeded", (
        f"world training failed: {job and job.error}"
    )
    with settle():
        rule_services.ruleset_update(
            project=project, data=project.active_ruleset.data, user=user, note="v2"
        )
    # the line keeps its images, so reviews can promote them
    type(project).objects.filter(id=project.id).update(keep_inspection_images="all")
    project.refresh_from_db()
    inspection_services.inspection_run(
        project=project,
        data=tile_png(seed * 100 + 77),
        filename="line.png",
        station="s1",
        part_id="p1",
        user=user,
    )
    hook = Webhook.objects.create(
        project=project,
        url="https://hooks.example.invalid/x",
        events=["job.finished"],
        secret="s" * 32,
    )
    # the first prediction carries an anomaly map, as one by a model with a memory bank
    # of good parts does (its heat-map route is in the matrix)
    from inspection.services import predictions as prediction_services

    first = (
        Prediction.objects.filter(image__project=project)
        .select_related("image", "model_version", "ruleset")
        .first()
    )
    probs = prediction_services.probabilities_load(first)
    prediction_services.prediction_store(
        image=first.image,
        model_version=first.model_version,
        ruleset=first.ruleset,
        probabilities=probs,
        rgb8=None,
        anomaly=np.full(probs.shape[1:], 0.5, np.float32),
    )
    assert settings.CELERY_TASK_ALWAYS_EAGER
    return {
        "project": str(project.id),
        "image": str(images[0].id),
        "prompt": str(Prompt.objects.filter(image__project=project).first().id),
        "job": str(job.id),
        "model": str(ModelVersion.objects.filter(project=project).first().id),
        "prediction": str(
            Prediction.objects.filter(image__project=project, anomaly_peak__isnull=False).first().id
        ),
        "inspection": str(Inspection.objects.filter(project=project).first().id),
        "webhook": str(hook.id),
        "member": str(user.id),
    }


def world_build() -> World:
    """Create users, tokens, project A (all roles + integration) and project B."""
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    from inspection.services import projects as project_services

    User = get_user_model()
    w = World()
    for name in (*ROLES, "other", "integration", "outsider"):
        user = User.objects.create_user(username=f"rel_{name}", password=PASSWORD)
        if name == "integration":
            user.set_unusable_password()
            user.save()
        w.users[name] = user
        w.tokens[name] = Token.objects.create(user=user).key
    classes = [{"name": "scratch", "colour": "#ff0000"}]
    w.project = project_services.project_create(
        user=w.users["owner"], name="A", classes=classes, cold_start_min=2
    )
    for role in ("viewer", "operator", "engineer"):
        project_services.membership_set(project=w.project, username=f"rel_{role}", role=role)
    project_services.membership_set(project=w.project, username="rel_integration", role="operator")
    w.other = project_services.project_create(
        user=w.users["other"], name="B", classes=classes, cold_start_min=2
    )
    w.ids = _populate(w.project, w.users["owner"], seed=1)
    w.foreign = _populate(w.other, w.users["other"], seed=2)
    w.project.refresh_from_db()
    w.other.refresh_from_db()
    return w
