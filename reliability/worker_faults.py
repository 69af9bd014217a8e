"""Worker faults with a real Celery worker over Redis and PostgreSQL.

Faults, each tried ``--trials`` times (default 5), every wait bounded:

- kill the worker's pool child (SIGKILL) mid-training;
- kill the whole worker (SIGKILL to its process group) mid-training;
- restart Redis mid-job (``redis-cli shutdown nosave``, then the CI command),
  and try to start a job while Redis is down;
- exceed the job time limit (a worker with JOB_TIME_LIMIT=2 s).

After each: the job ends succeeded or failed within a bound (a job whose
worker died is failed by the stale sweep, never left running), every
ModelVersion points at a complete artifact (exists, sha256 matches, loads),
no partial file is left beside an artifact, and a retried training gives the
same result as a clean baseline run (same metrics, verdicts and predicted
probabilities). Also asserted: Redis's visibility_timeout is longer than the
longest job time limit.

Uses its own PostgreSQL database (created and dropped) and Redis db 5; Redis
is always left running, even on failure.

    python -m reliability.worker_faults [--trials 5]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from reliability.worker_env import (
    BROKER,
    REPO,
    Worker,
    db_create,
    db_drop,
    ping,
    redis_ensure_running,
    redis_restart,
)

TRAIN_STEPS = "150"  # a training run of a few seconds on 2 tiny images
STALE_S = 12  # heartbeat gap after which the sweep fails a running job (> the longest fit step)
JOB_BOUND_S = 150  # every job must be final within this many seconds of the fault


# --- checks -----------------------------------------------------------------------
def job_wait(
    job_id,
    *,
    until=("succeeded", "failed", "cancelled"),
    timeout: float = JOB_BOUND_S,
    progress_min: int = -1,
):
    from inspection.models import Job

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = Job.objects.get(id=job_id)
        if job.state in until and job.progress >= progress_min:
            return job
        if job.state in ("succeeded", "failed", "cancelled") and job.state not in until:
            return job
        time.sleep(0.1)
    return Job.objects.get(id=job_id)


def sweep_until_final(job_id, *, timeout: float = JOB_BOUND_S):
    """What the beat schedule does every minute, here every second with the
    suite's stale window: a running job without heartbeat is failed."""
    from inspection.models import Job
    from inspection.services.job_control import jobs_sweep_stale

    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        job = Job.objects.get(id=job_id)
        if job.state in Job.FINAL_STATES:
            return job, time.monotonic() - t0
        jobs_sweep_stale(older_than_s=STALE_S)
        time.sleep(1.0)
    return Job.objects.get(id=job_id), time.monotonic() - t0


def artifacts_check() -> list[str]:
    """Every ModelVersion's artifact exists, matches its sha256 and loads; no
    partial file sits beside the artifacts."""
    from django.core.files.storage import default_storage

    from inspection.models import ModelVersion
    from inspection.storage import bytes_read, local_copy
    from prompting.learner import Learner

    problems = []
    for mv in ModelVersion.objects.all():
        name = mv.artifact.name
        if not default_storage.exists(name):
            problems.append(f"model v{mv.number}: artifact {name} missing")
            continue
        if hashlib.sha256(bytes_read(name)).hexdigest() != mv.artifact_sha256:
            problems.append(f"model v{mv.number}: artifact sha256 mismatch")
        try:
            with local_copy(name) as path:
                Learner.load(path, expected_backend=mv.backend)
        except Exception as exc:
            problems.append(f"model v{mv.number}: artifact does not load: {exc}")
        folder = Path(default_storage.path(name)).parent
        partial = [
            p.name
            for p in folder.iterdir()
            if p.name.startswith((".partial", "tmp")) or p.suffix == ".tmp"
        ]
        if partial:
            problems.append(f"partial files beside artifacts: {partial}")
    return problems


def result_of(job) -> dict:
    """The comparable outcome of a succeeded training job."""
    from inspection.models import ModelVersion, Prediction
    from inspection.services.predictions import probabilities_load

    mv = ModelVersion.objects.get(id=job.result["model_version"])
    preds = {str(p.image_id): p for p in Prediction.objects.filter(model_version=mv)}
    return {
        "metrics": {k: (round(v, 6) if isinstance(v, float) else v) for k, v in mv.metrics.items()},
        "pixels_per_class": mv.pixels_per_class,
        "verdicts": {k: p.verdict for k, p in sorted(preds.items())},
        "blobs": {k: len(p.blobs) for k, p in sorted(preds.items())},
        "probs": {k: probabilities_load(p).astype("float32") for k, p in sorted(preds.items())},
        "artifact_sha256": mv.artifact_sha256,
    }


