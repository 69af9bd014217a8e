"""Warm-up: a web or station process loads the deployed models before the line's
first image, so that image is not the one that waits for them; a Celery worker
loads what its first Run would (:func:`worker_warm`).

A fresh process loads torch, the learner and the feature network on its first
inspection (seconds: see the README's "The first inspection after a start").
:func:`serving_warm_start` does that work in a background thread as the process
starts: for each project with a deployed model (and its shadow model), it loads
the learner, the feature backend and the rules, then predicts one of the
project's own images, which also sizes the allocator's pools for images of that
size. Nothing is written: no inspection is logged, no cache is filled. Requests
are answered meanwhile; one that needs a model still loading waits for it
instead of loading it twice (the engine's caches hold a lock).

A process with nothing deployed loads no engine module at all. ``/healthz``
reports the process's state (:func:`serving_warm_state`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from django.db import close_old_connections, connection

from inspection.models import Image, ModelVersion, Project
from inspection.services import engine
from inspection.services.rulesets import ruleset_active_get

log = logging.getLogger("inspection.warmup")

#: the most models a process warms: the engine keeps this many learners
WARM_MAX = engine._LEARNERS_MAX
#: the side of the synthetic image predicted when a project has no stored image
SYNTHETIC_SIDE = 256


@dataclass
class WarmupResult:
    """What a warm-up did: models loaded and predicted once, models that failed
    (their error, by model-version id), and how long it took."""

    models: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)


_state_lock = threading.Lock()
_state: dict[str, Any] = {"state": "off"}


def serving_warm_state() -> dict[str, Any]:
    """This process's warm-up: ``{"state": "off"}`` (not asked), ``"warming"``, or
    ``"ready"`` with ``models``, ``failed`` (a count) and ``seconds``. Counts only:
    ``/healthz`` answers without authentication."""
    with _state_lock:
        return dict(_state)


def _state_set(**values: Any) -> None:
    with _state_lock:
        _state.clear()
        _state.update(values)


def _warm_targets(project_ids: list[str] | None) -> list[tuple[Project, ModelVersion]]:
    """(project, model) pairs to warm: deployed models first, then shadow models;
    the projects changed most recently first, at most :data:`WARM_MAX` models."""
    projects = Project.objects.filter(deployed_model__isnull=False).select_related(
        "deployed_model", "shadow_model"
    )
    if project_ids is not None:
        projects = projects.filter(id__in=project_ids)
    projects = projects.order_by("-updated_at")
    pairs: list[tuple[Project, ModelVersion]] = []
    seen: set[str] = set()
    for attr in ("deployed_model", "shadow_model"):
        for project in projects:
            mv = getattr(project, attr)
            if mv is None or str(mv.id) in seen:
                continue
            seen.add(str(mv.id))
            pairs.append((project, mv))
    return pairs[:WARM_MAX]


def _warm_pixels(project: Project) -> np.ndarray:
    """(H, W, 3) uint8 RGB: the project's newest stored image, or a seeded noise
    image of :data:`SYNTHETIC_SIDE` px when it has none (a model imported alone)."""
    image = Image.objects.filter(project=project).order_by("-created_at").first()
    if image is not None:
        try:
            return engine.image_pixels_load(image)[0]
        except Exception as exc:  # a missing file must not stop the warm-up
            log.warning("warm-up: image %s of project %s unreadable: %s", image.id, project.id, exc)
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (SYNTHETIC_SIDE, SYNTHETIC_SIDE, 3), dtype=np.uint8)


def serving_warm(*, project_ids: list[str] | None = None) -> WarmupResult:
    """Load and run once every deployed (and shadow) model of ``project_ids`` (all
    projects when None), in this process; see the module's docstring.

    A model that fails (a missing artifact, SAM not configured) is reported in
    ``failed`` and the others are still warmed: a request for it will answer the
    same error as before. ``timings``: seconds per model-version id.
    """
    t0 = time.perf_counter()
    result = WarmupResult()
    targets = _warm_targets(project_ids)
    if targets:
        # deferred: the engine's pipeline (torch through the backend) loads only when a model is deployed
        from prompting.pipeline import inspect_image
    for project, mv in targets:

        def run(project: Project = project, mv: ModelVersion = mv) -> None:
            learner = engine.learner_get(mv)
            inspect_image(
                _warm_pixels(project),
                learner=learner,
                backend=engine.backend_for(mv, learner),
                ruleset=engine.ruleset_get(ruleset_active_get(project=project)),
                px_per_mm=project.px_per_mm,
                cache=None,
                input_mode="off",
            )

        result.models += _attempt(result, str(mv.id), run, f"model {mv.id} of project {project.id}")
    result.seconds = round(time.perf_counter() - t0, 3)
    return result


def _attempt(result: WarmupResult, key: str, work: Callable[[], Any], what: str) -> bool:
    """Run ``work``; its seconds go to ``result.timings[key]``, or its error to
    ``result.failed[key]`` (logged: the warm-up goes on). Whether it succeeded."""
    t = time.perf_counter()
    try:
        work()
    except Exception as exc:  # a missing artifact, SAM not configured: as a request would say
        result.failed[key] = f"{exc.__class__.__name__}: {exc}"
        log.warning("warm-up: %s failed: %s", what, exc)
        return False
    result.timings[key] = round(time.perf_counter() - t, 3)
    return True


def worker_warm() -> WarmupResult:
    """What a Celery worker's first job would load, loaded in this process: for
    the most recently changed projects (at most :data:`WARM_MAX`), the feature
    backend new Runs train with (``Project.backend``, the network run once on a
    small synthetic image) and the newest model's learner (propagation and batch
    inspection predict with it). Nothing is written. ``timings``: seconds per
    backend name and per model-version id; ``models``: the learners loaded.
    """
    t0 = time.perf_counter()
    result = WarmupResult()
    projects = list(Project.objects.order_by("-updated_at")[:WARM_MAX])
    rgb8 = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    for name in dict.fromkeys(p.backend for p in projects):
        _attempt(
            result,
            name,
            lambda name=name: engine.backend_get(name).extract(rgb8),
            f"the {name} backend",
        )
    for project in projects:
        mv = ModelVersion.objects.filter(project=project).order_by("-number").first()
        if mv is not None:
            result.models += _attempt(
                result,
                str(mv.id),
                lambda mv=mv: engine.backend_for(mv, engine.learner_get(mv)),
                f"model {mv.id} of project {project.id}",
            )
    result.seconds = round(time.perf_counter() - t0, 3)
    return result


def serving_warm_start(*, project_ids: list[str] | None = None) -> threading.Thread:
    """Run :func:`serving_warm` in a daemon thread of this process and log one
    summary line when it is done; returns the (started) thread."""
    return _warm_thread(lambda: serving_warm(project_ids=project_ids))


def worker_warm_start() -> threading.Thread:
    """Run :func:`worker_warm` in a daemon thread of this (Celery pool) process
    and log one summary line when it is done; returns the (started) thread."""
    return _warm_thread(worker_warm)


def _warm_thread(warm: Callable[[], WarmupResult]) -> threading.Thread:
    def _run() -> None:
        _state_set(state="warming")
        close_old_connections()
        try:
            result = warm()
        except Exception as exc:  # the database unreachable at start: serve cold
            log.warning("warm-up failed: %s", exc)
            _state_set(state="ready", models=0, failed=1, seconds=0.0)
            return
        finally:
            connection.close()  # this thread's own connection
        _state_set(
            state="ready", models=result.models, failed=len(result.failed), seconds=result.seconds
        )
        log.info("warm-up: %s", {k: v for k, v in asdict(result).items() if k != "timings"})

    thread = threading.Thread(target=_run, name="warmup", daemon=True)
    thread.start()
    return thread
