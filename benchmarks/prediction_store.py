"""What storing one prediction costs in a propagation chunk: today's code beside
the previous one, in one process, interleaved image by image.

    python -m benchmarks.prediction_store [--dataset sd_saliency_900] [--images 60] [--runs 5]

A project of ``--images`` images (``benchmarks.propagation.project_build``:
the dataset's images and their flipped/rotated variants, the protocol's strokes
on ten) is built in a temporary embedded setup (SQLite, jobs run in the
process) and one Run trains its model and predicts every image. Then each
image's probabilities are computed once, and per run and image both ways of
storing its prediction run on the same arrays, in alternating order, each
after the image's earlier row and files are removed (a new model's chunk
finds none):

- before: ``benchmarks.predict_reference.prediction_store_reference`` (the
  code of commit a8e0d77: blob measures by ``regionprops``, the PNGs by PIL,
  a lookup and a transaction per row);
- now: ``inspection.services.predictions.prediction_store`` as a chunk calls it.

Printed: the median milliseconds per image of each, and whether every stored
field (verdict, severity, reasons, blobs, uncertainty, anomaly peak) and every
stored file's content (mask and overlay pixels, the probability file's bytes)
is the same.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import propagation as prop
from benchmarks.propagation_engine import cpu_name
from benchmarks.quality_common import DEFAULT_DATA_ROOT, dataset_load

FIELDS = ("verdict", "severity", "reasons", "blobs", "uncertainty", "anomaly_peak")


def _django_setup(var: Path) -> None:
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "inspection.settings",
            "DEBUG": "1",
            "CELERY_TASK_ALWAYS_EAGER": "1",
            "VAR_DIR": str(var),
            "STORAGE_ROOT": str(var / "media"),
            "FEATURE_CACHE_DIR": str(var / "cache"),
            "FEATURE_CACHE_MAX_BYTES": str(8 * 1024**3),
            "FEATURE_PREPARE": "0",
            "UPLOAD_MAX_FILES": "1000",
            "LOG_LEVEL": "WARNING",
        }
    )
    for name in ("DATABASE_URL", "CELERY_BROKER_URL"):
        os.environ.pop(name, None)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _pixels(name: str) -> np.ndarray:
    from PIL import Image

    from inspection.storage import bytes_read

    return np.asarray(Image.open(io.BytesIO(bytes_read(name))))


def _stored(pred) -> tuple[dict, list]:
    from inspection.storage import bytes_read

    fields = {k: getattr(pred, k) for k in FIELDS}
    files = [
        _pixels(pred.mask.name),
        _pixels(pred.overlay.name),
        bytes_read(pred.probabilities.name),
    ]
    return fields, files


def _forget(image, model_version, ruleset) -> None:
    """Remove the image's prediction row and files (outside the timing)."""
    from inspection.models import Prediction
    from inspection.storage import file_delete

    for pred in Prediction.objects.filter(
        image=image, model_version=model_version, ruleset=ruleset
    ):
        for f in (pred.mask, pred.overlay, pred.probabilities):
            file_delete(f.name)
        pred.delete()


def bench(samples, *, n_images: int, runs: int) -> dict:
    from benchmarks.predict_reference import prediction_store_reference
    from inspection.models import Job, ModelVersion
    from inspection.services import engine
    from inspection.services.predictions import prediction_store
    from inspection.services.rulesets import ruleset_active_get

    p = prop.project_build(samples, n_images)
    prop._run_timed(p, visible=p.ids[: prop.N_VISIBLE])
    mv = ModelVersion.objects.filter(project=p.project).order_by("-created_at").first()
    ruleset = ruleset_active_get(project=p.project)
    job = Job.objects.filter(project=p.project).order_by("-created_at").first()
    learner = engine.learner_get(mv)
    backend = engine.backend_for(mv, learner)
    cache = engine.feature_cache_get()
    inputs = []
    for image in p.project.images.select_related("project").order_by("created_at"):
        rgb8, phash = engine.image_pixels_load(image)
        probs = learner.predict_proba(rgb8, backend=backend, cache=cache, image_hash=phash)
        inputs.append((image, rgb8, probs, learner.anomaly_map(rgb8, backend=backend)))

    def before(image, rgb8, probs, anomaly):
        return prediction_store_reference(
            image=image,
            model_version=mv,
            ruleset=ruleset,
            probabilities=probs,
            rgb8=rgb8,
            job=job,
            anomaly=anomaly,
        )[0]

    def now(image, rgb8, probs, anomaly):
        return prediction_store(
            image=image,
            model_version=mv,
            ruleset=ruleset,
            probabilities=probs,
            rgb8=rgb8,
            job=job,
            anomaly=anomaly,
            replace=False,
        )[0]

    times: dict[str, list[float]] = {"before": [], "now": []}
    differ = {"fields": 0, "mask": 0, "overlay": 0, "probabilities": 0}
    blobs = 0
    for run in range(runs):
        for i, args in enumerate(inputs):
            order = [("before", before), ("now", now)]
            if (run + i) % 2:
                order.reverse()
            stored = {}
            for label, store in order:
                _forget(args[0], mv, ruleset)
                t0 = time.perf_counter()
                pred = store(*args)
                times[label].append(time.perf_counter() - t0)
                if run == 0:
                    stored[label] = _stored(pred)
            if run == 0:
                (fa, files_a), (fb, files_b) = stored["before"], stored["now"]
                differ["fields"] += int(fa != fb)
                differ["mask"] += int(not np.array_equal(files_a[0], files_b[0]))
                differ["overlay"] += int(not np.array_equal(files_a[1], files_b[1]))
                differ["probabilities"] += int(files_a[2] != files_b[2])
                blobs += len(fb["blobs"])
    return {
        "n_images": len(inputs),
        "size": inputs[0][1].shape[:2],
        "blobs": blobs,
        "runs": runs,
        "before_ms": statistics.median(times["before"]) * 1000,
        "now_ms": statistics.median(times["now"]) * 1000,
        "differ": differ,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="sd_saliency_900")
    parser.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT)
    parser.add_argument("--images", type=int, default=60, help="project size")
    parser.add_argument("--runs", type=int, default=5, help="repetitions (medians reported)")
    args = parser.parse_args(argv)
    samples = dataset_load(args.data_root, args.dataset)
    var = Path(tempfile.mkdtemp(prefix="bench-store-"))
    try:
        _django_setup(var)
        r = bench(samples, n_images=args.images, runs=args.runs)
    finally:
        shutil.rmtree(var, ignore_errors=True)
    h, w = r["size"]
    print(
        f"{args.dataset}: {r['n_images']} images of {w}x{h} ({r['blobs']} blobs), "
        f"{r['runs']} runs, CPU {cpu_name()}, 1-min load {os.getloadavg()[0]:.1f}"
    )
    print("| storing a prediction (median per image) | before | now | speed-up |")
    print("|---|---|---|---|")
    print(
        f"| rules, overlay, mask PNG, files, row | {r['before_ms']:.1f} ms | "
        f"{r['now_ms']:.1f} ms | {r['before_ms'] / r['now_ms']:.2f}x |"
    )
    d = r["differ"]
    print(
        f"images whose stored fields differ: {d['fields']}; mask pixels differ: {d['mask']}; "
        f"overlay pixels differ: {d['overlay']}; probability files differ: {d['probabilities']}"
    )
    return 0 if not any(d.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
