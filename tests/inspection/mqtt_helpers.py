"""A real MQTT subscriber and a private Mosquitto broker, for the MQTT tests and
``benchmarks.mqtt`` (imported as ``tests.inspection.mqtt_helpers``)."""

from __future__ import annotations

import getpass
import json
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def reachable(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=2).close()
        return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """Our own ``mosquitto`` on a free loopback port, with persistence (so a
    restart keeps a persistent session's queued messages, as a plant's broker
    does); ``stop()`` is a graceful shutdown (SIGTERM, which saves its state),
    ``start()`` brings it back on the same port and state. Never the system's."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root or tempfile.mkdtemp(prefix="mosquitto-"))
        self.port = free_port()
        self.conf = self.root / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            # run as whoever starts it (as root it would become user mosquitto, who
            # can't write its persistence file in our temporary folder)
            f"user {getpass.getuser()}\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {self.root}/\n"
            "autosave_interval 1\n"
            f"log_dest file {self.root}/mosquitto.log\n"
        )
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> Broker:
        if not os.path.exists(MOSQUITTO):
            raise RuntimeError(f"{MOSQUITTO} not found: apt-get install mosquitto")
        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 15
        while not reachable("127.0.0.1", self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"mosquitto did not start on {self.port}: {err[-1000:]}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        deadline = time.monotonic() + 10
        while reachable("127.0.0.1", self.port) and time.monotonic() < deadline:
            time.sleep(0.05)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


class Subscriber:
    """A real subscriber at QoS 1 to ``topic_filter``, reconnecting by itself;
    ``persistent``: a persistent session (clean_session off: the broker queues
    its messages while it is away; only on our own brokers, never leave one on
    the system's); ``messages`` holds (topic, qos, payload dict) in arrival order."""

    def __init__(self, url: str, topic_filter: str, *, persistent: bool = False) -> None:
        from urllib.parse import urlsplit

        import paho.mqtt.client as mqtt

        parts = urlsplit(url)
        self.topic_filter = topic_filter
        self.messages: list[tuple[str, int, dict]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"test-sub-{os.getpid()}-{free_port()}",
            clean_session=not persistent,
        )
        self.client.reconnect_delay_set(min_delay=0.05, max_delay=0.5)
        self.client.enable_logger(logging.getLogger("tests.mqtt"))  # not "not connected" on stderr
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a, **k: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(parts.hostname, parts.port or 1883, keepalive=10)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise RuntimeError(f"subscriber: no SUBACK from {url}")

    def _on_connect(self, client, userdata, flags, reason_code, properties=None):
        client.subscribe(self.topic_filter, qos=1)

    def _on_message(self, client, userdata, msg):
        with self._lock:
            self.messages.append((msg.topic, msg.qos, json.loads(msg.payload)))

    def wait_for(self, n: int, timeout: float = 15.0) -> list[tuple[str, int, dict]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.messages) >= n:
                    break
            time.sleep(0.02)
        time.sleep(0.3)  # anything beyond n (a duplicate) would arrive now
        with self._lock:
            return list(self.messages)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