#: probabilities of a retried run may differ from the baseline by float rounding
#: (BLAS paths differ between processes); decisions must be identical
PROB_ATOL = 1e-3
MAX_PROB_DIFF: list[float] = []


def same_result(a: dict, b: dict) -> tuple[bool, str]:
    import numpy as np

    diff = [k for k in ("metrics", "pixels_per_class", "verdicts", "blobs") if a[k] != b[k]]
    if a["probs"].keys() != b["probs"].keys():
        diff.append("images")
        return False, f"differs in {diff}"
    dmax = max(float(np.max(np.abs(a["probs"][k] - b["probs"][k]))) for k in a["probs"])
    MAX_PROB_DIFF.append(dmax)
    if dmax > PROB_ATOL:
        diff.append(f"probabilities (max |diff| {dmax:.2e} > {PROB_ATOL})")
    same_bytes = (
        "identical artifact"
        if a["artifact_sha256"] == b["artifact_sha256"]
        else "artifact bytes differ"
    )
    return not diff, (
        f"differs in {diff}"
        if diff
        else f"same decisions, max |prob diff| {dmax:.1e}, {same_bytes}"
    )


# --- the suite ----------------------------------------------------------------------
def project_make(user):
    from inspection.services import images as image_services
    from inspection.services import projects as project_services
    from inspection.services import prompts as prompt_services
    from reliability.world import stroke, tile_png

    project = project_services.project_create(
        user=user, name="faults", classes=["scratch"], cold_start_min=2
    )
    results = image_services.images_upload(
        project=project,
        files=[(f"t{i}.png", tile_png(900 + i, defect=i == 0)) for i in range(2)],
        user=user,
    )
    for i, r in enumerate(results):
        if i == 0:
            prompt_services.prompt_create(
                image=r.image, data=stroke("scratch", [[8, 24], [40, 24]], 1), user=user
            )
        prompt_services.prompt_create(
            image=r.image, data=stroke("background", [[6, 6], [42, 6]], 2), user=user
        )
        prompt_services.prompt_create(
            image=r.image, data=stroke("background", [[6, 42], [42, 42]], 2), user=user
        )
        image_services.image_ground_truth_set(image=r.image, verdict="NG" if i == 0 else "OK")
    return project


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument(
        "--only",
        default="kill_child,kill_worker,redis,time_limit",
        help="comma-separated faults to run",
    )
    args = parser.parse_args()
    if not redis_ensure_running():
        print("Redis is not running and could not be started", file=sys.stderr)
        return 2
    var = Path(tempfile.mkdtemp(prefix="reliability-faults-"))
    db_url = db_create()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "inspection.settings",
        "SECRET_KEY": "reliability-faults-not-a-secret",
        "DATABASE_URL": db_url,
        "CELERY_BROKER_URL": BROKER,
        "CELERY_TASK_ALWAYS_EAGER": "0",
        "VAR_DIR": str(var),
        "STORAGE_ROOT": str(var / "media"),
        "FEATURE_CACHE_DIR": str(var / "cache"),
        "JOB_STALE_AFTER": "3600",  # the suite sweeps with its own window (STALE_S)
        # every training of the suite's one project starts cold, so a retried run can be
        # compared with the baseline run (a warm start would continue from the last model)
        "TRAIN_WARM_START": "0",
        "TRAIN_STEPS": TRAIN_STEPS,
        "PYTHONPATH": str(REPO),
        "LOG_LEVEL": "INFO",
    }
    os.environ.update({k: v for k, v in env.items() if k != "TRAIN_STEPS"})
    sys.path.insert(0, str(REPO))
    import django

    django.setup()
    from django.core.management import call_command

    from reliability._django import Tally, suite_report

    call_command("migrate", verbosity=0)
    tally = Tally("worker faults (Celery over Redis + PostgreSQL)")
    workers: list[Worker] = []
    try:
        run_suite(args.trials, env, var, tally, workers, only=set(args.only.split(",")))
    except Exception as exc:
        import traceback

        tally.case(False, f"suite aborted: {exc}\n{traceback.format_exc()[-3000:]}")
    finally:
        for w in workers:
            w.stop()
        up = redis_ensure_running()
        tally.case(up, "Redis is running at the end")
        # messages of killed workers wait unacked in db 5: drop them with the suite's data
        subprocess.run(
            ["redis-cli", "-p", "6379", "-n", BROKER.rsplit("/", 1)[-1], "flushdb"],
            capture_output=True,
            timeout=20,
        )
        from django.db import connections

        connections.close_all()
        db_drop()
    import re

    groups: dict[str, list[bool]] = {}
    for ok, detail in tally.details:
        m = re.match(
            r"(kill child|kill worker|restart Redis|time limit|baseline|JOB_TIME_LIMIT|this run|Redis is running|jobs still)",
            detail,
        )
        groups.setdefault(m.group(1) if m else "other", []).append(ok)
    for name, oks in groups.items():
        tally.note(f"  {name:20} checks {len(oks):3}  failures {oks.count(False)}")
    ended = [
        float(x) for _, d in tally.details for x in re.findall(r"ended \w+ after ([0-9.]+) s", d)
    ]
    if ended:
        tally.note(
            f"jobs hit by a fault ended (succeeded/failed) within {max(ended):.1f} s (bound {JOB_BOUND_S} s)"
        )
    code = suite_report(tally, "worker_faults")
    if os.environ.get("KEEP") != "1":
        import shutil

        shutil.rmtree(var, ignore_errors=True)
    return code


