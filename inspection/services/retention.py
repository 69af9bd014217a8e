"""Retention: find and remove orphans (stored files and cache entries no row needs).

A stored file is an orphan when no row names it (Image file/thumbnail/mask,
ModelVersion artifact, Prediction mask/overlay/probabilities, an Inspection's
kept image), or it sits under
``projects/<id>/`` of a project that no longer exists, or it is a partial
write under ``tmp/`` older than an hour. A feature-cache entry is an orphan
when its key belongs to no stored image for the backends in use, current options
or a stored model's own (cache keys are ``cache_key(backend fingerprint,
pixels_hash)``, of the image whole and at each working resolution its project's
models use (:func:`prompting.worksize.work_hash`), for every kind of entry: the
features, the anomaly patch grids, SAM's embedding, the click features).
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.conf import settings
from django.core.files.storage import default_storage
from django.db.models import QuerySet

from inspection.models import (
    Image,
    Inspection,
    Job,
    ModelVersion,
    Prediction,
    Project,
    ShadowDecision,
)
from inspection.services import engine
from inspection.storage import file_delete, names_under

log = logging.getLogger("inspection.retention")

TMP_GRACE_S = 3600  # partial writes younger than this may still be in progress
CACHE_KINDS = ("features", "sam_embedding", "click_features")


@dataclass
class Orphans:
    files: list[str] = field(default_factory=list)  # storage names
    cache: list[str] = field(default_factory=list)  # cache keys
    bytes: int = 0


def _referenced_names() -> set[str]:
    names: set[str] = set()
    for row in Image.objects.values_list("file", "thumbnail", "mask"):
        names.update(n for n in row if n)
    names.update(n for n in ModelVersion.objects.values_list("artifact", flat=True) if n)
    for row in Prediction.objects.values_list("mask", "overlay", "probabilities"):
        names.update(n for n in row if n)
    names.update(
        n for n in Inspection.objects.exclude(image_file="").values_list("image_file", flat=True)
    )
    return names


def backend_fingerprints(*, load_sam: bool = False) -> set[str]:
    """Fingerprints of the feature backends whose cache entries may be live.

    Those of the backends' current options, plus every stored model's own:
    a model trained on other options (or an older feature version) predicts
    with them, so its cache entries are as live as the defaults'. SAM's current
    fingerprint needs the model loaded (checkpoint hash, dtype): only with
    ``load_sam`` (the orphans command), not on every image delete.
    """
    out: set[str] = set(
        ModelVersion.objects.exclude(backend_fingerprint="")
        .values_list("backend_fingerprint", flat=True)
        .distinct()
    )
    names = set(Project.objects.values_list("backend", flat=True)) | {
        settings.DEFAULT_FEATURE_BACKEND
    }
    for name in sorted(names):
        if name == "sam" and not load_sam:
            continue
        try:
            out.add(engine.backend_get(name).fingerprint())
        except Exception as exc:  # backend unavailable here (no checkpoint...)
            log.info("fingerprint of backend %s unavailable: %s", name, exc)
    if load_sam and engine.sam_configured():
        try:
            out.add(engine.sam_model_get().fingerprint)
        except Exception as exc:
            log.info("SAM fingerprint unavailable: %s", exc)
    return out


@dataclass(frozen=True)
class CachedImage:
    """What names an image's cache entries: its pixels' hash, its size (H, W) and
    the working bounds (``work_max_side``) its project and its project's models
    use; an image is cached whole and, where it exceeds a bound, at that size."""

    pixels_hash: str
    shape: tuple[int, int] | None = None
    bounds: frozenset[int] = frozenset()


def cached_images(images: QuerySet[Image]) -> list[CachedImage]:
    """:class:`CachedImage` of every Image row of the queryset ``images``."""
    rows = list(
        images.values_list("pixels_hash", "height", "width", "project_id", "project__work_max_side")
    )
    bounds: dict = {}
    for pid, bound in {(r[3], r[4]) for r in rows}:
        bounds.setdefault(pid, set()).add(int(bound or 0))
    for pid, config in ModelVersion.objects.filter(project_id__in=list(bounds)).values_list(
        "project_id", "config"
    ):
        bounds[pid].add(int((config or {}).get("work_max_side") or 0))
    return [
        CachedImage(ph, (int(h), int(w)), frozenset(bounds[pid])) for ph, h, w, pid, _ in rows if ph
    ]


def cache_keys(images: Iterable[CachedImage | str], *, fingerprints: set[str]) -> set[str]:
    """Every cache key of ``images`` (:class:`CachedImage`, or bare pixel hashes:
    the image whole only) under ``fingerprints``."""
    # deferred: PIL loads on first use
    from prompting.features.backbone.networks import anomaly_stage_sets
    from prompting.features.cache import anomaly_patches_key, cache_key
    from prompting.worksize import work_hash, work_size

    stage_sets = anomaly_stage_sets()
    keys: set[str] = set()
    for image in images:
        image = image if isinstance(image, CachedImage) else CachedImage(image)
        if not image.pixels_hash:
            continue
        names = {image.pixels_hash}
        if image.shape is not None:
            for bound in image.bounds:
                size = work_size(image.shape, bound or None)
                names.add(work_hash(image.pixels_hash, image.shape, size))
        for name in names:
            for fp in fingerprints:
                keys.update(cache_key(fp, name, kind=kind) for kind in CACHE_KINDS)
                keys.update(anomaly_patches_key(fp, stages, name) for stages in stage_sets)
    return keys


def cache_purge(*, images: Iterable[CachedImage | str], load_sam: bool = False) -> int:
    """Remove the cache entries of ``images`` (:class:`CachedImage`, or bare pixel
    hashes) that no remaining image uses, under every fingerprint the cache has
    stored entries for."""
    images = [i if isinstance(i, CachedImage) else CachedImage(i) for i in images]
    still = set(
        Image.objects.filter(pixels_hash__in=[i.pixels_hash for i in images]).values_list(
            "pixels_hash", flat=True
        )
    )
    gone = [i for i in images if i.pixels_hash and i.pixels_hash not in still]
    if not gone:
        return 0
    cache = engine.feature_cache_get()
    # every fingerprint that ever stored an entry: SAM checkpoints (without
    # loading one), older feature versions, options no model uses any more
    fingerprints = backend_fingerprints(load_sam=load_sam) | cache.fingerprints_seen()
    n = 0
    for key in cache_keys(gone, fingerprints=fingerprints):
        engine.memory_forget(key)
        if key in cache:
            cache.delete(key)
            n += 1
    return n


def _shadow_done(name: str) -> bool:
    """Whether an image awaiting the shadow model no longer waits: its decision
    exists, its inspection is gone, or it is older than ``TMP_GRACE_S``."""
    try:
        inspection_id = uuid.UUID(name.rsplit("/", 1)[-1].split(".", 1)[0])
    except ValueError:
        return True
    if ShadowDecision.objects.filter(inspection_id=inspection_id).exists():
        return True
    if not Inspection.objects.filter(id=inspection_id).exists():
        return True
    try:
        age = time.time() - default_storage.get_modified_time(name).timestamp()
    except Exception:
        return True
    return age > TMP_GRACE_S


def orphans_find(*, load_sam: bool = True) -> Orphans:
    """Every orphan file and cache entry (nothing is deleted)."""
    out = Orphans()
    referenced = _referenced_names()
    projects = {str(p) for p in Project.objects.values_list("id", flat=True)}
    active_batches = set()

    for job_id, project_id in Job.objects.filter(state__in=Job.ACTIVE_STATES).values_list(
        "id", "project_id"
    ):
        active_batches.add(f"projects/{project_id}/batches/{job_id}/")
    for name in names_under("projects"):
        parts = name.split("/")
        if len(parts) < 3:
            out.files.append(name)
            continue
        if parts[1] not in projects:
            out.files.append(name)  # the project is gone
        elif parts[2] == "batches":
            if not any(name.startswith(b) for b in active_batches):
                out.files.append(name)  # inputs of a finished batch
        elif parts[2] == "shadow":
            if _shadow_done(name):
                out.files.append(name)  # decided, or its task was lost
        elif name not in referenced:
            out.files.append(name)
    now = time.time()
    for name in names_under("tmp"):
        try:
            age = now - default_storage.get_modified_time(name).timestamp()
        except Exception:
            age = TMP_GRACE_S + 1
        if age > TMP_GRACE_S:
            out.files.append(name)
    for name in out.files:
        with contextlib.suppress(Exception):
            out.bytes += default_storage.size(name)
    cache = engine.feature_cache_get()
    live = cache_keys(
        cached_images(Image.objects.all()), fingerprints=backend_fingerprints(load_sam=load_sam)
    )
    for path in sorted(cache.root.glob("*.npy")):
        key = path.name[: -len(".npy")]
        if key not in live:
            out.cache.append(key)
            out.bytes += path.stat().st_size
    return out


def orphans_delete(orphans: Orphans) -> int:
    """Delete what :func:`orphans_find` found; returns how many entries went."""
    for name in orphans.files:
        file_delete(name)
    cache = engine.feature_cache_get()
    for key in orphans.cache:
        cache.delete(key)
    return len(orphans.files) + len(orphans.cache)
