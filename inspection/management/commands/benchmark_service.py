"""Service overhead: API-side latency of an inspection and of a segment call
against the engine's own time for the same work, p50 and p95.

Runs in-process (Django's test client through the full middleware and DRF
stack, no network) on the configured database, in a scratch project that is
deleted afterwards. Use a scratch VAR_DIR to keep your data apart::

    VAR_DIR=$(mktemp -d) DEBUG=1 .venv/bin/python manage.py migrate -v0
    VAR_DIR=... DEBUG=1 .venv/bin/python manage.py benchmark_service --repeats 30 [--sam-random]
"""

from __future__ import annotations

import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.test import override_settings

from inspection.models import Job, Project
from inspection.services.images import image_upload
from inspection.services.projects import project_create, project_delete
from inspection.services.prompts import prompt_create

DEFAULT_DATASET = Path(settings.BASE_DIR) / ".." / "shared" / "datasets" / "magnetic_tile"


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def _strokes(mask: np.ndarray) -> list[dict]:
    from scipy import ndimage

    h, w = mask.shape
    out = []
    if mask.any():
        ys, xs = np.nonzero(mask)
        i = len(xs) // 2
        out.append({"kind": "point", "label": "defect", "points": [[float(xs[i]), float(ys[i])]]})
    near = ndimage.binary_dilation(mask, iterations=12) if mask.any() else mask
    rows = [y for y in range(8, h - 8) if not near[y].any()]
    if rows:
        y = rows[len(rows) // 2]
        out.append(
            {"kind": "stroke", "label": "background", "points": [[4, y], [w - 5, y]], "radius": 2}
        )
    return out


class Command(BaseCommand):
    help = "Print API-side vs engine latency (p50/p95) of inspect and segment calls."

    def add_arguments(self, parser):
        parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
        parser.add_argument("--images", type=int, default=10, help="training images")
        parser.add_argument("--repeats", type=int, default=30)
        parser.add_argument(
            "--sam-checkpoint", default="", help="SAM checkpoint for the segment benchmark"
        )
        parser.add_argument("--sam-model-type", default="vit_b")
        parser.add_argument(
            "--sam-random",
            action="store_true",
            help="use a randomly initialised SAM of --sam-model-type",
        )

    def handle(
        self, *args, dataset, images, repeats, sam_checkpoint, sam_model_type, sam_random, **opts
    ):
        from PIL import Image as PILImage
        from rest_framework.authtoken.models import Token
        from rest_framework.test import APIClient

        from inspection.services.training import training_run

        files = sorted((dataset / "images").glob("*.png"))
        if len(files) < images + 1:
            raise CommandError(f"need at least {images + 1} images in {dataset / 'images'}")
        rng = np.random.default_rng(0)
        picks = [files[i] for i in rng.choice(len(files), images + 1, replace=False)]
        train_files, probe = picks[:-1], picks[-1]
        user = get_user_model().objects.create_user(username=f"bench-{uuid.uuid4().hex[:8]}")
        project = project_create(
            user=user, name="benchmark (scratch)", classes=["defect"], cold_start_min=1
        )
        tmp = tempfile.TemporaryDirectory()
        try:
            for path in train_files:
                mask_file = dataset / "masks" / path.name
                image = image_upload(
                    project=project,
                    data=path.read_bytes(),
                    filename=path.name,
                    mask=mask_file.read_bytes() if mask_file.exists() else None,
                ).image
                mask = (
                    np.asarray(PILImage.open(mask_file)) > 0
                    if mask_file.exists()
                    else np.zeros((image.height, image.width), bool)
                )
                for p in _strokes(mask):
                    prompt_create(image=image, data=p, user=user)
            job = Job.objects.create(project=project, kind="train")
            t0 = time.perf_counter()
            training_run(job_id=job.id)
            job.refresh_from_db()
            if job.state != "succeeded":
                raise CommandError(f"training failed: {job.error}")
            self.stdout.write(
                f"trained on {len(train_files)} images in {time.perf_counter() - t0:.1f} s"
            )

            token, _ = Token.objects.get_or_create(user=user)
            client = APIClient(HTTP_HOST=(settings.ALLOWED_HOSTS or ["localhost"])[0].lstrip("."))
            client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
            self._inspect(client, project, probe, repeats)
            if sam_checkpoint or sam_random:
                if sam_random:
                    sam_checkpoint = self._random_sam(sam_model_type, Path(tmp.name))
                with override_settings(
                    SAM_CHECKPOINT=sam_checkpoint, SAM_MODEL_TYPE=sam_model_type
                ):
                    self._segment(client, project, repeats)
            else:
                self.stdout.write("segment: skipped (pass --sam-checkpoint PATH or --sam-random)")
        finally:
            project_delete(project=Project.objects.get(id=project.id))
            user.delete()
            tmp.cleanup()

    def _report(self, name: str, api: list[float], engine: list[float]) -> None:
        a50, a95, e50, e95 = _pct(api, 50), _pct(api, 95), _pct(engine, 50), _pct(engine, 95)
        # calls are interleaved, so the paired difference cancels most CPU noise
        paired = float(np.median(np.asarray(api) - np.asarray(engine)))
        overhead = paired / e50 * 100 if e50 else float("nan")
        self.stdout.write(
            f"{name:<8} api p50 {a50:8.1f} ms  p95 {a95:8.1f} ms | engine p50 {e50:8.1f} ms  p95 {e95:8.1f} ms"
            f" | service overhead {paired:+6.1f} ms = {overhead:+5.1f} % of engine p50"
        )

    def _inspect(self, client, project, probe: Path, repeats: int) -> None:
        from django.core.files.uploadedfile import SimpleUploadedFile

        from inspection.services import engine
        from prompting.images import image_decode, image_to_rgb8
        from prompting.pipeline import inspect_image
        from prompting.rules import ruleset_validate

        project.refresh_from_db()
        data = probe.read_bytes()
        mv = project.deployed_model
        learner, backend = engine.learner_get(mv), engine.backend_get(mv.backend)
        rules = ruleset_validate(project.active_ruleset.data)
        url = f"/api/v1/projects/{project.id}/inspect/"
        api, eng = [], []
        for i in range(repeats + 2):
            t0 = time.perf_counter()
            r = client.post(url, {"file": SimpleUploadedFile(probe.name, data)}, format="multipart")
            t_api = (time.perf_counter() - t0) * 1000
            if r.status_code != 200:
                raise CommandError(f"inspect answered {r.status_code}: {r.content[:300]!r}")
            # the engine's own time for the same work: bytes in, decision out
            t0 = time.perf_counter()
            decoded = image_decode(data)
            inspect_image(
                image_to_rgb8(decoded.pixels, bit_depth=decoded.bit_depth),
                learner=learner,
                backend=backend,
                ruleset=rules,
                px_per_mm=project.px_per_mm,
            )
            t_eng = (time.perf_counter() - t0) * 1000
            if i >= 2:  # warm-up
                api.append(t_api)
                eng.append(t_eng)
        self._report("inspect", api, eng)
        self.stdout.write(f"         (median of {repeats}; image {probe.name})")

    def _segment(self, client, project, repeats: int) -> None:
        from inspection.services import engine
        from inspection.services.segment import _embedding_key, embedding_compute, embedding_start
        from prompting.prompts import prompt_from_dict
        from prompting.segment import segment_prompts

        image = project.images.order_by("created_at").first()
        job = embedding_start(image=image)
        embedding_compute(job_id=job.id)
        job.refresh_from_db()
        if job.state != "succeeded":
            raise CommandError(f"embedding failed: {job.error}")
        model = engine.sam_model_get()
        embedding = engine.embedding_get(_embedding_key(model, image.pixels_hash))
        body = {
            "prompts": [
                {
                    "kind": "point",
                    "label": "defect",
                    "points": [[image.width / 2, image.height / 2]],
                }
            ],
            "output": "rle",
        }
        prompts = [
            prompt_from_dict(p, classes=["defect"], width=image.width, height=image.height)
            for p in body["prompts"]
        ]
        url = f"/api/v1/images/{image.id}/segment/"
        api, eng = [], []
        for i in range(repeats + 2):
            t0 = time.perf_counter()
            r = client.post(url, body, format="json")
            t_api = (time.perf_counter() - t0) * 1000
            if r.status_code != 200:
                raise CommandError(f"segment answered {r.status_code}: {r.content[:300]!r}")
            t0 = time.perf_counter()
            segment_prompts(model, embedding, prompts, target="defect")
            t_eng = (time.perf_counter() - t0) * 1000
            if i >= 2:
                api.append(t_api)
                eng.append(t_eng)
        self._report("segment", api, eng)

    def _random_sam(self, model_type: str, folder: Path) -> str:
        import torch
        from segment_anything import sam_model_registry

        torch.manual_seed(0)
        path = folder / f"random_{model_type}.pth"
        torch.save(sam_model_registry[model_type](checkpoint=None).state_dict(), path)
        self.stdout.write(
            f"random {model_type} checkpoint written ({path.stat().st_size / 1e6:.0f} MB)"
        )
        return str(path)