def run_suite(trials: int, env: dict, var: Path, tally, workers: list, *, only: set[str]) -> None:
    from django.conf import settings
    from django.contrib.auth import get_user_model

    from inspection.celery import app
    from inspection.errors import Unavailable
    from inspection.models import Job, ModelVersion
    from inspection.services.training import training_start

    # visibility timeout vs the longest job time limit, for the default and a long limit
    for limit in ("1800", "7200", "86400"):
        out = subprocess.run(
            [
                sys.executable,
                "-c",
                "from django.conf import settings as s; import django; django.setup(); "
                "print(s.CELERY_BROKER_TRANSPORT_OPTIONS['visibility_timeout'], s.CELERY_TASK_TIME_LIMIT)",
            ],
            cwd=REPO,
            env={**env, "JOB_TIME_LIMIT": limit},
            capture_output=True,
            text=True,
            timeout=60,
        )
        vis, hard = (int(x) for x in out.stdout.split())
        tally.case(
            vis > hard,
            f"JOB_TIME_LIMIT={limit}: visibility_timeout {vis} s > hard time limit {hard} s",
        )
    vis = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("visibility_timeout", 0)
    tally.case(
        vis > settings.CELERY_TASK_TIME_LIMIT,
        f"this run: visibility_timeout {vis} > {settings.CELERY_TASK_TIME_LIMIT}",
    )
    tally.note(
        f"visibility_timeout {vis} s; CELERY_TASK_TIME_LIMIT {settings.CELERY_TASK_TIME_LIMIT} s; soft {settings.CELERY_TASK_SOFT_TIME_LIMIT} s"
    )

    app.control.purge()
    user = get_user_model().objects.create_user("faults", password="a-long-faults-password-1")
    project = project_make(user)
    worker = Worker(env, var / "worker.log", "faults")
    workers.append(worker)
    worker.start()

    def train() -> Job:
        return training_start(project=project, user=user)

    def settle_all(label: str) -> None:
        """No job of the project stays active (bounded): sweep any whose worker died."""
        for job in Job.objects.filter(project=project, state__in=Job.ACTIVE_STATES):
            final, _ = sweep_until_final(job.id)
            tally.case(
                final.state in Job.FINAL_STATES,
                f"{label}: leftover job {job.id} ended {final.state}",
            )

    # baseline
    t0 = time.perf_counter()
    job = job_wait(train().id)
    tally.case(job.state == "succeeded", f"baseline training: {job.state} {job.error[:300]}")
    baseline = result_of(job) if job.state == "succeeded" else None
    tally.note(f"baseline training run: {time.perf_counter() - t0:.1f} s")

    def retried_same(label: str) -> None:
        job = job_wait(train().id)
        ok = job.state == "succeeded"
        detail = job.error[:300]
        if ok and baseline is not None:
            ok, detail = same_result(result_of(job), baseline)
        tally.case(ok, f"{label}: retried training {job.state}, result vs baseline: {detail}")

    def running(job_id):
        return job_wait(job_id, until=("running",), timeout=90, progress_min=6)

    # 1. kill the pool child mid-training
    for i in range(trials if "kill_child" in only else 0):
        label = f"kill child #{i + 1}"
        job = train()
        j = running(job.id)
        if j.state != "running":
            tally.case(False, f"{label}: job never ran ({j.state} {j.error[:200]})")
            settle_all(label)
            continue
        worker.kill_child()
        final, waited = sweep_until_final(job.id)
        tally.case(
            final.state in ("succeeded", "failed"),
            f"{label}: job ended {final.state} after {waited:.1f} s",
            waited,
        )
        tally.case(
            not ModelVersion.objects.filter(job_id=job.id)
            .exclude(artifact_sha256__regex=r"^[0-9a-f]{64}$")
            .exists(),
            f"{label}: no model version without a complete artifact",
        )
        for p in artifacts_check():
            tally.case(False, f"{label}: {p}")
        retried_same(label)
        settle_all(label)

    # 2. kill the whole worker mid-training, start a new one
    for i in range(trials if "kill_worker" in only else 0):
        label = f"kill worker #{i + 1}"
        job = train()
        j = running(job.id)
        if j.state != "running":
            tally.case(False, f"{label}: job never ran ({j.state})")
            settle_all(label)
            continue
        worker.kill_all()
        final, waited = sweep_until_final(job.id)
        tally.case(
            final.state in ("succeeded", "failed"),
            f"{label}: job ended {final.state} after {waited:.1f} s",
            waited,
        )
        for p in artifacts_check():
            tally.case(False, f"{label}: {p}")
        worker = Worker(env, var / "worker.log", "faults")
        workers.append(worker)
        worker.start()
        retried_same(label)
        settle_all(label)

    # 3. restart Redis mid-job (and try to start a job while it is down)
    for i in range(trials if "redis" in only else 0):
        label = f"restart Redis #{i + 1}"
        job = train()
        j = running(job.id)
        if j.state != "running":
            tally.case(False, f"{label}: job never ran ({j.state})")
            settle_all(label)
            continue
        try:
            redis_restart()
            t_down = time.perf_counter()
            try:
                # a second training is refused (one at a time), so probe with a predict refresh
                from inspection.services.predictions import predictions_refresh_start

                project.refresh_from_db()
                t1 = time.perf_counter()
                probe = predictions_refresh_start(
                    project=project, user=user, reason="probe while Redis is down"
                )
                dt = time.perf_counter() - t1
                if probe is not None:
                    probe.refresh_from_db()
                    tally.case(
                        probe.state == "failed" and "broker" in probe.message,
                        f"{label}: job enqueued while Redis is down ends failed ({probe.state}: {probe.message}) in {dt:.1f} s",
                    )
            except Unavailable as exc:
                dt = time.perf_counter() - t1
                tally.case(
                    dt < 30,
                    f"{label}: enqueue while Redis is down refused in {dt:.1f} s (503, job failed): {exc}",
                    dt,
                )
            time.sleep(1.0)
        finally:
            redis_ensure_running()
        tally.note(f"{label}: Redis down {time.perf_counter() - t_down:.1f} s")
        final, waited = sweep_until_final(job.id)
        tally.case(
            final.state in ("succeeded", "failed"),
            f"{label}: job ended {final.state} after {waited:.1f} s",
            waited,
        )
        for p in artifacts_check():
            tally.case(False, f"{label}: {p}")
        # the worker reconnects on its own: the next job runs
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not ping():
            time.sleep(0.5)
        retried_same(label)
        settle_all(label)

    # 4. exceed the job time limit (a worker with JOB_TIME_LIMIT=2 s, long training)
    worker.stop()
    slow = Worker(
        {**env, "JOB_TIME_LIMIT": "2", "TRAIN_STEPS": "100000"}, var / "worker-slow.log", "slow"
    )
    workers.append(slow)
    slow.start()
    # Celery writes the time limits into each message from the *sending* process's
    # configuration (bound into the task at import), so the enqueuing side must
    # agree, as web and worker do when they share the environment
    from inspection.tasks import training_run_task

    saved = training_run_task.soft_time_limit, training_run_task.time_limit
    training_run_task.soft_time_limit, training_run_task.time_limit = 2, 62
    training_run_task._exec_options = None  # Celery caches these options at first send
    for i in range(trials if "time_limit" in only else 0):
        label = f"time limit #{i + 1}"
        t1 = time.perf_counter()
        job = train()
        final, waited = sweep_until_final(job.id)
        elapsed = time.perf_counter() - t1
        ok = final.state == "failed" and "time limit" in final.message
        tally.case(ok, f"{label}: {final.state} '{final.message}' after {elapsed:.1f} s", elapsed)
        tally.case(
            not ModelVersion.objects.filter(job_id=job.id).exists(),
            f"{label}: no model version from the stopped job",
        )
        for p in artifacts_check():
            tally.case(False, f"{label}: {p}")
        settle_all(label)
    training_run_task.soft_time_limit, training_run_task.time_limit = saved
    training_run_task._exec_options = None
    slow.stop()

    if MAX_PROB_DIFF:
        tally.note(
            f"retried vs baseline: max |probability diff| {max(MAX_PROB_DIFF):.2e} over {len(MAX_PROB_DIFF)} retries (bound {PROB_ATOL})"
        )
    # nothing stays running
    active = Job.objects.filter(state__in=Job.ACTIVE_STATES).count()
    tally.case(active == 0, f"jobs still queued/running at the end: {active}")
    tally.note(
        f"jobs: {dict((s, Job.objects.filter(state=s).count()) for s in ('succeeded', 'failed', 'cancelled'))}; model versions: {ModelVersion.objects.count()}"
    )


if __name__ == "__main__":
    raise SystemExit(main())
