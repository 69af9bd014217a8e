"""The quality protocol driven through the REST API, as a user's client would.

    python -m benchmarks.quality --via-api [--base-url http://127.0.0.1:8000 --token T]
                                 [--datasets ...] [--seeds 0,1,2] [--max-eval N]
                                 [--backend backbone --good-parts-only]

Same simulated user as :mod:`benchmarks.quality` (:mod:`benchmarks.protocol`:
the seeded split, the skeleton and background strokes, two correction rounds),
but every step is an HTTP request to a running server:

1. ``POST /projects/`` (one class, the chosen ``--backend``), then each
   training image with its ground-truth mask (``POST /projects/{id}/images/``,
   the mask makes it a labelled OK/NG part for the backtest and the tuner),
   and its strokes (``POST /images/{id}/prompts/``).
2. ``POST /projects/{id}/train/`` (Run), polling ``GET /jobs/{id}/`` until it
   ends; the training images' predictions are read back
   (``GET /projects/{id}/predictions/`` and each ``mask_url``), correction
   strokes are painted where they are wrong, and Run again (twice).
3. The evaluation images are uploaded *without* masks (they are not labelled,
   so neither the tuner nor the backtest sees them), the last model is
   deployed (``POST /models/{id}/deploy/``, which predicts every image): their
   masks under the project's default rules give "seg IoU".
4. ``POST /rules/tune/`` suggests a rule set from the labelled (training)
   images; ``PUT /rules/`` saves it, which predicts every image again: the
   evaluation masks under the tuned rules give "rules IoU".
5. Every evaluation image goes through the line's route,
   ``POST /projects/{id}/inspect/`` with ``masks=coco_rle``: its verdict gives
   escape and overkill, its masks "line IoU" (beside rules IoU: the same rules,
   judged on the line rather than on the stored probabilities), and the
   request's wall time is "predict / image".

With ``--good-parts-only`` (a backend with an anomaly bank), the good-parts
protocol follows on each dataset with defect-free images and seed: ten of them
uploaded with their empty masks (marked OK), Run with no stroke, the anomaly
rule added with ``PUT /rules/``, every other image deployed and inspected
(:func:`run_good_parts_via_api`), beside the engine path on the same images.

Without ``--base-url`` an embedded server is started on a free port
(``manage.py runserver`` with the product's settings, a temporary SQLite
database, media and feature cache, Celery eager, so every job runs inside its
request) with an admin whose token the client asks for over HTTP.
"""

from __future__ import annotations

import io
import sys
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmarks import protocol
from benchmarks.api_client import (
    ApiError,
    Client,
    embedded_server,
    job_wait,
    project_jobs_wait,
    token_get,
)
from benchmarks.quality_common import (
    CLASS,
    MethodResult,
    Sample,
    dataset_load,
    good_parts_table,
    initial_clicks,
    initial_prompts,
    protocol_samples,
    results_mean,
    spearman,
    table_head,
    table_row,
)
from benchmarks.quality_methods import (
    BaselineMethod,
    OurMethod,
    click_labels,
    good_parts_run,
    good_parts_split,
    run_method,
)
from prompting.interchange import coco_rle_decode

#: how a table row names the cold start's defect labels (``--labels``)
LABEL_SUFFIX = {"strokes": "", "clicks": ", click labels"}

# ----------------------------------------------------------------------------- the user


def _png(arr: np.ndarray) -> bytes:
    from PIL import Image as PILImage

    buf = io.BytesIO()
    PILImage.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _mask_png(mask: np.ndarray) -> bytes:
    return _png(np.asarray(mask, bool).astype(np.uint8) * 255)


def _mask_read(client: Client, url: str, shape: tuple[int, int]) -> np.ndarray:
    from PIL import Image as PILImage

    _, data, _ = client.request("GET", url, raw=True)
    arr = np.asarray(PILImage.open(io.BytesIO(data)))
    if arr.ndim == 3:
        arr = arr[..., 0]
    if arr.shape != shape:
        raise ApiError(f"prediction mask {url} has shape {arr.shape}, expected {shape}")
    return arr > 0


