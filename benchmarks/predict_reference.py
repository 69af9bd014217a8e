"""The learner's predict path and the stored-prediction encoding as they were at
commit 3f4efde, kept verbatim so the benchmarks and tests can measure the fast
path (``prompting.learner``) against them in the same run; and the storing of a
prediction as it was at commit a8e0d77 (blob measures by ``regionprops``, PNGs
by PIL, a lookup and a transaction per row), for ``benchmarks.prediction_store``.

Not used by the product.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import asdict

import numpy as np

from prompting.classifier import Learner
from prompting.errors import ArtifactError
from prompting.features.base import FeatureMap
from prompting.mlp import ADAPT_CONFIDENCE, ADAPT_MAX_LOGIT, ADAPT_MIN_PIXELS


def _relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0, out=x)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def _mlp_forward(weights: list[np.ndarray], x: np.ndarray) -> np.ndarray:
    """Logits (N, K+1) of standardised inputs x (N, F)."""
    h = x
    n_layers = len(weights) // 2
    for i in range(n_layers):
        h = h @ weights[2 * i] + weights[2 * i + 1]
        if i < n_layers - 1:
            h = _relu(h)
    return h


def _adapt_per_image(probs: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Transductive per-image refinement of (N, K+1) probabilities.

    For each class, confident pixels of this image (class vs background, p >=
    ``ADAPT_CONFIDENCE``) fit a linear discriminant on the fine-scale features
    ``x`` (N, F'); its clipped log-likelihood ratio is added to the class logit.
    A defect is thus re-described with the image's own grey levels, which
    sharpens boundaries and removes halos; images without confident defect
    pixels are left unchanged.
    """
    out = probs.copy()
    bg = probs[:, 0] >= ADAPT_CONFIDENCE
    n = len(x)
    step = max(1, n // 20000)
    for k in range(1, probs.shape[1]):
        fg = probs[:, k] >= ADAPT_CONFIDENCE
        if fg.sum() < ADAPT_MIN_PIXELS or bg.sum() < ADAPT_MIN_PIXELS:
            continue
        xf = x[fg][:: max(1, int(fg.sum()) // 5000)].astype(np.float64)
        xb = x[bg][:: max(1, int(bg.sum()) // 5000 + step - 1)].astype(np.float64)
        mf, mb = xf.mean(axis=0), xb.mean(axis=0)
        cov = (np.cov(xf, rowvar=False) * len(xf) + np.cov(xb, rowvar=False) * len(xb)) / (
            len(xf) + len(xb)
        )
        cov = np.atleast_2d(cov) + 0.05 * np.eye(x.shape[1])
        w = np.linalg.solve(cov, mf - mb)
        b = -0.5 * float((mf + mb) @ w)
        llr = np.clip(x @ w.astype(np.float32) + np.float32(b), -ADAPT_MAX_LOGIT, ADAPT_MAX_LOGIT)
        out[:, k] = probs[:, k] * np.exp(llr)
    out /= out.sum(axis=1, keepdims=True)
    return out


def _box(img: np.ndarray, radius: int) -> np.ndarray:
    from scipy import ndimage as ndi

    return ndi.uniform_filter(img, size=2 * radius + 1, mode="reflect")


def _guided_filter(probs: np.ndarray, guide: np.ndarray, *, radius: int, eps: float) -> np.ndarray:
    """Edge-aware refinement of (K+1,h,w) probabilities by a grey guide (He et al. 2010).

    Locally the output is a linear function of the guide, so a probability edge
    snaps to the image edge (a crack's halo, a blob's rim). Renormalised.
    """
    g = guide.astype(np.float32)
    mean_g = _box(g, radius)
    var_g = _box(g * g, radius) - mean_g * mean_g
    out = np.empty_like(probs)
    for k in range(probs.shape[0]):
        p = probs[k]
        mean_p = _box(p, radius)
        a = (_box(g * p, radius) - mean_g * mean_p) / (var_g + eps)
        b = mean_p - a * mean_g
        out[k] = _box(a, radius) * g + _box(b, radius)
    np.clip(out, 1e-4, 1.0, out=out)
    out /= out.sum(axis=0, keepdims=True)
    return out


def _upsample(probs: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize (C,h,w) -> (C,H,W), cell centres aligned; renormalised."""
    from scipy import ndimage as ndi

    c, h, w = probs.shape
    big_h, big_w = size
    ys = np.clip((np.arange(big_h) + 0.5) * h / big_h - 0.5, 0, h - 1)
    xs = np.clip((np.arange(big_w) + 0.5) * w / big_w - 0.5, 0, w - 1)
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    out = np.stack([ndi.map_coordinates(p, [yy, xx], order=1, mode="nearest") for p in probs])
    out /= np.maximum(out.sum(axis=0, keepdims=True), 1e-6)
    return out.astype(np.float32)


def predict_features_reference(self: Learner, fmap: FeatureMap) -> np.ndarray:
    """(K+1,H,W) float32 probabilities from a FeatureMap, upsampled to the image size."""
    feats = fmap.features
    if feats.ndim != 3 or feats.shape[2] != self.n_features:
        raise ArtifactError(
            f"model expects {self.n_features} features per pixel, backend gave "
            f"{feats.shape[-1] if feats.ndim == 3 else feats.shape}; wrong backend options?"
        )
    h, w, f = feats.shape
    flat = feats.reshape(-1, f)
    out = np.empty((h * w, len(self.classes) + 1), np.float32)
    inv_std = (1.0 / self.std).astype(np.float32)
    temp_last = bool(self.info.get("temperature_last", False))
    temp_first = 1.0 if temp_last else self.temperature
    for s in range(0, h * w, 131072):
        x = (flat[s : s + 131072] - self.mean) * inv_std
        chunk = sum(_softmax(_mlp_forward(m, x) / temp_first) for m in self.models())
        out[s : s + 131072] = chunk / self.n_models
    adapt = self.info.get("adapt_features")
    if adapt:
        cols = [int(c) for c in adapt if 0 <= int(c) < f]
        xa = (flat[:, cols] - self.mean[cols]) * inv_std[cols]
        for _ in range(int(self.info.get("adapt_rounds", 1))):
            out = _adapt_per_image(out, xa)
    probs = out.reshape(h, w, -1).transpose(2, 0, 1)
    guide = self.info.get("guide_feature")
    radius = int(self.info.get("guide_radius", 0))
    if guide is not None and radius > 0 and 0 <= int(guide) < f:
        eps = float(self.info.get("guide_eps", 1.0))
        passes = min(max(1, int(self.info.get("guide_passes", 1))), 4)
        for _ in range(passes):
            probs = _guided_filter(probs, feats[..., int(guide)], radius=radius, eps=eps)
    if temp_last and self.temperature != 1.0:
        # calibration last: the arg-max and the refinements do not depend on it
        logp = np.log(np.maximum(probs, 1e-6)) / np.float32(self.temperature)
        probs = _softmax(logp.reshape(len(logp), -1).T.copy()).T.reshape(probs.shape)
    big_h, big_w = fmap.image_size
    if (h, w) != (big_h, big_w):
        probs = _upsample(probs, (big_h, big_w))
    return np.ascontiguousarray(probs, dtype=np.float32)


def one_blas_thread():
    """BLAS limited to one thread the way it was then: a new threadpoolctl
    controller (a scan of every loaded library) per call."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def predict_reference(learner: Learner, fmap: FeatureMap) -> np.ndarray:
    """(K+1,H,W) float32 probabilities of ``fmap`` the way commit 3f4efde computed them."""
    with one_blas_thread():
        return predict_features_reference(learner, fmap)


def probabilities_encode_reference(probabilities: np.ndarray) -> bytes:
    """The stored probability file of commit 3f4efde: float16, deflated .npz."""
    buf = io.BytesIO()
    np.savez_compressed(buf, probabilities=probabilities.astype(np.float16))
    return buf.getvalue()


# ----------------------------------------------------------------------------- storing


def blobs_measure_reference(
    labels: np.ndarray,
    *,
    probability: np.ndarray,
    class_name: str,
    px_per_mm: float | None = None,
    offset: tuple[int, int] = (0, 0),
) -> list:
    """``prompting.rules.blobs.blobs_measure`` as it was: skimage's ``regionprops``."""
    from skimage.measure import regionprops

    from prompting.rules.blobs import Blob

    dx, dy = offset
    blobs = []
    for region in regionprops(labels, intensity_image=probability):
        r0, c0, r1, c1 = region.bbox
        cy, cx = region.centroid
        area = int(region.area)
        blobs.append(
            Blob(
                id=int(region.label),
                class_name=class_name,
                area_px=area,
                area_mm2=area / px_per_mm**2 if px_per_mm else None,
                bbox=(int(c0) + dx, int(r0) + dy, int(c1) + dx, int(r1) + dy),
                centroid=(float(cx) + 0.5 + dx, float(cy) + 0.5 + dy),
                length=float(region.axis_major_length),
                width=float(region.axis_minor_length),
                eccentricity=float(region.eccentricity),
                solidity=float(region.solidity),
                mean_prob=float(region.intensity_mean),
                max_prob=float(region.intensity_max),
            )
        )
    return blobs


def _blob_to_dict_reference(self) -> dict:
    out = asdict(self)
    out["bbox"] = list(self.bbox)
    out["centroid"] = list(self.centroid)
    return out


@contextlib.contextmanager
def rules_reference():
    """While inside: the rules measure blobs with ``regionprops`` and
    ``Blob.to_dict`` copies through ``dataclasses.asdict``, as they did (the
    benchmark's process only: it swaps the two names and puts them back)."""
    from prompting.rules import decision
    from prompting.rules.blobs import Blob

    saved = decision.blobs_measure, Blob.to_dict
    decision.blobs_measure, Blob.to_dict = blobs_measure_reference, _blob_to_dict_reference
    try:
        yield
    finally:
        decision.blobs_measure, Blob.to_dict = saved


def png_encode_reference(array: np.ndarray, *, compress_level: int = 6) -> bytes:
    """A PNG written by PIL (the one encoder then, at every level)."""
    from PIL import Image

    arr = np.asarray(array)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    img = Image.fromarray(np.ascontiguousarray(arr), "RGB" if arr.ndim == 3 else None)
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=int(compress_level))
    return buf.getvalue()


def prediction_store_reference(
    *,
    image,
    model_version,
    ruleset,
    probabilities: np.ndarray,
    rgb8: np.ndarray | None,
    job=None,
    timings: dict | None = None,
    anomaly: np.ndarray | None = None,
):
    """``inspection.services.predictions.prediction_store`` as it was."""
    import time

    from django.db import transaction

    from inspection.models import Prediction
    from inspection.services import engine
    from inspection.services.predictions import _hex_rgb, mask_visible, overlay_render
    from inspection.storage import bytes_save, name_new
    from prompting.probmaps import probabilities_encode

    project = image.project
    t0 = time.perf_counter()
    with rules_reference():
        decision = engine.rules_apply(
            probabilities,
            classes=model_version.classes,
            ruleset=ruleset,
            px_per_mm=project.px_per_mm,
            anomaly=anomaly,
        )
        as_dict = decision.to_dict()
    t_rules = time.perf_counter() - t0
    if rgb8 is None:
        rgb8, _ = engine.image_pixels_load(image)
    colours = [_hex_rgb(c["colour"]) for c in project.classes if c["name"] in model_version.classes]
    overlay = overlay_render(rgb8, decision.label_map, colours=colours, blobs=decision.blobs)
    stem = f"{image.id.hex}-{model_version.id.hex[:8]}-{ruleset.id.hex[:8]}"
    names = [
        bytes_save(
            name_new(project.id, "predictions", "png", stem=f"{stem}-mask"),
            png_encode_reference(
                mask_visible(decision.label_map, n_classes=len(model_version.classes)),
                compress_level=1,
            ),
        ),
        bytes_save(
            name_new(project.id, "predictions", "png", stem=f"{stem}-overlay"),
            png_encode_reference(overlay, compress_level=1),
        ),
        bytes_save(
            name_new(project.id, "predictions", "npz", stem=f"{stem}-prob"),
            probabilities_encode(probabilities, anomaly=anomaly),
        ),
    ]
    values = {
        "verdict": as_dict["verdict"],
        "severity": as_dict.get("severity") or "",
        "reasons": as_dict.get("reasons", []),
        "blobs": as_dict.get("blobs", []),
        "uncertainty": decision.uncertainty,
        "anomaly_peak": None if anomaly is None else round(float(np.max(anomaly)), 4),
        "timings": {**(timings or {}), "rules_ms": round(t_rules * 1000, 2)},
        "job": job,
    }
    with transaction.atomic():
        pred = Prediction.objects.filter(
            image=image, model_version=model_version, ruleset=ruleset
        ).first()
        if pred is None:
            pred = Prediction(image=image, model_version=model_version, ruleset=ruleset)
        else:
            pred.delete()
            pred = Prediction(image=image, model_version=model_version, ruleset=ruleset)
        for k, v in values.items():
            setattr(pred, k, v)
        pred.mask.name, pred.overlay.name, pred.probabilities.name = names
        pred.save()
    return pred, decision


def planes_stack_reference(planes, *, out: np.ndarray | None = None) -> np.ndarray:
    """The feature planes' assembly as it was at commit d5bafc7: one ``np.stack``
    along the last axis and ``np.nan_to_num`` (the backbone then concatenated its
    groups, the copy into ``out`` here). Same values as
    :func:`prompting.features.base.planes_stack`; for ``benchmarks.feature_assembly``."""
    stacked = np.stack(list(planes), axis=-1).astype(np.float32, copy=False)
    np.nan_to_num(stacked, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    if out is None:
        return stacked
    out[...] = stacked
    return out


def smooth_reference(img: np.ndarray, sigma: float) -> np.ndarray:
    """The classic planes' Gaussian blur as it was at commit d5bafc7, verbatim: for
    sigma >= 4 its upsampling indexed rows then columns, which gives column-major
    arrays. Same values as :func:`prompting.features.classic._smooth`."""
    from scipy import ndimage as ndi

    if sigma < 4:
        return ndi.gaussian_filter(img, sigma, mode="reflect", truncate=3.0)
    f = int(sigma // 2)
    h, w = img.shape
    hp, wp = -(-h // f) * f, -(-w // f) * f
    padded = np.pad(img, ((0, hp - h), (0, wp - w)), mode="edge")
    small = padded.reshape(hp // f, f, wp // f, f).mean(axis=(1, 3))
    small = ndi.gaussian_filter(small, sigma / f, mode="reflect", truncate=3.0)
    ys = (np.arange(h, dtype=np.float32) - (f - 1) / 2) / f
    xs = (np.arange(w, dtype=np.float32) - (f - 1) / 2) / f
    ys = np.clip(ys, 0, small.shape[0] - 1)
    xs = np.clip(xs, 0, small.shape[1] - 1)
    y0 = np.floor(ys).astype(np.intp)
    x0 = np.floor(xs).astype(np.intp)
    y1 = np.minimum(y0 + 1, small.shape[0] - 1)
    x1 = np.minimum(x0 + 1, small.shape[1] - 1)
    wy = (ys - y0)[:, None]
    wx = (xs - x0)[None, :]
    top = small[y0][:, x0] * (1 - wx) + small[y0][:, x1] * wx
    bot = small[y1][:, x0] * (1 - wx) + small[y1][:, x1] * wx
    return (top * (1 - wy) + bot * wy).astype(np.float32)
