"""Command line: ``python -m prompting train|inspect|segment``.

    python -m prompting train --images DIR --prompts prompts.json --classes scratch \\
        --backend classic --out model.npz
    python -m prompting inspect --model model.npz --rules rules.json --images DIR \\
        --format json --out results.json
    python -m prompting inspect --bundle line4-model3-rules5.zip --images DIR

prompts.json (strokes painted per image file of --images; coordinates in pixels, x,y)::

    {
      "classes": ["scratch"],                       # optional when --classes is given
      "images": {
        "part_001.png": [
          {"kind": "stroke", "label": "scratch", "points": [[10, 12], [40, 15]], "radius": 3},
          {"kind": "stroke", "label": "background", "points": [[5, 90], [120, 92]], "radius": 5},
          {"kind": "point", "label": "scratch", "points": [[33, 14]]}
        ],
        "part_002.png": [...]
      },
      "ok_images": ["part_007.png"]                 # optional: images marked defect-free
    }

Labels are a class name or "background"; kinds are "stroke", "point" (a disc of
radius 2; "positive": false paints background) and "box" (SAM only, not painted).
Exit status: 0 success, 2 bad input (message on stderr), 1 unexpected error.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from prompting.bundle import bundle_read
from prompting.errors import PromptingError
from prompting.features import backend_create
from prompting.inputcheck import DEFAULT_MARGIN, MAX_MARGIN
from prompting.worksize import WORK_MAX_SIDE, work_bound_error

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


def _image_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise PromptingError(f"--images {folder} is not a directory")
    files = sorted(
        p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
    )
    if not files:
        raise PromptingError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {folder}")
    return files


def _load_rgb(path: Path) -> tuple[np.ndarray, str]:
    # deferred: PIL loads on first use
    from prompting.images import image_decode, image_to_rgb8, pixels_hash

    rgb = image_to_rgb8(image_decode(path).pixels)
    return rgb, pixels_hash(rgb)


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except OSError as exc:
        raise PromptingError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise PromptingError(f"{what} {path} is not valid JSON: {exc}") from None


def _backend_options(
    args: argparse.Namespace, stored: dict[str, Any] | None = None
) -> dict[str, Any]:
    options = dict(stored or {})
    if getattr(args, "checkpoint", None):
        options["checkpoint"] = args.checkpoint
    if getattr(args, "model_type", None):
        options["model_type"] = args.model_type
    if getattr(args, "device", None):
        options["device"] = args.device
    return options


def _progress(iterable, *, total: int, desc: str, quiet: bool):
    # deferred: only the command line's progress bars need tqdm
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, file=sys.stderr, disable=quiet, unit="img")


def cmd_train(args: argparse.Namespace) -> int:
    # deferred: scikit-image and scipy load on first use
    from prompting.learner import TrainingImage, learner_train
    from prompting.prompts import prompt_from_dict, prompts_rasterize

    spec = _read_json(args.prompts, "prompts file")
    if not isinstance(spec, dict) or not isinstance(spec.get("images"), dict):
        raise PromptingError('prompts file must be an object with "images": {file name: [prompts]}')
    classes = [c.strip() for c in args.classes.split(",")] if args.classes else spec.get("classes")
    if not classes or not all(isinstance(c, str) and c for c in classes):
        raise PromptingError('give the classes with --classes a,b or "classes" in the prompts file')
    ok_images = set(spec.get("ok_images") or [])
    backend = backend_create(args.backend, **_backend_options(args))
    folder = Path(args.images)
    images = []
    names = sorted(set(spec["images"]) | ok_images)
    for name in _progress(names, total=len(names), desc="load", quiet=args.quiet):
        path = folder / name
        if not path.is_file():
            raise PromptingError(f"prompts file names {name!r}, not found in {folder}")
        rgb, digest = _load_rgb(path)
        raw = spec["images"].get(name, [])
        if not isinstance(raw, list):
            raise PromptingError(f"prompts for {name!r} must be a list")
        prompts = []
        for i, d in enumerate(raw):
            try:
                prompts.append(
                    prompt_from_dict(d, classes=classes, width=rgb.shape[1], height=rgb.shape[0])
                )
            except PromptingError as exc:
                raise PromptingError(f"{name} prompt {i}: {exc}") from None
        labels = prompts_rasterize(prompts, shape=rgb.shape[:2], classes=classes)
        images.append(TrainingImage(name, rgb, labels, digest, all_background=name in ok_images))

    # deferred: only the command line's progress bars need tqdm
    from tqdm import tqdm

    with tqdm(total=100, desc="train", file=sys.stderr, disable=args.quiet, unit="%") as bar:

        def progress(fraction: float, message: str) -> None:
            bar.n = round(100 * fraction)
            bar.set_postfix_str(message)
            bar.refresh()

        result = learner_train(
            images,
            classes=classes,
            backend=backend,
            seed=args.seed,
            progress=progress,
            work_max_side=args.work_max_side or None,
        )
    result.learner.save(args.out)
    summary = {
        "model": str(args.out),
        "backend": backend.name,
        "classes": classes,
        "images": len(images),
        "pixels_per_class": result.pixels_per_class,
        "loo_iou": result.loo_iou,
        "work_max_side": result.learner.work_max_side or 0,
        "timings": {k: round(v, 3) for k, v in result.timings.items()},
    }
    print(json.dumps(summary, indent=2))
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    # deferred: scikit-image and scipy load on first use
    from prompting.learner import Learner
    from prompting.pipeline import inspect_image
    from prompting.rules import DEFAULT_RULESET, ruleset_validate

    px_per_mm = args.px_per_mm
    input_mode, input_margin = "flag", DEFAULT_MARGIN
    if args.input_margin is not None and not 0 <= args.input_margin <= MAX_MARGIN:
        raise PromptingError(f"--input-margin must be 0..{MAX_MARGIN}, got {args.input_margin}")
    if args.bundle:
        if args.model or args.rules:
            raise PromptingError(
                "--bundle carries the model and the rules: drop --model and --rules"
            )
        bundle = bundle_read(args.bundle)
        learner, ruleset = bundle.learner, bundle.ruleset
        if px_per_mm is None:
            px_per_mm = bundle.px_per_mm
        input_mode, input_margin = bundle.input_mode, bundle.input_margin
    else:
        if not args.model:
            raise PromptingError("give --model (and --rules), or --bundle")
        learner = Learner.load(args.model)
        ruleset = ruleset_validate(
            _read_json(args.rules, "rules file") if args.rules else DEFAULT_RULESET
        )
    backend = backend_create(
        learner.backend_name, **_backend_options(args, learner.backend_options)
    )
    files = _image_files(Path(args.images))
    records = []
    for path in _progress(files, total=len(files), desc="inspect", quiet=args.quiet):
        t0 = time.perf_counter()
        try:
            rgb, digest = _load_rgb(path)
        except PromptingError as exc:
            records.append({"image": path.name, "verdict": None, "error": str(exc)})
            continue
        result = inspect_image(
            rgb,
            learner=learner,
            backend=backend,
            ruleset=ruleset,
            px_per_mm=px_per_mm,
            image_hash=digest,
            input_mode=args.input_check or input_mode,
            input_margin=input_margin if args.input_margin is None else args.input_margin,
        )
        record = {"image": path.name, **result.decision.to_dict()}
        record["timings_ms"] = {k: round(v, 1) for k, v in result.timings.items()}
        record["timings_ms"]["decode_ms"] = round(
            (time.perf_counter() - t0) * 1000 - result.timings["total_ms"], 1
        )
        records.append(record)
    text = _format(records, args.format)
    if args.out:
        Path(args.out).write_text(text)
    else:
        sys.stdout.write(text)
    ng = sum(r.get("verdict") == "NG" for r in records)
    print(f"{len(records)} images: {ng} NG, {len(records) - ng} OK/failed", file=sys.stderr)
    return 0


def _format(records: list[dict], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(records, indent=2, default=_json_default) + "\n"
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        ["image", "verdict", "severity", "blobs", "reasons", "input_issues", "predict_ms", "error"]
    )
    for r in records:
        reasons = "; ".join(str(x.get("message", x)) for x in r.get("reasons", []) or [])
        issues = "; ".join(i["message"] for i in (r.get("input_check") or {}).get("issues", []))
        writer.writerow(
            [
                r["image"],
                r.get("verdict") or "",
                r.get("severity") or "",
                len(r.get("blobs", []) or []),
                reasons,
                issues,
                (r.get("timings_ms") or {}).get("predict_ms", ""),
                r.get("error", ""),
            ]
        )
    return out.getvalue()


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def cmd_segment(args: argparse.Namespace) -> int:
    # deferred: scipy and PIL load on first use
    from prompting.images import png_encode
    from prompting.learner import Learner

    learner = Learner.load(args.model)
    backend = backend_create(
        learner.backend_name, **_backend_options(args, learner.backend_options)
    )
    rgb, digest = _load_rgb(Path(args.image))
    probs = learner.predict_proba(rgb, backend=backend, image_hash=digest)
    label_map = np.argmax(probs, axis=0).astype(np.uint8)
    Path(args.out).write_bytes(png_encode(label_map))
    counts = {c: int((label_map == k + 1).sum()) for k, c in enumerate(learner.classes)}
    print(json.dumps({"out": str(args.out), "pixels_per_class": counts}))
    return 0


def _work_max_side(text: str) -> int:
    """``--work-max-side``: an int that is a working resolution (argparse's error else)."""
    value = int(text)
    error = work_bound_error(value)
    if error:
        raise argparse.ArgumentTypeError(f"{value}: {error}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m prompting",
        description="Few-shot visual inspection engine: train from strokes, inspect images.",
        epilog=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="command", required=True)

    def sam_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--checkpoint", help="SAM checkpoint (.pth) for --backend sam")
        p.add_argument("--model-type", help="SAM model type (vit_b, vit_l, vit_h, ...)")
        p.add_argument("--device", help="torch device for SAM (cpu, cuda)")

    t = sub.add_parser("train", help="train a model from painted strokes (see prompts.json below)")
    t.add_argument("--images", required=True, help="folder with the images named in prompts.json")
    t.add_argument(
        "--prompts", required=True, type=Path, help="prompts.json (shape in the main --help)"
    )
    t.add_argument(
        "--classes", help="comma-separated defect classes (default: prompts.json classes)"
    )
    t.add_argument("--backend", default="classic", help="feature backend: classic (default) or sam")
    t.add_argument("--out", required=True, type=Path, help="model artifact to write (.npz)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument(
        "--work-max-side",
        type=_work_max_side,
        default=WORK_MAX_SIDE,
        help=f"working resolution: longer images are learnt from (and the model predicts) "
        f"at this longer side, px (default {WORK_MAX_SIDE}; 0: every image whole)",
    )
    sam_options(t)
    t.set_defaults(func=cmd_train)

    i = sub.add_parser("inspect", help="OK/NG decisions for every image of a folder")
    i.add_argument("--model", type=Path, help="model artifact (.npz)")
    i.add_argument("--rules", type=Path, help="rules.json (default: the engine's default rule set)")
    i.add_argument(
        "--bundle",
        type=Path,
        help="an inspection bundle (model, rules and calibration in one file, exported by the "
        "server) instead of --model and --rules",
    )
    i.add_argument("--images", required=True, help="folder of images to inspect")
    i.add_argument("--format", choices=("json", "csv"), default="json")
    i.add_argument("--out", type=Path, help="output file (default: stdout)")
    i.add_argument("--px-per-mm", type=float, default=None, help="scale for mm² rules")
    i.add_argument(
        "--input-check",
        choices=("off", "flag", "ng"),
        help="images unlike the training images: flag them (default), judge them NG, or "
        "don't check (default: the bundle's setting)",
    )
    i.add_argument(
        "--input-margin", type=float, help="the input check's tolerance (default: bundle's, 0.75)"
    )
    sam_options(i)
    i.set_defaults(func=cmd_inspect)

    s = sub.add_parser(
        "segment", help="write the arg-max label map (PNG, 0 = background) of one image"
    )
    s.add_argument("--model", required=True, type=Path)
    s.add_argument("--image", required=True)
    s.add_argument("--out", required=True, type=Path)
    sam_options(s)
    s.set_defaults(func=cmd_segment)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except PromptingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
