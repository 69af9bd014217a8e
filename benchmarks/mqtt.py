"""MQTT across a broker restart: published, received, duplicated, lost.

    python -m benchmarks.mqtt [--inspections 300] [--down-after 100] [--down-for 100]

Self-contained: a temporary installation (SQLite, eager Celery, so each
inspection's flush runs right after it, as a worker would) whose project, with
a model trained on real magnetic tiles, publishes to our own Mosquitto on a
free loopback port (persistence on, as a plant broker; the machine's broker is
never touched). A real subscriber (persistent session, QoS 1) counts what
arrives. The broker is stopped after ``--down-after`` inspections and started
again ``--down-for`` inspections later; the run goes on to ``--inspections``.

Figures: inspections made, messages the broker acknowledged (published),
received by the subscriber, duplicated (an inspection id received more than
once), lost (an inspection never received), the backlog at its largest, and
the time from the broker's return to the backlog's end. Baseline: the same
run publishing straight from the request without the outbox, one QoS 1
``paho.mqtt.publish.single`` per decision (what a plain integration does): what
the broker misses is lost.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter

from benchmarks.serving import cpu_model, installation_start, line_build, tile_path, tiles


def _run(project, images, *, n: int, down_after: int, down_for: int, outbox: bool) -> dict:
    import paho.mqtt.publish as publish
    from django.conf import settings
    from django.test import override_settings

    from inspection.models import MqttMessage
    from inspection.services.inspections import inspection_run
    from tests.inspection.mqtt_helpers import Broker, Subscriber

    broker = Broker().start()
    prefix = f"bench-{'outbox' if outbox else 'direct'}"
    sub = Subscriber(broker.url, f"{prefix}/#", persistent=True)
    failed_direct = 0
    ids, backlog_max, drained_s = [], 0, None
    up_at = None
    with override_settings(MQTT_URL=broker.url, MQTT_TOPIC_PREFIX=prefix, MQTT_TIMEOUT=2.0):
        type(project).objects.filter(id=project.id).update(mqtt_publish=outbox)
        project.refresh_from_db()
        try:
            for i in range(n):
                if i == down_after:
                    broker.stop()
                if i == down_after + down_for:
                    broker.start()
                    up_at = time.monotonic()
                name, data = images[i % len(images)]
                ins = inspection_run(project=project, data=data, filename=name, station="cam-1")
                ids.append(str(ins.id))
                if not outbox:
                    body = {"event": "inspection.decision", "data": {"inspection": str(ins.id)}}
                    try:
                        publish.single(
                            f"{prefix}/{project.id}/cam-1/decision", json.dumps(body), qos=1,
                            hostname="127.0.0.1", port=broker.port,
                        )  # fmt: skip
                    except OSError:
                        failed_direct += 1
                if outbox:
                    pending = MqttMessage.objects.filter(published_at__isnull=True).count()
                    backlog_max = max(backlog_max, pending)
                    if up_at is not None and drained_s is None and pending == 0:
                        drained_s = time.monotonic() - up_at
            if outbox:
                from inspection.services.mqtt import mqtt_flush

                mqtt_flush()  # what beat's sweep does
            got = sub.wait_for(len(ids), timeout=20)
        finally:
            sub.close()
            broker.close()
        published = (
            MqttMessage.objects.filter(
                project=project, published_at__isnull=False, topic__startswith=prefix
            ).count()
            if outbox
            else len(ids) - failed_direct
        )
    received = Counter(body["data"]["inspection"] for _, _, body in got)
    return {
        "mode": "outbox (product)" if outbox else "publish.single per decision (baseline)",
        "inspections": len(ids),
        "published": published,
        "received": len(received),
        "duplicated": sum(c - 1 for c in received.values() if c > 1),
        "lost": len(set(ids) - set(received)),
        "backlog_max": backlog_max if outbox else None,
        "drained_s": drained_s,
        "broker": settings.MQTT_URL,
    }


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--inspections", type=int, default=300)
    ap.add_argument("--down-after", type=int, default=100)
    ap.add_argument("--down-for", type=int, default=100)
    ap.add_argument("--json", default="", help="also write the figures here")
    args = ap.parse_args()
    var = installation_start()
    import logging

    logging.getLogger("inspection").setLevel(
        logging.ERROR
    )  # the outage warnings, once per inspection
    project, _ = line_build()
    _, post = tiles(4, 40)
    images = [(tile_path(r).name, tile_path(r).read_bytes()) for r in post]
    rows = []
    for outbox in (True, False):
        t0 = time.perf_counter()
        row = _run(
            project,
            images,
            n=args.inspections,
            down_after=args.down_after,
            down_for=args.down_for,
            outbox=outbox,
        )
        row["seconds"] = round(time.perf_counter() - t0, 1)
        rows.append(row)
    print(
        f"\nMQTT across a broker restart: {args.inspections} inspections, broker (own Mosquitto 2, "
        f"persistence on) down from inspection {args.down_after} to {args.down_after + args.down_for}; "
        f"{cpu_model()}"
    )
    print(
        "| mode | inspections | published (acked) | received | duplicated | lost | backlog max | drained after return |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        drained = f"{r['drained_s']:.2f} s" if r["drained_s"] is not None else "-"
        print(
            f"| {r['mode']} | {r['inspections']} | {r['published'] if r['published'] is not None else '-'} | "
            f"{r['received']} | {r['duplicated']} | {r['lost']} | "
            f"{r['backlog_max'] if r['backlog_max'] is not None else '-'} | {drained} |"
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh)
    from reliability._django import django_stop

    django_stop(var)
    product = rows[0]
    return 0 if product["lost"] == 0 and product["duplicated"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
