"""Clicks without SAM: one click at the centre of each ground-truth region, mask IoU and latency.

    python -m benchmarks.clicks [--datasets magnetic_tile,sd_saliency_900,crackforest]
                                [--seed 0] [--data-root ../shared/datasets]
                                [--max-images N] [--rest-images 15] [--skip-rest]

For every evaluation image of the quality protocol's split (``--seed``), each
8-connected ground-truth region of at least ``MIN_REGION_AREA`` px gets one
click at its centre: the pixel deepest inside it (the maximum of its distance
transform, inside even for rings and L shapes). Each method answers that one
positive point; its mask is scored by IoU against that region alone, and the
mean IoU per dataset is printed beside scikit-image baselines given the same
click:

- ``flood fill``: ``skimage.segmentation.flood`` on the grey image from the
  click, tolerance ``FLOOD_TOLERANCE`` of the grey range;
- ``random walker``: ``skimage.segmentation.random_walker`` (its defaults,
  ``beta=130``, the direct solver) seeded by the click (3 px disk) as the object and the image
  border as the background.

Boxes the same way: each region's bounding box grown by ``BOX_MARGIN`` a side,
answered alone and with the centre click inside it, beside Otsu's threshold of
the grey levels in the box and the box itself as a mask.

Ours is :func:`prompting.clicks.click_segment` on :func:`click_features` of the
shipped ``backbone`` backend (its default stages), which cuts the mask at the
level whose outline follows the strongest edges; beside it, the same cut at one
fixed level (``DEFAULT_ALPHA``, what the product did before). Engine time is per
click, features cached (as after the first click on an image); the features'
own time per image is printed too.

REST latency: a temporary SQLite database and media folder (eager Celery, no
SAM checkpoint), one project with the first ``--rest-images`` evaluation images
that have a defect, and every click above on them sent as
``POST /api/v1/images/{id}/segment/`` through Django's WSGI handler (``django.test.Client``, output ``rle``, as the
dashboard asks), each click then again with a negative point far from any
defect (a user refining the mask). The first click on an image computes and
caches its features (reported apart: "first click"); the p95 there is on the
clicks after it. Then the same images are uploaded again and each is first
made ready with ``POST /api/v1/images/{id}/segment/prepare/``, as the editor
does when it opens an image: the p95 is then on every click, the first included.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from benchmarks import protocol
from benchmarks.quality_common import (
    DATASETS,
    DEFAULT_DATA_ROOT,
    Sample,
    dataset_load,
    protocol_samples,
)

#: smaller ground-truth regions (specks of a few pixels) get no click
MIN_REGION_AREA = 10
#: flood fill tolerance, as a share of the image's grey range
FLOOD_TOLERANCE = 0.1
#: a region's box is its bounding box grown by this share of its size per side
BOX_MARGIN = 0.1
P95_TARGET_MS = 150.0
CLASS = "defect"


@dataclass
class Click:
    image_id: str
    x: int
    y: int
    region: np.ndarray  # (H, W) bool


def regions_clicks(sample: Sample, *, min_area: int = MIN_REGION_AREA) -> list[Click]:
    """One click per 8-connected region of ``sample.mask`` (>= ``min_area`` px): its deepest pixel."""
    labels, n = ndi.label(sample.mask, structure=np.ones((3, 3), bool))
    clicks = []
    for k in range(1, n + 1):
        region = labels == k
        if int(region.sum()) < min_area:
            continue
        x, y = protocol.deepest_pixel(region)
        clicks.append(Click(sample.image_id, x, y, region))
    return clicks


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = int(np.count_nonzero(a | b))
    return int(np.count_nonzero(a & b)) / union if union else 0.0


def _grey(rgb: np.ndarray) -> np.ndarray:
    return (rgb[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)) / 255.0


def flood_baseline(rgb: np.ndarray, x: int, y: int) -> np.ndarray:
    from skimage.segmentation import flood

    g = _grey(rgb)
    tol = FLOOD_TOLERANCE * max(float(g.max() - g.min()), 1e-6)
    return flood(g, (y, x), tolerance=tol)


def random_walker_baseline(rgb: np.ndarray, x: int, y: int) -> np.ndarray:
    from skimage.segmentation import random_walker

    g = _grey(rgb).astype(np.float64)
    h, w = g.shape
    markers = np.zeros((h, w), np.int32)
    markers[0, :] = markers[-1, :] = markers[:, 0] = markers[:, -1] = 2
    yy, xx = np.ogrid[:h, :w]
    markers[(yy - y) ** 2 + (xx - x) ** 2 <= 9] = 1
    # the direct solver: the default conjugate gradient takes 5-10x longer here, same masks
    return random_walker(g, markers, mode="bf") == 1


def region_box(region: np.ndarray) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1): ``region``'s bounding box grown by ``BOX_MARGIN`` of its size
    (at least 2 px) on each side, inside the image, as a user draws one around it."""
    rows, cols = np.flatnonzero(region.any(axis=1)), np.flatnonzero(region.any(axis=0))
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    my, mx = max(2, round(BOX_MARGIN * (y1 - y0))), max(2, round(BOX_MARGIN * (x1 - x0)))
    h, w = region.shape
    return max(0, x0 - mx), max(0, y0 - my), min(w, x1 + mx), min(h, y1 + my)


