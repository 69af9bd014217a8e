"""Hostile prompts, rule sets and project settings: every one rejected with a
field error, each within a bounded time and memory.

Bodies are sent raw (``NaN``, ``Infinity``, ``1e999``, 10^5-point strokes,
100,000-deep nesting, megabytes of rules), as a hostile client would.

    python -m reliability.prompts_rules
"""

from __future__ import annotations

import json
import time
import tracemalloc
from dataclasses import dataclass

from reliability.world import stroke

#: generous bounds asserted per request (2 shared CPU cores): wall time, and
#: the peak of Python + numpy allocations traced while the request runs
MAX_SECONDS = 5.0
MAX_PEAK_BYTES = 256 * 1024 * 1024


@dataclass
class Hostile:
    name: str
    method: str
    path: str  # template over world ids
    body: bytes
    field: str  # a field the 400 must name ("" : a request-level error with a detail)
    statuses: tuple[int, ...] = (400,)


def _j(obj) -> bytes:
    return json.dumps(obj, allow_nan=True).encode()


def _nested(depth: int, leaf: str = "1") -> str:
    return "[" * depth + leaf + "]" * depth


def cases() -> list[Hostile]:
    out: list[Hostile] = []
    P = "/api/v1/images/{image}/prompts/"
    R = "/api/v1/projects/{project}/rules/"
    B = "/api/v1/projects/{project}/rules/backtest/"
    PR = "/api/v1/projects/"
    PD = "/api/v1/projects/{project}/"
    T = "/api/v1/projects/{project}/rules/tune/"
    RV = "/api/v1/inspections/{inspection}/review/"
    S = "/api/v1/images/{image}/segment/"

    def prompt(name, body, field="points", statuses=(400,)):
        out.append(
            Hostile(
                f"prompt: {name}",
                "POST",
                P,
                body if isinstance(body, bytes) else _j(body),
                field,
                statuses,
            )
        )

    # coordinates out of range, NaN, infinities, huge values (image is 48x48)
    # x in [0, W], y in [0, H] are inside (continuous pixel-edge coordinates)
    for pts in (
        [[-1, 5]],
        [[48.5, 5]],
        [[5, 49]],
        [[1e9, 1e9]],
        [[-1e308, 0]],
        [[1e308, 1e308]],
        [[5, 5], [5, 49.0001]],
    ):
        prompt(f"stroke points {str(pts)[:30]}", stroke("scratch", pts))
    for token in (
        "NaN",
        "Infinity",
        "-Infinity",
        "1e999",
        "-1e999",
        "1" + "0" * 400,
        "-" + "9" * 5000,
    ):
        body = (
            b'{"kind": "stroke", "label": "scratch", "radius": 2, "points": [['
            + token.encode()
            + b", 5], [6, 6]]}"
        )
        prompt(
            f"coordinate {token[:12]}", body, field=""
        )  # NaN/inf literals are refused by the parser
    for radius in (-1, 0, 201, 1e9, "NaN", "inf", "1e999", "big", None, [], {}):
        d = stroke("scratch", [[5, 5], [10, 10]])
        d["radius"] = radius
        prompt(f"radius {radius!r}", d, field="radius")
    # 10^5-point stroke (engine limit 10^4) and 10^4 + 1
    prompt(
        "stroke of 100,000 points",
        stroke("scratch", [[i % 40 + 1, i % 30 + 1] for i in range(100_000)]),
    )
    prompt(
        "stroke of 10,001 points",
        stroke("scratch", [[i % 40 + 1, i % 30 + 1] for i in range(10_001)]),
    )
    # unknown classes and regex-like strings
    for label in (
        "rust",
        "",
        "Background ",
        "scratch\x00",
        "__proto__",
        "x" * 10_000,
        "(a+)+$",
        ".*",
        "[",
        "\\d{1,99999}",
        "scratch|background",
        "${jndi:ldap://x}",
    ):
        prompt(f"label {label[:20]!r}", stroke(label, [[5, 5], [10, 10]]), field="label")
    # kinds, shapes, types
    for kind in ("mask", 1, None, [], "STROKE", "stroke\x00", "Polygon"):
        d = stroke("scratch", [[5, 5], [10, 10]])
        d["kind"] = kind
        prompt(f"kind {kind!r}", d, field="kind")
    for pts in (
        [],
        [[1]],
        [[1, 2, 3]],
        [["a", "b"]],
        "1,2",
        {"x": 1},
        [[True, False]],
        None,
        [[None, None]],
        [[[1, 2]]],
        5,
    ):
        prompt(f"points {str(pts)[:20]}", stroke("scratch", [[5, 5]]) | {"points": pts})
    prompt(
        "points nested 10,000 deep",
        b'{"kind": "stroke", "label": "scratch", "radius": 2, "points": '
        + _nested(10_000).encode()
        + b"}",
        field="",
    )
    prompt("body nested 100,000 deep", _nested(100_000).encode(), field="")
    prompt("body is a list", _j([stroke("scratch", [[5, 5]])]), field="")
    prompt("body is a string", _j("stroke"), field="")
    prompt("body is null", b"null", field="")
    prompt("body is not JSON", b"{kind: stroke", field="")
    prompt(
        "box with 3 points", {"kind": "box", "label": "scratch", "points": [[1, 1], [5, 5], [9, 9]]}
    )
    # an inverted box is normalised to XYXY (201) or refused naming points
    prompt(
        "box inverted",
        {"kind": "box", "label": "scratch", "points": [[20, 20], [5, 5]]},
        statuses=(201, 400),
    )
    prompt("point with 2 points", {"kind": "point", "label": "scratch", "points": [[1, 1], [2, 2]]})
    # polygons (a mask accepted as labels): a region, nothing else
    poly = {"kind": "polygon", "label": "scratch", "points": [[2, 2], [20, 2], [20, 15]]}
    prompt("polygon with 2 points", poly | {"points": [[2, 2], [20, 2]]})
    prompt("polygon without area", poly | {"points": [[2, 2], [10, 10], [20, 20]]})
    prompt("polygon of 4,001 points", poly | {"points": [[i % 40, i % 30] for i in range(4_001)]})
    prompt("polygon of 100,000 points", poly | {"points": [[5, 5]] * 100_000})
    prompt(
        "polygon outside the image",
        poly | {"points": [[2, 2], [900, 2], [20, 15]]},
        field="points[1]",
    )
    prompt("polygon with a radius", poly | {"radius": 3}, field="radius")
    prompt("polygon not positive", poly | {"positive": False}, field="positive")
    prompt(
        "polygon self-crossing",
        poly | {"points": [[2, 2], [20, 15], [20, 2], [2, 15]]},
        statuses=(201, 400),
    )
    prompt(
        "positive not a boolean",
        {"kind": "point", "label": "scratch", "points": [[1, 1]], "positive": "maybe"},
        field="positive",
    )
    # segment: hostile prompt lists are refused before SAM is even consulted
    out.append(
        Hostile(
            "segment: 201 prompts",
            "POST",
            S,
            _j({"prompts": [{"kind": "point", "label": "scratch", "points": [[1, 1]]}] * 201}),
            "prompts",
        )
    )
    out.append(Hostile("segment: prompts not a list", "POST", S, _j({"prompts": "x"}), "prompts"))
    out.append(Hostile("segment: a polygon", "POST", S, _j({"prompts": [poly]}), "prompts[0].kind"))
    out.append(
        Hostile(
            "segment: output format", "POST", S, _j({"prompts": [{}], "output": "svg"}), "output"
        )
    )

    # --- rules -------------------------------------------------------------------------
    def rules(name, data, field, raw: bytes | None = None, path=R, method="PUT"):
        body = raw if raw is not None else _j({"rules": data} if path in (B, T) else data)
        out.append(Hostile(f"rules: {name}", method if path == R else "POST", path, body, field))

    base = {
        "connectivity": 8,
        "classes": {},
        "rules": [
            {"id": "r1", "type": "blob_area", "class": "*", "min_area_px": 10, "severity": "major"}
        ],
    }
    rules("not an object (list)", [], "rules")
    rules("not an object (string)", "x", "rules")
    rules("null", None, "rules")
    for conn in (5, "8", 0, -4, 1e308, None):
        rules(f"connectivity {conn!r}", base | {"connectivity": conn}, "connectivity")
    rules("connectivity NaN", None, "", raw=b'{"connectivity": NaN}')
    for thr in (-0.1, 1.1, "0.5", None, [], 1e308):
        rules(f"threshold {thr!r}", base | {"classes": {"scratch": {"threshold": thr}}}, "classes")
    for step in (
        {"op": "explode", "radius": 1},
        {"op": "dilation", "radius": -1},
        {"op": "dilation", "radius": 10**9},
        {"op": "dilation", "radius": 10**30},
        {"op": "dilation", "radius": 2.5},
        {"op": "fill_holes", "max_area": -5},
        {"op": "remove_small"},
        {"op": "opening", "radius": "(a+)+"},
        {"op": None},
    ):
        rules(
            f"morphology {str(step)[:40]}",
            base | {"classes": {"scratch": {"morphology": [step]}}},
            "classes",
        )
    rules(
        "100,000 morphology steps",
        base
        | {"classes": {"scratch": {"morphology": [{"op": "dilation", "radius": 1}] * 100_000}}},
        "classes",
    )
    for flt in (
        {"measure": "colour"},
        {"measure": "area_px", "min": 10, "max": 1},
        {"measure": "area_px", "min": "NaN"},
        {"measure": "eccentricity", "min": -1e308},
    ):
        rules(
            f"filter {str(flt)[:40]}",
            base | {"classes": {"scratch": {"filters": [flt]}}},
            "classes",
        )
    for poly in (
        [[0, 0], [1, 1]],
        [[0, 0], [1e308, 0], [0, 1e308]],
        [[i, i % 7] for i in range(100_000)],
        [["a", 0], [1, 1], [2, 2]],
        _nested(3),
    ):
        rules(f"region {str(poly)[:30]}", base | {"regions": {"ignore": [poly]}}, "regions")
    rules(
        "100,000 regions",
        base | {"regions": {"include": [[[0, 0], [5, 0], [0, 5]]] * 100_000}},
        "regions",
    )
    for rule in (
        {"id": "x", "type": "magic"},
        {
            "id": "x" * 10_000,
            "type": "blob_area",
            "class": "*",
            "min_area_px": 1,
            "severity": "major",
        },
        {"id": "(a+)+$", "type": "blob_area", "class": "*", "min_area_px": -1, "severity": "major"},
        {"id": "r", "type": "blob_area", "class": "*", "min_area_px": 1, "severity": "fatal"},
        {"id": "r", "type": "blob_area", "class": "rust", "min_area_px": 1, "severity": "major"},
        {"id": "r", "type": "area_fraction", "class": "*", "min_fraction": 2, "severity": "minor"},
        {"id": "r", "type": "blob_count", "class": "*", "min_count": 10**40, "severity": "minor"},
        {"id": ".*", "type": "blob_area", "class": "[", "min_area_px": 1, "severity": "major"},
    ):
        rules(f"rule {str(rule)[:50]}", base | {"rules": [rule]}, "rules")
    rules(
        "100,000 rules (over the body limit)",
        None,
        "",
        raw=_j({"rules": base | {"rules": base["rules"] * 100_000}}),
    )
    rules(
        "10,000 classes",
        base | {"classes": {f"c{i}": {"threshold": 0.5} for i in range(10_000)}},
        "classes",
    )
    rules("unknown class", base | {"classes": {"rust": {"threshold": 0.5}}}, "classes")
    rules("regex-like class key", base | {"classes": {"(a+)+$": {"threshold": 0.5}}}, "classes")
    rules("unknown top-level key", base | {"exec": "rm -rf /"}, "exec")
    rules(
        "nested 10,000 deep",
        None,
        "",
        raw=b'{"connectivity": 8, "regions": {"ignore": ' + _nested(10_000).encode() + b"}}",
    )
    rules("nested 100,000 deep", None, "", raw=_nested(100_000).encode())
    rules("4 MB of junk keys", base | {"junk": {f"k{i}": "v" * 30 for i in range(100_000)}}, "junk")
    rules(
        "body over DATA_UPLOAD_MAX_MEMORY_SIZE",
        None,
        "",
        raw=b'{"rules": [' + b"1," * 3_000_000 + b"1]}",
    )
    rules("backtest with hostile rules", base | {"connectivity": 3}, "connectivity", path=B)
    rules("backtest rules not an object", "x", "rules", path=B)
    rules("backtest nested 100,000 deep", None, "", raw=_nested(100_000).encode(), path=B)
    rules("tune from hostile rules", base | {"connectivity": 3}, "connectivity", path=T)
    rules("tune from rules not an object", "x", "rules", path=T)
    rules(
        "tune from a rule of an unknown class",
        base
        | {
            "rules": [
                {
                    "id": "r",
                    "type": "blob_area",
                    "class": "rust",
                    "min_area_px": 1,
                    "severity": "major",
                }
            ]
        },
        "rules[0].class",
        path=T,
    )
    rules("tune nested 100,000 deep", None, "", raw=_nested(100_000).encode(), path=T)

    # --- project settings --------------------------------------------------------------
    def project(name, data, field, path=PR, raw=None, statuses=(400,)):
        out.append(
            Hostile(
                f"project: {name}",
                "POST" if path == PR else "PATCH",
                path,
                raw if raw is not None else _j(data),
                field,
                statuses,
            )
        )

    for classes in (
        [],
        ["background"],
        ["(a+)+$"],
        ["x" * 1000],
        [f"c{i}" for i in range(100_000)],
        [{"name": "a", "colour": "red"}],
        [["a"]],
        "scratch",
        ["a", "a"],
    ):
        project(f"classes {str(classes)[:30]}", {"name": "p", "classes": classes}, "classes")
    project("px_per_mm NaN", None, "", raw=b'{"name": "p", "classes": ["a"], "px_per_mm": NaN}')
    project("px_per_mm 1e999", None, "", raw=b'{"name": "p", "classes": ["a"], "px_per_mm": 1e999}')
    project("px_per_mm negative", {"name": "p", "classes": ["a"], "px_per_mm": -1}, "px_per_mm")
    project(
        "cold_start_min huge",
        {"name": "p", "classes": ["a"], "cold_start_min": 10**30},
        "cold_start_min",
    )
    project("name of 1 MB", {"name": "n" * 1_000_000, "classes": ["a"]}, "name")
    project("backend unknown", {"name": "p", "classes": ["a"], "backend": "../../etc"}, "backend")
    project(
        "patch classes removing a used class",
        {"classes": ["other"]},
        "classes",
        path=PD,
        statuses=(409,),
    )
    project("patch backend regex", {"backend": ".*"}, "backend", path=PD)
    for value in (0, -1, 1.5, float("inf"), "often", [0.2], True):
        project(
            f"patch alert_ng_rate {value!r}",
            None,
            "alert_ng_rate",
            path=PD,
            raw=_j({"alert_ng_rate": value})
            if value != float("inf")
            else b'{"alert_ng_rate": 1e999}',
        )
    for value in (0, 4, 10**6, 2.5, "fifty", None):
        project(f"patch alert_window {value!r}", {"alert_window": value}, "alert_window", path=PD)
    for value in (-1, 63, 8193, 10**30, 512.5, "4k", True, None, [1024]):
        project(
            f"patch work_max_side {value!r}", {"work_max_side": value}, "work_max_side", path=PD
        )
    project(
        "work_max_side below the smallest",
        {"name": "p", "classes": ["a"], "work_max_side": 10},
        "work_max_side",
    )
    for keep in ("../etc", "ALL", ["all"], 1, None):
        project(
            f"patch keep_inspection_images {keep!r}",
            {"keep_inspection_images": keep},
            "keep_inspection_images",
            path=PD,
        )

    # --- reviews of logged decisions -------------------------------------------------------
    def review(name, data, field, raw=None):
        out.append(
            Hostile(f"review: {name}", "POST", RV, raw if raw is not None else _j(data), field)
        )

    for verdict in ("maybe", "ok", ["NG"], None, 1, ""):
        review(f"verdict {verdict!r}", {"verdict": verdict}, "verdict")
    review("no verdict", {"note": "x"}, "verdict")
    review("note of 1 MB", {"verdict": "NG", "note": "n" * 1_000_000}, "note")
    review("note not a string", {"verdict": "NG", "note": {"a": 1}}, "note")
    review("nested 100,000 deep", None, "", raw=_nested(100_000).encode())
    review(
        "body over DATA_UPLOAD_MAX_MEMORY_SIZE",
        None,
        "",
        raw=b'{"verdict": "NG", "note": "' + b"x" * 3_000_000 + b'"}',
    )
    return out


