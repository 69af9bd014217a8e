"""Large camera frames at the working resolution against the same frames whole: the
time of a Run's training and of one line prediction, and what it costs in mask IoU.

    python -m benchmarks.work_size [--dataset crackforest] [--seed 0] [--zoom 5]
                                   [--images 4] [--repeats 2] [--backend backbone]
                                   [--bounds 1024,512,0] [--via-api]

The protocol's ten training images with the strokes a user ends with (the first
strokes and two rounds of corrections, painted at the images' own size by the
quality protocol) and the first ``--images`` evaluation images are enlarged
``--zoom`` times (Lanczos; strokes and truths at the nearest pixel), as a
higher-resolution camera would see the same surface. One
model per ``--bounds`` entry learns from the same enlarged images and strokes:
the product's default bound (``prompting.worksize.WORK_MAX_SIDE``, 1024), a
smaller one, and every image whole (a project's 0). Each evaluation frame is then
predicted by every model in turn
(features, classifier, anomaly map; no cache). Prints the training wall times,
the prediction medians and the masks' IoU (p >= 0.5) against the enlarged truth.

``--via-api``: what a user gets instead. The quality protocol runs through the
REST API of an embedded server on the enlarged images, once per bound (a project
with that ``work_max_side``): upload, the first strokes enlarged, three Runs with
the corrections the simulated user paints on the server's masks, deploy, tune,
and ``POST /inspect/`` for every evaluation frame. Prints the three Runs' wall
time, the mean ``/inspect/`` wall time and the evaluation masks' IoU.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from benchmarks.propagation_engine import cpu_name
from benchmarks.quality_common import (
    CLASSES,
    DEFAULT_DATA_ROOT,
    dataset_load,
    initial_prompts,
    prompts_paint,
    protocol_samples,
)
from benchmarks.quality_methods import OurMethod, protocol_train


def _zoom(pixels: np.ndarray, labels: np.ndarray, zoom: int) -> tuple[np.ndarray, np.ndarray]:
    from prompting.worksize import work_pixels

    h, w = labels.shape
    big = work_pixels(pixels, (h * zoom, w * zoom))  # Lanczos, up as well as down
    return big, np.repeat(np.repeat(labels, zoom, axis=0), zoom, axis=1)


def _stroke_zoom(stroke: dict, zoom: int) -> dict:
    """A stroke on the image enlarged ``zoom`` times (pixel centres map to centres)."""
    points = [[(x + 0.5) * zoom - 0.5, (y + 0.5) * zoom - 0.5] for x, y in stroke["points"]]
    return {**stroke, "points": points, "radius": float(stroke["radius"]) * zoom}


def _via_api(args, train, evaluation, bounds: list[int]) -> int:
    """The quality protocol through the REST API, one project per bound."""
    from benchmarks.api_client import Client, embedded_server, token_get
    from benchmarks.quality_api import run_via_api
    from benchmarks.quality_common import Sample
    from prompting.images import pixels_hash

    def big(s: Sample) -> Sample:
        rgb, mask = _zoom(s.rgb, s.mask.astype(np.uint8), args.zoom)
        return Sample(s.image_id, rgb, mask > 0, pixels_hash(rgb))

    prompts = {
        k: [_stroke_zoom(st, args.zoom) for st in v]
        for k, v in initial_prompts(train, args.seed).items()
    }
    train, evaluation = [big(s) for s in train], [big(s) for s in evaluation]
    rows = []
    with embedded_server(backend=args.backend) as (url, user, password):
        client = Client(url)
        client.token = token_get(client, user, password)
        for bound in bounds:
            run = run_via_api(
                client,
                name=f"{args.dataset} x{args.zoom}",
                seed=args.seed,
                train=train,
                evaluation=evaluation,
                prompts0=prompts,
                backend=args.backend,
                project_options={"work_max_side": bound},
            )
            pid = run.result.extra["project"]
            models = client.get(f"/api/v1/projects/{pid}/models/")["results"]
            rows.append((bound, run, {m["config"].get("work_max_side") for m in models}))
    print()
    print(
        "| working resolution | the models' bound | 3 Runs (wall) | /inspect/ per frame (mean) "
        "| seg IoU |"
    )
    print("|---|---|---|---|---|")
    for bound, run, trained in rows:
        r = run.result
        name = f"{bound} px" if bound else "whole (0)"
        seen = ", ".join(str(b) for b in sorted(trained))
        print(f"| {name} | {seen} | {r.train_s:.1f} s | {r.predict_s:.2f} s | {r.iou_05:.3f} |")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="crackforest")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--zoom", type=int, default=5)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--backend", default="backbone", choices=("classic", "backbone"))
    parser.add_argument(
        "--bounds", default="1024,512,0", help="working resolutions (px) to compare; 0: whole"
    )
    parser.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT)
    parser.add_argument("--via-api", action="store_true", help="through the REST API")
    args = parser.parse_args(argv)

    from prompting.features import backend_create
    from prompting.learner import TrainingImage, learner_train
    from prompting.worksize import WORK_MAX_SIDE

    train, evaluation = protocol_samples(dataset_load(args.data_root, args.dataset), args.seed)
    if args.via_api:
        h, w = train[0].mask.shape
        print(
            f"{args.dataset} seed {args.seed} through the REST API: images enlarged "
            f"{args.zoom}x (the first about {w * args.zoom}x{h * args.zoom}); backend "
            f"{args.backend}; {cpu_name()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
        )
        bounds = [int(b) for b in args.bounds.split(",") if b.strip()]
        return _via_api(args, train, evaluation[: args.images], bounds)
    # the strokes after the protocol's correction rounds, at the images' own size
    prompts = protocol_train(
        OurMethod(args.seed, args.backend), train, initial_prompts(train, args.seed)
    ).prompts
    images = []
    for s in train:
        big, labels = _zoom(s.rgb, prompts_paint(prompts[s.image_id], s.mask.shape), args.zoom)
        images.append(TrainingImage(s.image_id, big, labels, all_background=not s.mask.any()))
    frames = [_zoom(s.rgb, s.mask.astype(np.int16), args.zoom) for s in evaluation[: args.images]]
    h, w = frames[0][1].shape
    print(
        f"{args.dataset} seed {args.seed}: {len(images)} training and {len(frames)} evaluation "
        f"images enlarged {args.zoom}x to about {w}x{h} ({h * w / 1e6:.1f} MP); backend "
        f"{args.backend}; {cpu_name()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
    )
    backend = backend_create(args.backend)
    bounds = [int(b) for b in args.bounds.split(",") if b.strip()]
    paths = {
        "whole (0)" if not b else f"{b} px" + (" (default)" if b == WORK_MAX_SIDE else ""): b
        or None
        for b in bounds
    }
    learners, train_s = {}, {}
    for name, bound in paths.items():
        t0 = time.perf_counter()
        learners[name] = learner_train(
            images, classes=CLASSES, backend=backend, seed=args.seed, work_max_side=bound
        ).learner
        train_s[name] = time.perf_counter() - t0
    for learner in learners.values():  # the network's first pass loads it: not timed
        learner.predict_proba(frames[0][0][:64, :64], backend=backend)
    times: dict[str, list[float]] = {name: [] for name in paths}
    inter = dict.fromkeys(paths, 0)
    union = dict.fromkeys(paths, 0)
    for r in range(args.repeats):
        for pixels, truth in frames:
            for name, learner in learners.items():  # interleaved: the same load for both
                t0 = time.perf_counter()
                probs = learner.predict_proba(pixels, backend=backend)
                learner.anomaly_map(pixels, backend=backend)
                times[name].append(time.perf_counter() - t0)
                if r == 0:
                    mask, gt = probs[1] >= 0.5, truth > 0
                    inter[name] += int((mask & gt).sum())
                    union[name] += int((mask | gt).sum())
    print()
    print("| working resolution | training (10 images) | predict / frame (median) | mask IoU |")
    print("|---|---|---|---|")
    for name in paths:
        print(
            f"| {name} | {train_s[name]:.1f} s | {np.median(times[name]):.2f} s "
            f"| {inter[name] / max(union[name], 1):.3f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
