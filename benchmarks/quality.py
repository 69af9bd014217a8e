"""Quality benchmark: our learner vs the scikit-image scribble baseline, same strokes.

    python -m benchmarks.quality [--datasets magnetic_tile,sd_saliency_900,crackforest]
                                 [--seeds 0,1,2] [--data-root ../shared/datasets] [--skip-sam]
                                 [--view transposed] [--zoom 1.3]

For each dataset the simulated user of :mod:`benchmarks.protocol` paints strokes
on 10 training images, corrects twice, and both methods are evaluated on every
other image. Everything goes through the product's code: strokes are prompt
dicts parsed by ``prompt_from_dict`` and painted by ``prompts_rasterize``; our
rule set is tuned with ``rules_tune`` on the training images only; verdicts and
rates come from ``rules_apply`` / ``backtest_run``.

Pixel IoU of the defect class is *aggregated* over the evaluation images
(sum of intersections / sum of unions). "seg IoU" is the classifier's own
segmentation (defect probability >= 0.5, i.e. the arg-max, no rules), the same
for both methods; "rules IoU" is the label map after the rules (ours: the rule
set tuned on the training images; baseline: threshold 0.5, min-area 30 px).
Escape and overkill come from those rules. Train time covers the 3 training
rounds (cold start + 2 corrections) including feature extraction and predicting
the training images for the corrections; predict time is per evaluation image,
features included, no cache. Wall and CPU seconds are both shown: the CPU is
shared, so wall time is noisy.

``--view transposed`` and ``--zoom`` show the same parts as a camera turned by
a right angle (x and y swapped) or moved closer would: images of the same kind
that none of the product's settings was chosen on.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from benchmarks.quality_api import api_main
from benchmarks.quality_common import (
    DATASETS,
    DEFAULT_DATA_ROOT,
    VIEWS,
    ZOOM_RANGE,
    dataset_load,
    good_parts_table,
    initial_prompts,
    protocol_samples,
    results_mean,
    seeds_parse,
    table_head,
    table_ratio_row,
    table_row,
)
from benchmarks.quality_methods import BaselineMethod, OurMethod, good_parts_run, run_method


def _rho(v: float | None) -> str:
    return "n/a" if v is None else f"{v:+.2f}"


def _review_table(rows, seeds: list[int]) -> None:
    """Does "most uncertain first" put the images with the most pixel errors first?"""
    print(
        "\nReview order: Spearman rho between each evaluation image's uncertainty "
        "(share of inspected pixels near the threshold) and its pixel errors after the rules, "
        f"mean over seeds {','.join(map(str, seeds))}; 0 is a random order, 1 a perfect one.\n"
    )
    print("| dataset | rho ours | rho baseline |\n|---|---|---|")
    for name in dict.fromkeys(r[0] for r in rows):
        mine = [r for r in rows if r[0] == name]
        ours = results_mean([r[3] for r in mine]).review_rho
        base = (
            results_mean([r[4] for r in mine]).review_rho
            if all(r[4] is not None for r in mine)
            else None
        )
        print(f"| {name} | {_rho(ours)} | {_rho(base)} |")


def _anomaly_table(rows, good_rows) -> None:
    """Image AUROC of the anomaly peak and the anomaly map's pixel IoU, where measured."""
    measured = [(r[0], r[1], r[3]) for r in rows if r[3].extra.get("anomaly_iou") is not None]
    if measured:
        print(
            "\nAnomaly evidence (protocol training; bank from the defect-free images and "
            "painted background): image AUROC of the anomaly peak, NG vs OK, and pixel IoU "
            "of the anomaly regions (grown from score >= 1.0) against the defect masks.\n"
        )
        print("| dataset | seed | image AUROC | anomaly pixel IoU |\n|---|---|---|---|")
        for name, seed, r in measured:
            auroc = r.extra.get("anomaly_auroc")
            print(
                f"| {name} | {seed} | {'n/a' if auroc is None else f'{auroc:.3f}'} "
                f"| {r.extra['anomaly_iou']:.3f} |"
            )
    if good_rows:
        print(
            "\nGood parts only: ten defect-free images, no stroke; rules = base, tuned on "
            "those ten (the anomaly rule just above their highest held-out peak); evaluated "
            "on every other image. IoU of (classifier mask or the anomaly regions the "
            "decision reports).\n"
        )
        print(good_parts_table([(name, seed, n, "engine", r) for name, seed, n, r in good_rows]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.quality", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--datasets", default=",".join(DATASETS), help="comma-separated dataset names"
    )
    parser.add_argument(
        "--seeds",
        type=seeds_parse,
        default=[0],
        help="comma-separated protocol seeds (each: its own 10 training images and strokes); "
        "with several, a seed-averaged table follows the per-seed one",
    )
    parser.add_argument("--seed", type=int, default=None, help="one seed (same as --seeds N)")
    parser.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT)
    parser.add_argument(
        "--view",
        choices=VIEWS,
        default="as-is",
        help="the datasets' images as they are, or transposed (x and y swapped, masks too)",
    )
    parser.add_argument(
        "--zoom",
        type=float,
        default=1.0,
        help="resize every image and mask by this factor (e.g. 1.3: a closer camera)",
    )
    parser.add_argument("--skip-sam", action="store_true", help="do not run the SAM timings")
    parser.add_argument(
        "--skip-baseline", action="store_true", help="only our method (quick iterations)"
    )
    parser.add_argument(
        "--backend",
        choices=("classic", "backbone", "sam"),
        default="classic",
        help="our method's feature backend (sam needs --sam-checkpoint)",
    )
    parser.add_argument("--sam-checkpoint", default="", help="SAM .pth file (sam_vit_b_01ec64.pth)")
    parser.add_argument("--sam-model-type", default="vit_b", help="vit_b, vit_l or vit_h")
    parser.add_argument("--sam-device", default="cpu", help="cpu or cuda")
    parser.add_argument("--sam-dtype", default="fp32", help="fp32 or bf16")
    parser.add_argument("--backend-options", default="{}", help="JSON options of the backend")
    parser.add_argument(
        "--no-classic",
        action="store_true",
        help="with another --backend, skip today's classic learner beside it",
    )
    parser.add_argument(
        "--good-parts-only",
        action="store_true",
        help="also run the good-parts-only protocol (ten defect-free images, no stroke) "
        "on datasets with defect-free images; needs a backend with an anomaly bank "
        "(with --via-api: through the REST API too)",
    )
    api = parser.add_argument_group(
        "through the REST API (benchmarks.quality_api): what a user of the product gets"
    )
    api.add_argument(
        "--via-api",
        action="store_true",
        help="drive the protocol through the REST API (an embedded server unless --base-url)",
    )
    api.add_argument("--base-url", default="", help="a running server, http://host:port")
    api.add_argument(
        "--token",
        default=os.environ.get("INSPECTION_TOKEN", ""),
        help="its API token (default $INSPECTION_TOKEN)",
    )
    api.add_argument("--max-eval", type=int, default=0, help="at most N evaluation images (0: all)")
    api.add_argument(
        "--skip-engine", action="store_true", help="with --via-api: not the engine path beside it"
    )
    api.add_argument(
        "--labels",
        choices=("strokes", "clicks"),
        default="strokes",
        help="with --via-api, the cold start's defect labels: skeleton strokes, or one click "
        "per large defect whose mask is accepted as the label (polygons); background and "
        "corrections stay strokes",
    )
    args = parser.parse_args(argv)
    seeds = [args.seed] if args.seed is not None else args.seeds
    if not ZOOM_RANGE[0] <= args.zoom <= ZOOM_RANGE[1]:
        parser.error(f"--zoom must be within {ZOOM_RANGE[0]} and {ZOOM_RANGE[1]}, got {args.zoom}")
    if args.via_api and args.backend == "sam":
        parser.error(
            "--via-api uses the server's SAM settings: run it with --backend classic or backbone"
        )
    backend_options = json.loads(args.backend_options)
    if args.backend == "sam":
        if not args.sam_checkpoint:
            parser.error("--backend sam needs --sam-checkpoint PATH (see the README's checkpoints)")
        backend_options = {
            "model_type": args.sam_model_type,
            "checkpoint": args.sam_checkpoint,
            "device": args.sam_device,
            "dtype": args.sam_dtype,
        }
    try:  # options checked before hours of work; the model itself loads on first use
        ours_name = OurMethod(0, args.backend, backend_options).name
    except Exception as exc:  # noqa: BLE001 - BackendError names the bad option
        parser.error(f"--backend {args.backend}: {exc}")
    if args.labels != "strokes" and not args.via_api:
        parser.error("--labels clicks runs with --via-api")
    if args.via_api:
        if args.base_url and not args.token:
            parser.error("--base-url needs --token (or $INSPECTION_TOKEN)")
        return api_main(args, seeds=seeds, backend_options=backend_options, ours_name=ours_name)

    rows = []  # (dataset, seed, n_eval, ours, baseline, classic or None)
    good_rows = []  # (dataset, seed, n_eval, result) of the good-parts-only protocol
    for name in [d.strip() for d in args.datasets.split(",") if d.strip()]:
        t_load = time.perf_counter()
        samples = dataset_load(args.data_root, name, view=args.view, zoom=args.zoom)
        for seed in seeds:
            train, evaluation = protocol_samples(samples, seed)
            prompts0 = initial_prompts(train, seed)
            print(
                f"[{name} seed {seed}] {len(samples)} images loaded in "
                f"{time.perf_counter() - t_load:.1f}s; train {len(train)} "
                f"({sum(not s.mask.any() for s in train)} defect-free), eval {len(evaluation)}",
                file=sys.stderr,
            )
            method = OurMethod(seed, args.backend, backend_options)
            ours = run_method(method, train, evaluation, prompts0)
            print(f"[{name} seed {seed}] ours: {ours}", file=sys.stderr)
            classic = None
            if args.backend != "classic" and not args.no_classic:
                classic = run_method(OurMethod(seed, "classic"), train, evaluation, prompts0)
                print(f"[{name} seed {seed}] classic: {classic}", file=sys.stderr)
            if args.good_parts_only and sum(not s.mask.any() for s in samples) > 10:
                gp, n_gp = good_parts_run(
                    OurMethod(seed, args.backend, backend_options), samples, seed=seed
                )
                good_rows.append((name, seed, n_gp, gp))
                print(f"[{name} seed {seed}] good parts only: {gp}", file=sys.stderr)
            base = None
            if not args.skip_baseline:
                base = run_method(BaselineMethod(seed), train, evaluation, prompts0)
                print(f"[{name} seed {seed}] baseline: {base}", file=sys.stderr)
            rows.append((name, seed, len(evaluation), ours, base, classic))

    many = len(seeds) > 1
    print()
    print(table_head(with_seed=many))
    for name, seed, n_eval, ours, base, classic in rows:
        label = f"{name} | {seed}" if many else name
        print(table_row(label, n_eval, ours_name, ours))
        if classic is not None:
            print(table_row(label, n_eval, "ours (classic)", classic))
        if base is not None:
            print(table_row(label, n_eval, "baseline (skimage RF)", base))
            print(table_ratio_row(label, ours, base))
    if many:
        print(f"\nMean over seeds {','.join(map(str, seeds))} (ratios of the means):\n")
        print(table_head(with_seed=False))
        for name in dict.fromkeys(r[0] for r in rows):
            mine = [r for r in rows if r[0] == name]
            ours = results_mean([r[3] for r in mine])
            n_eval = "/".join(str(v) for v in dict.fromkeys(r[2] for r in mine))
            print(table_row(name, n_eval, ours_name, ours))
            if all(r[5] is not None for r in mine):
                print(table_row(name, n_eval, "ours (classic)", results_mean([r[5] for r in mine])))
            if all(r[4] is not None for r in mine):
                base = results_mean([r[4] for r in mine])
                print(table_row(name, n_eval, "baseline (skimage RF)", base))
                print(table_ratio_row(name, ours, base))
    _review_table(rows, seeds)
    _anomaly_table(rows, good_rows)
    for name, seed, _, ours, _, _ in rows:
        prefix = f"{name} (seed {seed})" if many else name
        if ours.tune_warning:
            print(f"\n{prefix}: rules_tune warning: {ours.tune_warning}")
        print(
            f"{prefix}: tuned rules: {ours.extra['ruleset']['default']} {ours.extra['ruleset']['rules']}"
        )
    if not args.skip_sam:
        try:
            from benchmarks.sam_timings import sam_timings, timings_table
        except ImportError:
            print("\n(SAM timings: benchmarks/sam_timings.py not available)")
        else:
            print("\nSAM path timings (random-weight vit_b, this CPU):\n")
            print(timings_table(sam_timings()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