def predictions_masks(
    client: Client, project: str, images: dict[str, tuple[str, tuple[int, int]]]
) -> dict[str, np.ndarray]:
    """{sample id: (H, W) bool mask of its newest prediction} for ``images``
    ({sample id: (image id, shape)})."""
    by_image = {image_id: (sid, shape) for sid, (image_id, shape) in images.items()}
    out: dict[str, np.ndarray] = {}
    page = f"/api/v1/projects/{project}/predictions/?page_size=500"
    while page:
        body = client.get(page)
        for p in body["results"]:
            if p["image"] in by_image:
                sid, shape = by_image[p["image"]]
                out[sid] = _mask_read(client, p["mask_url"], shape)
        page = body.get("next")
    missing = set(images) - set(out)
    if missing:
        raise ApiError(f"no prediction for {len(missing)} images (e.g. {sorted(missing)[0]})")
    return out


def _upload(client: Client, project: str, sample: Sample, *, with_mask: bool) -> str:
    files = [("file", f"{sample.image_id}.png", _png(sample.rgb))]
    if with_mask:
        files.append(("mask", f"{sample.image_id}.png", _mask_png(sample.mask)))
    body = client.post(f"/api/v1/projects/{project}/images/", files=files)
    return body["images"][0]["id"]


def _paint(client: Client, image_id: str, strokes: list[dict]) -> None:
    for stroke in strokes:
        client.post(f"/api/v1/images/{image_id}/prompts/", stroke)


def _train(client: Client, project: str) -> tuple[dict, float]:
    t0 = time.perf_counter()
    job = client.post(f"/api/v1/projects/{project}/train/", {})["job"]
    job = job_wait(client, job["id"])
    return job, time.perf_counter() - t0


def _project_create(client: Client, *, name: str, backend: str, **options: Any) -> str:
    """A one-class project on ``backend``; ``options``: more of its fields."""
    body = {"name": f"{name} {uuid.uuid4().hex[:6]}", "classes": [{"name": CLASS}]}
    return client.post("/api/v1/projects/", {**body, "backend": backend, **options})["id"]


def _inspect_all(
    client: Client, project: str, evaluation: list[Sample]
) -> list[tuple[dict, float]]:
    """Each image through the line's route, ``POST /inspect/``, asking for the
    decision's pixels (``masks=coco_rle``): (response, wall s)."""
    out = []
    for s in evaluation:
        _, body, ms = client.request(
            "POST",
            f"/api/v1/projects/{project}/inspect/",
            files=[("file", f"{s.image_id}.png", _png(s.rgb)), ("masks", None, b"coco_rle")],
        )
        out.append((body, ms / 1000.0))
    return out


def _answer_mask(body: dict) -> np.ndarray:
    """(H, W) bool: every pixel an inspect answer's ``masks`` name (each class's
    and the anomaly regions')."""
    h, w = body["masks"]["size"]
    out = np.zeros((h, w), bool)
    for m in body["masks"]["masks"]:
        out |= coco_rle_decode(m["rle"])
    return out


def _pooled_iou(evaluation: list[Sample], masks: list[np.ndarray]) -> float:
    """Pixel IoU pooled over the images: (sum of intersections) / (sum of unions)."""
    inter = sum(int((m & s.mask).sum()) for s, m in zip(evaluation, masks, strict=True))
    union = sum(int((m | s.mask).sum()) for s, m in zip(evaluation, masks, strict=True))
    return inter / max(union, 1)


def _verdict_rates(
    evaluation: list[Sample], verdicts: list[str]
) -> tuple[float | None, float | None]:
    """(escape, overkill) of the line's verdicts, one per evaluation image."""
    ng = [v for s, v in zip(evaluation, verdicts, strict=True) if s.mask.any()]
    ok = [v for s, v in zip(evaluation, verdicts, strict=True) if not s.mask.any()]
    escape = sum(v == "OK" for v in ng) / len(ng) if ng else None
    return escape, (sum(v == "NG" for v in ok) / len(ok) if ok else None)