def otsu_box_baseline(rgb: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """Otsu's threshold of the grey levels inside ``box``; the side unlike the box's
    own border is the object."""
    from skimage.filters import threshold_otsu

    x0, y0, x1, y1 = box
    g = _grey(rgb)
    sub = g[y0:y1, x0:x1]
    out = np.zeros(g.shape, bool)
    if float(sub.max() - sub.min()) < 1e-6:
        return out
    t = threshold_otsu(sub)
    border = np.concatenate([sub[0], sub[-1], sub[:, 0], sub[:, -1]])
    out[y0:y1, x0:x1] = sub > t if np.median(border) <= t else sub <= t
    return out


def _summary(values: list[float]) -> str:
    if not values:
        return "n/a"
    return f"{np.median(values):.1f} / {np.percentile(values, 95):.1f}"


def engine_run(samples: list[Sample], *, with_baselines: bool = True) -> dict:
    """Per-dataset figures of ours and the baselines on ``samples`` (one dataset)."""
    from prompting.clicks import DEFAULT_ALPHA, click_features, click_segment
    from prompting.features import backend_create
    from prompting.prompts import Box, Point

    backend = backend_create("backbone")
    out = {
        "ours": [],
        "fixed": [],
        "box": [],
        "box_click": [],
        "box_otsu": [],
        "box_itself": [],
        "flood": [],
        "rw": [],
        "ours_ms": [],
        "feat_ms": [],
        "rw_ms": [],
    }
    for i, s in enumerate(samples):
        clicks = regions_clicks(s)
        if not clicks:
            continue
        if i % 10 == 0:
            print(f"  image {i + 1}/{len(samples)}", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        feats = click_features(backend, s.rgb)
        out["feat_ms"].append((time.perf_counter() - t0) * 1000)
        for c in clicks:
            click = [Point(c.x + 0.5, c.y + 0.5, CLASS)]
            res = click_segment(feats, click, target=CLASS)
            out["ours_ms"].append(res.time_ms)
            out["ours"].append(iou(res.mask, c.region))
            fixed = click_segment(feats, click, target=CLASS, alpha=DEFAULT_ALPHA)
            out["fixed"].append(iou(fixed.mask, c.region))
            box = region_box(c.region)
            drawn = [Box(*map(float, box), CLASS)]
            out["box"].append(iou(click_segment(feats, drawn, target=CLASS).mask, c.region))
            both = click_segment(feats, drawn + click, target=CLASS)
            out["box_click"].append(iou(both.mask, c.region))
            itself = np.zeros(c.region.shape, bool)
            itself[box[1] : box[3], box[0] : box[2]] = True
            out["box_itself"].append(iou(itself, c.region))
            if with_baselines:
                out["box_otsu"].append(iou(otsu_box_baseline(s.rgb, box), c.region))
                out["flood"].append(iou(flood_baseline(s.rgb, c.x, c.y), c.region))
                t1 = time.perf_counter()
                out["rw"].append(iou(random_walker_baseline(s.rgb, c.x, c.y), c.region))
                out["rw_ms"].append((time.perf_counter() - t1) * 1000)
    return out


# ----------------------------------------------------------------------------- REST


def django_setup(var_dir: Path) -> None:
    """A throwaway service: SQLite and media under ``var_dir``, eager Celery, no SAM."""
    env = {
        "DJANGO_SETTINGS_MODULE": "inspection.test_settings",
        "SECRET_KEY": "clicks-benchmark-not-a-secret",
        "DEBUG": "0",
        "VAR_DIR": str(var_dir),
        "DATABASE_URL": f"sqlite:///{var_dir / 'db.sqlite3'}",
        "CELERY_TASK_ALWAYS_EAGER": "1",
        "CELERY_BROKER_URL": "filesystem://",
        "ALLOWED_HOSTS": "testserver,127.0.0.1,localhost",
        "SAM_CHECKPOINT": "",
    }
    for name in ("STORAGE_ROOT", "FEATURE_CACHE_DIR", "BROKER_DIR", "STORAGE_BACKEND"):
        os.environ.pop(name, None)
    os.environ.update(env)
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)


def rest_run(
    samples: list[Sample], data_root: Path, dataset: str, *, prepare: bool = False
) -> dict:
    """Every click of ``samples`` through ``POST /images/{id}/segment/``: times and IoU.

    ``prepare``: each image is first made ready with ``POST .../segment/prepare/``
    (as the editor does when it opens an image; its time in ``prepare_ms``), so the
    first click finds the features cached. The images are deleted at the end, and
    their cached click features with them."""
    from django.contrib.auth import get_user_model
    from django.test import Client
    from rest_framework.authtoken.models import Token

    user, _ = get_user_model().objects.get_or_create(username="clicks-bench")
    token, _ = Token.objects.get_or_create(user=user)
    client = Client(HTTP_AUTHORIZATION=f"Token {token.key}")
    r = client.post(
        "/api/v1/projects/",
        data=json.dumps({"name": f"clicks {dataset}", "classes": [{"name": CLASS}]}),
        content_type="application/json",
    )
    assert r.status_code == 201, r.content
    project = r.json()["id"]
    out = {
        "first_ms": [],
        "warm_ms": [],
        "prepare_ms": [],
        "first_features_ms": [],  # features computed by the first click (0: cached)
        "iou": [],
        "engine": set(),
    }
    uploaded = []
    for s in samples:
        clicks = regions_clicks(s)
        if not clicks:
            continue
        path = data_root / dataset / "images" / f"{s.image_id}.png"
        with open(path, "rb") as fh:
            r = client.post(f"/api/v1/projects/{project}/images/", {"file": fh})
        assert r.status_code == 201, r.content
        image_id = r.json()["images"][0]["id"]
        uploaded.append(image_id)
        if prepare:
            t0 = time.perf_counter()
            r = client.post(f"/api/v1/images/{image_id}/segment/prepare/")
            out["prepare_ms"].append((time.perf_counter() - t0) * 1000)
            assert r.status_code in (200, 202), r.content
            job = r.json()["job"]
            assert job is None or r.json()["ready"] or _job_done(client, job["id"]), r.content
        away = ndi.distance_transform_edt(~s.mask) if s.mask.any() else None
        for i, c in enumerate(clicks):
            point = {"kind": "point", "label": CLASS, "points": [[c.x + 0.5, c.y + 0.5]]}
            asks = [[point]]
            if away is not None:
                # then, as a user refining the mask: a negative point far from any defect
                ny, nx = np.unravel_index(int(np.argmax(away)), away.shape)
                negative = {**point, "points": [[nx + 0.5, ny + 0.5]], "positive": False}
                asks.append([point, negative])
            for j, prompts in enumerate(asks):
                body = json.dumps({"prompts": prompts, "output": "rle"})
                t0 = time.perf_counter()
                r = client.post(
                    f"/api/v1/images/{image_id}/segment/",
                    data=body,
                    content_type="application/json",
                )
                ms = (time.perf_counter() - t0) * 1000
                assert r.status_code == 200, r.content
                got = r.json()
                out["engine"].add(got["engine"])
                (out["first_ms"] if i == j == 0 else out["warm_ms"]).append(ms)
                if i == j == 0:
                    out["first_features_ms"].append(got["features_ms"])
                if j == 0:
                    out["iou"].append(iou(rle_decode(got["rle"]), c.region))
    for image_id in uploaded:  # and their cached click features
        assert client.delete(f"/api/v1/images/{image_id}/").status_code == 204
    return out


def _job_done(client, job_id: str) -> bool:
    """Wait for a job (eager Celery: it has run already); whether it succeeded."""
    for _ in range(600):
        state = client.get(f"/api/v1/jobs/{job_id}/").json()["state"]
        if state in ("succeeded", "failed", "cancelled"):
            return state == "succeeded"
        time.sleep(0.1)
    return False


def rle_decode(rle: dict) -> np.ndarray:
    """The (H, W) bool mask of the segment route's ``rle`` (row-major, starts with 0s)."""
    h, w = rle["size"]
    flat = np.zeros(h * w, bool)
    pos, val = 0, False
    for n in rle["counts"]:
        if val:
            flat[pos : pos + n] = True
        pos += n
        val = not val
    return flat.reshape(h, w)


# ----------------------------------------------------------------------------- main


def _cpu() -> str:
    try:
        import subprocess

        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        name = next(
            (ln.split(":", 1)[1].strip() for ln in text.splitlines() if "Model name" in ln), ""
        )
        cpus = next(
            (ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("CPU(s)")), ""
        )
        return f"{name}, {cpus} CPUs"
    except OSError:
        return "unknown CPU"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.clicks", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--seed", type=int, default=0, help="the protocol split's seed")
    parser.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT)
    parser.add_argument(
        "--max-images", type=int, default=0, help="at most N evaluation images (0: all)"
    )
    parser.add_argument(
        "--rest-images",
        type=int,
        default=15,
        help="evaluation images (with a defect) clicked through REST",
    )
    parser.add_argument("--skip-rest", action="store_true")
    parser.add_argument("--skip-baselines", action="store_true")
    args = parser.parse_args(argv)
    names = [d.strip() for d in args.datasets.split(",") if d.strip()]
    print(f"CPU: {_cpu()}; load average {os.getloadavg()[0]:.1f}", file=sys.stderr)

    evals: dict[str, list[Sample]] = {}
    rest_evals: dict[str, list[Sample]] = {}
    for name in names:
        samples = dataset_load(args.data_root, name)
        _, chosen = protocol_samples(samples, args.seed)
        evals[name] = chosen[: args.max_images] if args.max_images else chosen
        rest_evals[name] = [s for s in chosen if s.mask.any()][: args.rest_images]

    rows = {}
    for name in names:
        t0 = time.perf_counter()
        rows[name] = engine_run(evals[name], with_baselines=not args.skip_baselines)
        print(f"[{name}] engine part {time.perf_counter() - t0:.0f} s", file=sys.stderr)

    print("\nOne click at the centre of each ground-truth region: mean mask IoU against it\n")
    print(
        "| dataset | regions | ours (backbone) | ours, one fixed level | flood fill | random walker "
        "| ours / best baseline | ours ms per click median / p95 | features ms per image median "
        "| random walker ms median |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        ours = float(np.mean(r["ours"])) if r["ours"] else float("nan")
        fixed = float(np.mean(r["fixed"])) if r["fixed"] else float("nan")
        fl = float(np.mean(r["flood"])) if r["flood"] else float("nan")
        rw = float(np.mean(r["rw"])) if r["rw"] else float("nan")
        best = np.nanmax([fl, rw]) if r["flood"] else float("nan")
        ratio = f"{ours / best:.2f}×" if best and np.isfinite(best) else "n/a"
        print(
            f"| {name} | {len(r['ours'])} | {ours:.3f} | {fixed:.3f} | {fl:.3f} | {rw:.3f} | {ratio} | "
            f"{_summary(r['ours_ms'])} | {np.median(r['feat_ms']):.0f} | "
            f"{np.median(r['rw_ms']) if r['rw_ms'] else float('nan'):.0f} |"
        )

    print(
        "\nA box around each region (its bounding box grown by "
        f"{BOX_MARGIN:.0%} a side, at least 2 px): mean mask IoU against it\n"
    )
    print(
        "| dataset | boxes | ours, box alone | ours, box and the centre click | Otsu in the box "
        "| the box itself | ours box alone / Otsu |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        box, both, itself = (float(np.mean(r[k])) for k in ("box", "box_click", "box_itself"))
        otsu = float(np.mean(r["box_otsu"])) if r["box_otsu"] else float("nan")
        ratio = f"{box / otsu:.2f}×" if otsu and np.isfinite(otsu) else "n/a"
        print(
            f"| {name} | {len(r['box'])} | {box:.3f} | {both:.3f} | {otsu:.3f} | {itself:.3f} "
            f"| {ratio} |"
        )

    if args.skip_rest:
        return 0
    with tempfile.TemporaryDirectory(prefix="clicks-bench-") as tmp:
        django_setup(Path(tmp))
        print(
            f"\nThrough REST (POST /api/v1/images/{{id}}/segment/, in-process WSGI, "
            f"the first {args.rest_images} evaluation images with a defect per dataset)\n"
        )
        print(
            "| dataset | clicks | engine | mean IoU | first click on an image ms median | "
            f"later clicks ms median / p95 | p95 <= {P95_TARGET_MS:.0f} ms |"
        )
        print("|---|---|---|---|---|---|---|")
        prepared = {}
        for name in names:
            rest = rest_run(rest_evals[name], args.data_root, name)
            warm = rest["warm_ms"]
            p95 = float(np.percentile(warm, 95)) if warm else float("nan")
            print(
                f"| {name} | {len(rest['iou'])} | {','.join(sorted(rest['engine']))} | "
                f"{np.mean(rest['iou']):.3f} | {np.median(rest['first_ms']):.0f} | "
                f"{_summary(warm)} | {'yes' if p95 <= P95_TARGET_MS else 'NO'} |"
            )
            # the same images again, each prepared when "opened" (as the editor does)
            prepared[name] = rest_run(rest_evals[name], args.data_root, name, prepare=True)
        print(
            "\nThe same images uploaded again, each made ready with POST "
            ".../segment/prepare/ before its first click (the editor asks when it opens "
            "an image; eager Celery, so the call includes the job):\n"
        )
        print(
            "| dataset | prepare ms median | first click ms median | every click ms median / p95 "
            f"| p95 <= {P95_TARGET_MS:.0f} ms |"
        )
        print("|---|---|---|---|---|")
        for name in names:
            rest = prepared[name]
            every = rest["first_ms"] + rest["warm_ms"]
            p95 = float(np.percentile(every, 95)) if every else float("nan")
            print(
                f"| {name} | {np.median(rest['prepare_ms']):.0f} | "
                f"{np.median(rest['first_ms']):.0f} | {_summary(every)} | "
                f"{'yes' if p95 <= P95_TARGET_MS else 'NO'} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
