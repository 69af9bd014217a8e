"""Line stations: an inspection answered in LandingEdge's protocol.

A station is one listener bound to one project; what it is allowed to do is
exactly ``POST /images`` (see ``inspection.stations.app``). Each image is a
normal inspection of the project's deployed model and active rules, logged
like every other one (station and part from the request's metadata).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from inspection.errors import Conflict
from inspection.models import Project
from inspection.services.inspections import inspection_classes, inspection_run_result
from inspection.stations.landingedge import segmentation_answer

log = logging.getLogger("inspection.stations")

#: clients a station answers when no allow-list is given: this machine only
DEFAULT_ALLOW = ("127.0.0.0/8", "::1/128")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def networks_parse(values: Sequence[str]) -> tuple[Network, ...]:
    """``["10.0.0.0/24", "192.168.1.7"]`` -> networks; ``ValueError`` names the bad one.

    >>> [str(n) for n in networks_parse(["10.0.0.0/24", "::1"])]
    ['10.0.0.0/24', '::1/128']
    """
    out = []
    for value in values:
        for item in str(value).split(","):
            item = item.strip()
            if not item:
                continue
            try:
                out.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ValueError(f"not an IP address or network: {item!r}") from None
    return tuple(out)


@dataclass(frozen=True)
class Station:
    """A station's settings: its ``name`` (logged as the inspection's station
    when the request's metadata names none), the ``project_id`` whose deployed
    model and rules it serves, and the client ``allow`` networks."""

    name: str
    project_id: str
    allow: tuple[Network, ...] = field(default_factory=lambda: networks_parse(DEFAULT_ALLOW))

    def allows(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address((address or "").split("%")[0])
        except ValueError:
            return False
        if ip.version == 6 and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in net for net in self.allow)


def station_project_get(*, station: Station) -> Project:
    """The station's project; 409 when it was deleted under the running station."""
    project = Project.objects.filter(id=station.project_id).first()
    if project is None:
        raise Conflict(f"station {station.name}: its project no longer exists", code="no_project")
    return project


def station_inspect(
    *, station: Station, data: bytes, filename: str = "", metadata: dict[str, str]
) -> dict:
    """Inspect ``data`` for ``station``'s project; answer LandingEdge's
    segmentation JSON with our decision beside it.

    ``metadata``: parsed ``InferenceMetadata`` fields. The inspection's station
    is ``inspection_station_id`` (else the station's name), its part id
    ``image_id``; ``location_id`` and ``capture_timestamp`` are echoed back.
    """
    project = station_project_get(station=station)
    ins, result = inspection_run_result(
        project=project,
        data=data,
        filename=filename or metadata.get("image_id", ""),
        station=metadata.get("inspection_station_id") or station.name,
        part_id=metadata.get("image_id", ""),
    )
    t = ins.timings
    latency = {
        "preprocess_s": round(t.get("decode_ms", 0.0) / 1000, 6),
        "infer_s": round(t.get("predict_ms", 0.0) / 1000, 6),
        "postprocess_s": round((t.get("rules_ms", 0.0) + t.get("input_ms", 0.0)) / 1000, 6),
        "total_s": round(t.get("total_ms", 0.0) / 1000, 6),
    }
    log.info(
        "station %s: inspection %s %s (station %r, part %r) in %.1f ms",
        station.name,
        ins.id,
        ins.verdict,
        ins.station,
        ins.part_id,
        t.get("total_ms", 0.0),
    )
    classes = inspection_classes(ins)
    masks, region_scores = _decision_masks(result, classes)
    return segmentation_answer(
        model_id=str(ins.model_version_id),
        classes=classes,
        masks=masks,
        probabilities=result.probabilities,
        region_scores=region_scores,
        latency=latency,
        extra={
            "inspection": str(ins.id),
            "verdict": ins.verdict,
            "severity": ins.severity or None,
            "reasons": ins.reasons,
            "blobs": ins.blobs,
            "uncertainty": ins.uncertainty,
            "input_ok": ins.input_ok,
            "station": ins.station,
            "part_id": ins.part_id,
            "location_id": metadata.get("location_id", ""),
            "capture_timestamp": metadata.get("capture_timestamp", ""),
            "rules_version": ins.ruleset.version if ins.ruleset_id else None,
        },
    )


def _decision_masks(result: Any, classes: list[str]) -> tuple[dict[str, Any], dict[str, float]]:
    """(``result``'s decision's masks, computed once: every class, then the anomaly
    regions it reported; the regions' scores). An anomaly region's score is its
    pixels' mean anomaly score (1.0 = the good parts' level, so not a
    probability: it can exceed 1)."""
    # deferred: the rules engine loads scipy, which the web process does not need at start
    from prompting.rules.types import ANOMALY_CLASS

    masks = result.decision.masks(classes)
    regions = masks.get(ANOMALY_CLASS)
    if regions is None:
        return masks, {}
    if result.anomaly is None:
        masks.pop(ANOMALY_CLASS)
        return masks, {}
    score = float(result.anomaly[regions].mean()) if regions.any() else 0.0
    return masks, {ANOMALY_CLASS: score}