def _tune_and_save(client: Client, project: str) -> dict:
    """``POST /rules/tune/`` (as a job on large images), then ``PUT /rules/`` with its
    proposal; the tune's answer."""
    tuned = client.post(f"/api/v1/projects/{project}/rules/tune/", {})
    if "job" in tuned and "rules" not in tuned:  # large images: the tune runs as a job
        tuned = job_wait(client, tuned["job"]["id"])["result"]
    client.request(
        "PUT", f"/api/v1/projects/{project}/rules/", body={"rules": tuned["rules"], "note": "tuned"}
    )
    return tuned


@dataclass
class ApiRun:
    """One dataset and seed through the API: the figures of ``MethodResult`` and how
    long each stage took (s)."""

    result: MethodResult
    stages: dict[str, float]
    #: evaluation images judged
    n_eval: int


def run_via_api(
    client: Client,
    *,
    name: str,
    seed: int,
    train: list[Sample],
    evaluation: list[Sample],
    prompts0: dict[str, list[dict]],
    backend: str,
    project_options: dict | None = None,
    clicks0: dict[str, list[list[float]]] | None = None,
) -> ApiRun:
    """The protocol on one dataset and seed, every step through ``client``;
    ``project_options``: more fields of the project it creates; ``clicks0``: the
    cold start's clicks per image (``--labels clicks``), each one's mask accepted
    as the label (the segment route's polygons, saved as polygon prompts)."""
    stages: dict[str, float] = {}
    t0 = time.perf_counter()
    project = _project_create(
        client, name=f"{name} seed {seed}", backend=backend, **(project_options or {})
    )
    ids: dict[str, str] = {}
    for s in train:
        ids[s.image_id] = _upload(client, project, s, with_mask=True)
        _paint(client, ids[s.image_id], prompts0[s.image_id])
        for x, y in (clicks0 or {}).get(s.image_id, []):
            click = {"kind": "point", "label": CLASS, "points": [[x, y]]}
            shown = client.post(
                f"/api/v1/images/{ids[s.image_id]}/segment/",
                {"prompts": [click], "label": CLASS, "output": "polygons"},
            )
            _paint(
                client,
                ids[s.image_id],
                [{"kind": "polygon", "label": CLASS, "points": p} for p in shown["polygons"]],
            )
    stages["upload_and_paint_s"] = time.perf_counter() - t0

    train_ids = {s.image_id: (ids[s.image_id], s.mask.shape) for s in train}
    train_s = 0.0
    rounds = []
    model_id = None
    for r in range(protocol.CORRECTION_ROUNDS + 1):
        job, wall = _train(client, project)
        train_s += wall
        rounds.append(f"{wall:.1f}s")
        model_id = job["result"]["model_version"]
        if r == protocol.CORRECTION_ROUNDS:
            break
        predicted = predictions_masks(client, project, train_ids)
        for s in train:
            _paint(
                client,
                ids[s.image_id],
                protocol.correction_strokes(predicted[s.image_id], s.mask, label=CLASS),
            )
    stages["train_s"] = train_s

    t1 = time.perf_counter()
    eval_ids = {}
    for s in evaluation:
        eval_ids[s.image_id] = (_upload(client, project, s, with_mask=False), s.mask.shape)
    client.post(f"/api/v1/models/{model_id}/deploy/")
    project_jobs_wait(client, project)
    seg = predictions_masks(client, project, eval_ids)
    stages["deploy_and_predict_s"] = time.perf_counter() - t1

    t2 = time.perf_counter()
    tuned = _tune_and_save(client, project)
    warning = tuned.get("warning")
    project_jobs_wait(client, project)
    after = predictions_masks(client, project, eval_ids)
    stages["tune_and_predict_s"] = time.perf_counter() - t2

    answers = _inspect_all(client, project, evaluation)
    times = [t for _, t in answers]
    uncertainty = [float(body.get("uncertainty") or 0.0) for body, _ in answers]
    errors = [int((after[s.image_id] ^ s.mask).sum()) for s in evaluation]
    stages["inspect_s"] = float(np.sum(times))

    def agg_iou(masks: dict[str, np.ndarray]) -> float:
        return _pooled_iou(evaluation, [masks[s.image_id] for s in evaluation])

    escape, overkill = _verdict_rates(evaluation, [body["verdict"] for body, _ in answers])
    result = MethodResult(
        iou=agg_iou(after),
        iou_05=agg_iou(seg),
        escape=escape,
        overkill=overkill,
        train_s=train_s,
        predict_s=float(np.mean(times)) if times else 0.0,
        tune_warning=warning,
        review_rho=spearman(uncertainty, errors),
        rounds=rounds,
        extra={
            "ruleset": tuned["rules"],
            "project": project,
            "line_iou": _pooled_iou(evaluation, [_answer_mask(body) for body, _ in answers]),
        },
    )
    return ApiRun(result=result, stages=stages, n_eval=len(evaluation))


