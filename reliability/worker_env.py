"""The real services the worker-fault suite (``reliability.worker_faults``) runs
against: Redis (started with the CI command when it isn't answering, restarted
on demand), a PostgreSQL database of its own (created and dropped) and real
``celery worker`` processes it can kill."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PG_ADMIN = os.environ.get("RELIABILITY_PG", "postgres://postgres@127.0.0.1:5432/postgres")
DB_NAME = "reliability_worker_faults"
BROKER = os.environ.get("RELIABILITY_BROKER", "redis://127.0.0.1:6379/5")
REDIS_START = [
    "redis-server",
    "--daemonize",
    "yes",
    "--bind",
    "127.0.0.1",
    "-::1",
    "--port",
    "6379",
    "--save",
    "",
    "--appendonly",
    "no",
    "--dir",
    "/var/lib/redis",
    "--logfile",
    "/var/log/redis/ci.log",
]


# --- redis ---------------------------------------------------------------------
def redis_ping() -> bool:
    try:
        return (
            subprocess.run(
                ["redis-cli", "-p", "6379", "ping"], capture_output=True, text=True, timeout=5
            ).stdout.strip()
            == "PONG"
        )
    except Exception:
        return False


def redis_ensure_running() -> bool:
    """Start Redis with the CI command if it isn't answering; True when it answers."""
    for _ in range(3):
        if redis_ping():
            return True
        subprocess.run(REDIS_START, capture_output=True, timeout=20)
        for _ in range(50):
            if redis_ping():
                return True
            time.sleep(0.1)
    return redis_ping()


def redis_restart() -> float:
    """Shutdown (nosave) and start again; returns the downtime in seconds."""
    t0 = time.perf_counter()
    subprocess.run(
        ["redis-cli", "-p", "6379", "shutdown", "nosave"], capture_output=True, timeout=20
    )
    for _ in range(100):
        if not redis_ping():
            break
        time.sleep(0.05)
    return t0


# --- database ----------------------------------------------------------------------
def db_create(*, admin: str = PG_ADMIN, name: str = DB_NAME) -> str:
    """A fresh, empty PostgreSQL database ``name`` (dropped first if it exists),
    made through the ``admin`` URL; returns its URL."""
    import psycopg

    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return admin.rsplit("/", 1)[0] + f"/{name}"


def db_drop(*, admin: str = PG_ADMIN, name: str = DB_NAME) -> None:
    """Drop database ``name`` if it exists; never raises."""
    import psycopg

    with contextlib.suppress(Exception), psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- worker -----------------------------------------------------------------------
class Worker:
    """A real ``celery worker`` process (prefork, one child) in its own session."""

    def __init__(self, env: dict[str, str], log: Path, name: str) -> None:
        self.env, self.log_path, self.name = env, log, name
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 90) -> None:
        self.log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "inspection",
                "worker",
                "-Q",
                "embed,default,webhooks",
                "--pool=prefork",
                "--concurrency=1",
                "--loglevel=INFO",
                "--without-gossip",
                "--without-mingle",
                "--include=reliability.worker_setup",
                "-n",
                f"{self.name}-{os.getpid()}@%h",
            ],
            cwd=REPO,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"worker exited {self.proc.returncode}: {self.log_path.read_text()[-3000:]}"
                )
            if self.children() and any(r for r in ping() if any(self.name in k for k in r)):
                return
            time.sleep(0.3)
        raise RuntimeError(
            f"worker did not answer in {timeout} s: {self.log_path.read_text()[-3000:]}"
        )

    def children(self) -> list[int]:
        if self.proc is None:
            return []
        out = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.proc.pid:
                out.append(int(stat.parent.name))
        return out

    def kill_child(self) -> int:
        kids = self.children()
        if not kids:
            raise RuntimeError("the worker has no pool child to kill")
        os.kill(kids[0], signal.SIGKILL)
        return kids[0]

    def kill_all(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill_all()
        with contextlib.suppress(Exception):
            self.log.close()


def ping() -> list:
    """Worker replies to a control ping ([] when none, or the broker is unreachable)."""
    from inspection.celery import app

    try:
        return app.control.ping(timeout=1.0) or []
    except Exception:  # the suite's own broker connection died with Redis: retry later
        return []
