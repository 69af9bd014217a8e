"""Propagation benchmark, engine part: the work after the features, per image
(``python -m benchmarks.propagation --skip-service``).

The protocol's ten images (``benchmarks.protocol``, seed 0, the cold-start
strokes) train the learner; then every evaluation image is predicted
the way a propagation does it, by today's path (``benchmarks.predict_reference``:
the predict path and stored-file encodings of commit 3f4efde) and by the fast
path, interleaved image by image so both see the same load. Features come from
an in-memory cache for both (the same arrays), so the figures are the work after
the features: classifier, adaptation, guided filter, rules, overlay and mask
PNGs, probability file. The masks of both paths are compared pixel by pixel,
and the rules are re-run on the stored (quantised) probabilities to show what
a later rules change sees.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np

from benchmarks.quality_common import (
    CLASSES,
    MemoryCache,
    initial_prompts,
    prompts_paint,
    protocol_samples,
)

_COLOURS = [(230, 25, 75)]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def _median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000.0 if values else float("nan")


def engine_learner(samples, *, seed: int = 0):
    """(learner, backend, cache, evaluation samples): the protocol's cold start."""
    from prompting.features import backend_create
    from prompting.learner import TrainingImage, learner_train

    train, evaluation = protocol_samples(samples, seed)
    prompts = initial_prompts(train, seed)
    backend = backend_create("classic")
    cache = MemoryCache()
    images = [
        TrainingImage(
            s.image_id,
            s.rgb,
            prompts_paint(prompts[s.image_id], s.mask.shape),
            s.image_hash,
            all_background=not s.mask.any(),
        )
        for s in train
    ]
    learner = learner_train(images, classes=CLASSES, backend=backend, cache=cache, seed=seed)
    return learner.learner, backend, cache, evaluation


def _today(learner, fmap, rgb, ruleset) -> tuple[dict[str, float], np.ndarray]:
    from benchmarks.predict_reference import (
        png_encode_reference,
        predict_reference,
        probabilities_encode_reference,
        rules_reference,
    )
    from prompting.rules import rules_apply

    t = [time.perf_counter()]
    probs = predict_reference(learner, fmap)
    t.append(time.perf_counter())
    with rules_reference():
        decision = rules_apply(probs, classes=learner.classes, ruleset=ruleset)
    t.append(time.perf_counter())
    overlay = _overlay_reference(rgb, decision)
    png_encode_reference((decision.label_map > 0).astype(np.uint8) * 255)
    png_encode_reference(overlay)
    t.append(time.perf_counter())
    probabilities_encode_reference(probs)
    t.append(time.perf_counter())
    return _parts(t), decision.label_map > 0


def _overlay_reference(rgb, decision):
    """The overlay as commit 3f4efde rendered it (whole image in float32)."""
    from skimage.segmentation import find_boundaries

    labels = decision.label_map
    out = rgb.astype(np.float32)
    hit = labels > 0
    if hit.any():
        out[hit] = 0.55 * out[hit] + 0.45 * np.asarray(_COLOURS[0], np.float32)
        edges = find_boundaries(labels, mode="inner") & hit
        out[edges] = _COLOURS[0]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _now(learner, fmap, rgb, ruleset) -> tuple[dict[str, float], np.ndarray, bytes]:
    from prompting.images import png_encode
    from prompting.overlay import render_overlay
    from prompting.probmaps import probabilities_encode
    from prompting.rules import rules_apply

    t = [time.perf_counter()]
    probs = learner.predict_features(fmap)
    t.append(time.perf_counter())
    decision = rules_apply(probs, classes=learner.classes, ruleset=ruleset)
    t.append(time.perf_counter())
    overlay = render_overlay(rgb, decision.label_map, colours=_COLOURS)
    png_encode((decision.label_map > 0).astype(np.uint8) * 255, compress_level=1)
    png_encode(overlay, compress_level=1)
    t.append(time.perf_counter())
    stored = probabilities_encode(probs)
    t.append(time.perf_counter())
    return _parts(t), decision.label_map > 0, stored


def _parts(t: list[float]) -> dict[str, float]:
    return {
        "predict": t[1] - t[0],
        "rules": t[2] - t[1],
        "overlay+mask PNG": t[3] - t[2],
        "probability file": t[4] - t[3],
        "total": t[4] - t[0],
    }


def engine_bench(samples, *, n_images: int, runs: int) -> dict:
    """Median per-image times of both paths and the agreement of their masks."""
    from prompting.learner import features_for
    from prompting.probmaps import probabilities_decode
    from prompting.rules import DEFAULT_RULESET, rules_apply, ruleset_validate

    learner, backend, cache, evaluation = engine_learner(samples)
    ruleset = ruleset_validate(DEFAULT_RULESET)
    chosen = evaluation[:n_images]
    t_feat = []
    fmaps = []
    for s in chosen:
        t0 = time.perf_counter()
        fmaps.append(features_for(backend, s.rgb, cache=cache, image_hash=s.image_hash))
        t_feat.append(time.perf_counter() - t0)
    today: dict[str, list[float]] = {}
    now: dict[str, list[float]] = {}
    differ = inter = union = pixels = 0
    verdicts_same = 0
    stored_differ = 0
    for run in range(runs):
        for s, fmap in zip(chosen, fmaps, strict=True):
            a, mask_a = _today(learner, fmap, s.rgb, ruleset)
            b, mask_b, stored = _now(learner, fmap, s.rgb, ruleset)
            for k, v in a.items():
                today.setdefault(k, []).append(v)
            for k, v in b.items():
                now.setdefault(k, []).append(v)
            if run == 0:
                differ += int(np.count_nonzero(mask_a != mask_b))
                inter += int(np.count_nonzero(mask_a & mask_b))
                union += int(np.count_nonzero(mask_a | mask_b))
                pixels += mask_a.size
                verdicts_same += int(mask_a.any() == mask_b.any())
                again = rules_apply(
                    probabilities_decode(stored), classes=learner.classes, ruleset=ruleset
                )
                stored_differ += int(np.count_nonzero((again.label_map > 0) != mask_b))
    return {
        "n_images": len(chosen),
        "size": chosen[0].rgb.shape[:2] if chosen else (0, 0),
        "features_ms": _median_ms(t_feat),
        "today": {k: _median_ms(v) for k, v in today.items()},
        "now": {k: _median_ms(v) for k, v in now.items()},
        "pixels": pixels,
        "differ": differ,
        "iou": inter / union if union else 1.0,
        "stored_differ": stored_differ,
    }


def engine_table(result: dict) -> str:
    lines = [
        "| part (median per image) | today | now | speed-up |",
        "|---|---|---|---|",
    ]
    for part, old in result["today"].items():
        new = result["now"][part]
        label = f"**{part}**" if part == "total" else part
        lines.append(f"| {label} | {old:.1f} ms | {new:.1f} ms | {old / new:.1f}x |")
    return "\n".join(lines)