def run_good_parts_via_api(
    client: Client, *, name: str, seed: int, samples: list[Sample], backend: str, max_eval: int = 0
) -> ApiRun:
    """The good-parts-only protocol through ``client``: the ten defect-free images
    of :func:`benchmarks.quality_methods.good_parts_split` uploaded with their empty
    masks (so marked OK), Run with no stroke painted, the rules ``POST
    /rules/tune/`` proposes from them saved (``PUT /rules/``: the anomaly rule
    just above the good parts' highest held-out peak),
    then every other image (the first ``max_eval``, 0: all) uploaded unlabelled,
    the model deployed, and each image sent to ``POST /inspect/``.

    Figures: escape and overkill of those verdicts; the image AUROC of the
    deployed model's ``anomaly_peak`` over the evaluation images (their
    predictions, ``GET /predictions/``); the pixel IoU of the masks the answers
    hold (``masks=coco_rle``: the anomaly regions the decision reports), as the
    engine path counts its decisions' regions."""
    from sklearn.metrics import roc_auc_score

    train, evaluation = good_parts_split(samples, seed=seed)
    if max_eval:
        evaluation = evaluation[:max_eval]
    stages: dict[str, float] = {}
    t0 = time.perf_counter()
    project = _project_create(client, name=f"{name} good parts seed {seed}", backend=backend)
    for s in train:
        _upload(client, project, s, with_mask=True)
    stages["upload_and_paint_s"] = time.perf_counter() - t0
    job, train_s = _train(client, project)
    stages["train_s"] = train_s
    model_id = job["result"]["model_version"]
    tuned = _tune_and_save(client, project)
    t1 = time.perf_counter()
    eval_ids = {s.image_id: _upload(client, project, s, with_mask=False) for s in evaluation}
    client.post(f"/api/v1/models/{model_id}/deploy/")
    project_jobs_wait(client, project)
    peaks: dict[str, float | None] = {}
    page = f"/api/v1/projects/{project}/predictions/?page_size=500&model_version={model_id}"
    while page:
        body = client.get(page)
        peaks.update({p["image"]: p["anomaly_peak"] for p in body["results"]})
        page = body.get("next")
    stages["deploy_and_predict_s"] = time.perf_counter() - t1
    stages["tune_and_predict_s"] = 0.0
    answers = _inspect_all(client, project, evaluation)
    times = [t for _, t in answers]
    stages["inspect_s"] = float(np.sum(times))
    escape, overkill = _verdict_rates(evaluation, [body["verdict"] for body, _ in answers])
    scores = [peaks.get(eval_ids[s.image_id]) for s in evaluation]
    if any(v is None for v in scores):
        raise ApiError("a prediction has no anomaly_peak: the model has no memory bank")
    flags = [int(s.mask.any()) for s in evaluation]
    auroc = roc_auc_score(flags, scores) if 0 < sum(flags) < len(flags) else None
    result = MethodResult(
        iou=0.0,
        iou_05=0.0,
        escape=escape,
        overkill=overkill,
        train_s=train_s,
        predict_s=float(np.mean(times)) if times else 0.0,
        tune_warning=tuned.get("warning"),
        extra={
            "anomaly_auroc": auroc,
            "pixel_iou": _pooled_iou(evaluation, [_answer_mask(body) for body, _ in answers]),
            "project": project,
            "ruleset": tuned["rules"],
        },
    )
    return ApiRun(result=result, stages=stages, n_eval=len(evaluation))