def case_run(client, world, case: Hostile) -> tuple[list[str], float, int]:
    """(problems, seconds, peak bytes) for one hostile request (rolled back)."""
    from django.db import transaction

    url = case.path.format(**world.ids)
    tracing = tracemalloc.is_tracing()
    if tracing:
        tracemalloc.reset_peak()
    with transaction.atomic():
        t0 = time.perf_counter()
        resp = client.generic(case.method, url, case.body, content_type="application/json")
        dt = time.perf_counter() - t0
        transaction.set_rollback(True)
    peak = tracemalloc.get_traced_memory()[1] if tracing else 0
    problems = []
    if resp.status_code in (201,) and 201 in case.statuses:
        return problems, dt, peak
    if resp.status_code >= 500:
        problems.append(f"server error {resp.status_code}")
    elif resp.status_code not in case.statuses and not (
        case.field == "" and resp.status_code in (400, 413)
    ):
        problems.append(
            f"status {resp.status_code}, expected {case.statuses}: {resp.content[:200]!r}"
        )
    else:
        try:
            body = resp.json()
        except Exception:
            body = None
        if not isinstance(body, dict) or not body.get("detail"):
            problems.append(f"no JSON detail: {resp.content[:200]!r}")
        elif case.field:
            errors = body.get("errors") or {}
            if not any(k == case.field or k.startswith(case.field) for k in errors):
                problems.append(f"400 does not name {case.field!r}: {str(body)[:300]}")
    if dt > MAX_SECONDS:
        problems.append(f"took {dt:.2f} s > {MAX_SECONDS} s")
    if peak > MAX_PEAK_BYTES:
        problems.append(f"peak memory {peak / 2**20:.0f} MiB > {MAX_PEAK_BYTES / 2**20:.0f} MiB")
    return problems, dt, peak


def main() -> int:
    from reliability._django import suite_run

    def body(world, tally, var) -> None:
        from django.conf import settings

        from reliability.access import client_for

        client = client_for(world, "owner")
        all_cases = cases()
        peaks = []
        for case in all_cases:
            problems, dt, _ = case_run(client, world, case)  # timed without tracing
            tracemalloc.start()
            more, _, peak = case_run(client, world, case)  # again, for the traced memory peak
            tracemalloc.stop()
            problems += [p for p in more if p.startswith("peak memory")]
            peaks.append(peak)
            tally.case(not problems, f"{case.name}: {'; '.join(problems)}", dt)
        tally.note(
            f"bounds asserted per request: {MAX_SECONDS} s, {MAX_PEAK_BYTES // 2**20} MiB traced peak; max traced peak seen {max(peaks) / 2**20:.1f} MiB"
        )
        tally.note(
            f"DATA_UPLOAD_MAX_MEMORY_SIZE = {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes (bodies over it: 413 JSON before parsing)"
        )

    return suite_run("prompts_rules", "hostile prompts and rules", body)


if __name__ == "__main__":
    raise SystemExit(main())