# ----------------------------------------------------------------------------- command


def api_main(args, *, seeds: list[int], backend_options: dict, ours_name: str) -> int:
    """``python -m benchmarks.quality --via-api``: the API path per dataset and seed,
    beside the engine path and the baseline on the same split (unless skipped).

    With ``--backend backbone`` (unless ``--no-classic``) the classic learner runs
    through the API too, in its own project on the same server, split and strokes."""
    if backend_options:
        print(
            "--via-api: the server uses its own backend options; --backend-options is ignored",
            file=sys.stderr,
        )
    backends = [args.backend]
    if args.backend != "classic" and not getattr(args, "no_classic", False):
        backends.append("classic")
    labels = {args.backend: ours_name, "classic": "ours (classic)"}
    names = [d.strip() for d in args.datasets.split(",") if d.strip()]

    @contextmanager
    def server():
        if args.base_url:
            yield Client(args.base_url, args.token), args.base_url
            return
        with embedded_server(backend=args.backend) as (url, user, password):
            client = Client(url)
            client.token = token_get(client, user, password)
            yield client, f"embedded server {url}"

    rows = []  # (dataset, seed, n_eval, label, MethodResult)
    good_rows = []  # the same, of the good-parts-only protocol
    good_parts = getattr(args, "good_parts_only", False)
    if good_parts and args.backend == "classic":
        print("--good-parts-only needs a backend with an anomaly bank: skipped", file=sys.stderr)
        good_parts = False
    stages_all = []
    with server() as (client, where):
        print(f"API path on {where}", file=sys.stderr)
        for name in names:
            samples = dataset_load(args.data_root, name, view=args.view, zoom=args.zoom)
            for seed in seeds:
                train, evaluation = protocol_samples(samples, seed)
                if args.max_eval:
                    evaluation = evaluation[: args.max_eval]
                clicks = args.labels == "clicks"
                prompts0 = initial_prompts(train, seed, defects=not clicks)
                clicks0 = initial_clicks(train) if clicks else None
                engine_prompts = prompts0
                if clicks0 is not None and not (args.skip_engine and args.skip_baseline):
                    polygons = click_labels(train, clicks0)
                    engine_prompts = {k: v + polygons[k] for k, v in prompts0.items()}
                for backend in backends:
                    t0 = time.perf_counter()
                    run = run_via_api(
                        client,
                        name=name,
                        seed=seed,
                        train=train,
                        evaluation=evaluation,
                        prompts0=prompts0,
                        backend=backend,
                        clicks0=clicks0,
                    )
                    print(
                        f"[{name} seed {seed}] {backend} via API in "
                        f"{time.perf_counter() - t0:.0f} s: {run.result} stages {run.stages}",
                        file=sys.stderr,
                    )
                    label = f"{labels[backend]} via API{LABEL_SUFFIX[args.labels]}"
                    rows.append((name, seed, len(evaluation), label, run.result))
                    stages_all.append((name, seed, backend, run.stages))
                    if not args.skip_engine:
                        ours = run_method(
                            OurMethod(seed, backend, {}), train, evaluation, engine_prompts
                        )
                        engine = f"{labels[backend]} engine{LABEL_SUFFIX[args.labels]}"
                        rows.append((name, seed, len(evaluation), engine, ours))
                if not args.skip_baseline:
                    base = run_method(BaselineMethod(seed), train, evaluation, engine_prompts)
                    baseline = f"baseline (skimage RF){LABEL_SUFFIX[args.labels]}"
                    rows.append((name, seed, len(evaluation), baseline, base))
                if good_parts and sum(not s.mask.any() for s in samples) > protocol.N_TRAIN:
                    t0 = time.perf_counter()
                    run = run_good_parts_via_api(
                        client,
                        name=name,
                        seed=seed,
                        samples=samples,
                        backend=args.backend,
                        max_eval=args.max_eval,
                    )
                    print(
                        f"[{name} seed {seed}] good parts only via API in "
                        f"{time.perf_counter() - t0:.0f} s: {run.result} stages {run.stages}",
                        file=sys.stderr,
                    )
                    good_rows.append((name, seed, run.n_eval, "via API", run.result))
                    stages_all.append((name, seed, f"{args.backend} (good parts)", run.stages))
                    if not args.skip_engine:
                        gp, n_engine = good_parts_run(
                            OurMethod(seed, args.backend, {}),
                            samples,
                            seed=seed,
                            max_eval=args.max_eval,
                        )
                        good_rows.append((name, seed, n_engine, "engine", gp))

    many = len(seeds) > 1
    print()
    print(table_head(with_seed=many))
    for name, seed, n_eval, label, r in rows:
        print(table_row(f"{name} | {seed}" if many else name, n_eval, label, r))
    if many:
        print(f"\nMean over seeds {','.join(map(str, seeds))}:\n")
        print(table_head(with_seed=False))
        for name in dict.fromkeys(r[0] for r in rows):
            for label in dict.fromkeys(r[3] for r in rows):
                mine = [r for r in rows if r[0] == name and r[3] == label]
                n_eval = "/".join(str(v) for v in dict.fromkeys(r[2] for r in mine))
                print(table_row(name, n_eval, label, results_mean([r[4] for r in mine])))
    print(
        "\nThrough the API: seg IoU = the evaluation images' prediction masks under the "
        "project's default rules after deploying the last model; rules IoU = the same "
        "after the tuned rules were saved; escape/overkill = verdicts of POST /inspect/; "
        "predict / image = that request's wall time (no CPU time: it is spent in the server)."
    )
    print(
        "\n| dataset | seed | backend | upload+paint s | train s | deploy+predict s "
        "| tune+predict s | inspect s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, seed, backend, st in stages_all:
        print(
            f"| {name} | {seed} | {backend} | {st['upload_and_paint_s']:.3g} | {st['train_s']:.3g} | "
            f"{st['deploy_and_predict_s']:.3g} | {st['tune_and_predict_s']:.3g} | "
            f"{st['inspect_s']:.3g} |"
        )
    line = [(n, sd, lb, r) for n, sd, _, lb, r in rows if "line_iou" in r.extra]
    if line:
        print(
            "\nThe line's masks (POST /inspect/ with masks=coco_rle) against the Images "
            "page's (the predictions under the same tuned rules):\n"
        )
        print("| dataset | seed | method | rules IoU (predictions) | line IoU (inspect masks) |")
        print("|---|---|---|---|---|")
        for name, seed, label, r in line:
            print(f"| {name} | {seed} | {label} | {r.iou:.3f} | {r.extra['line_iou']:.3f} |")
    if good_rows:
        print(
            "\nGood parts only: ten defect-free images marked OK, no stroke; rules = what "
            "Tune proposes from them (the anomaly rule just above their highest held-out "
            "peak); every other image inspected. Pixel IoU: of the anomaly regions the "
            "decisions report (through the API, the masks POST /inspect/ answers with).\n"
        )
        print(good_parts_table(good_rows))
    for name, seed, _, label, r in rows:
        if label.endswith(" via API") and r.tune_warning:
            print(f"\n{name} (seed {seed}, {label}): tune warning: {r.tune_warning}")
    return 0
