"""The trained pixel classifier (:class:`Learner`): prediction, versioned
artifacts, and optional SAM refinement of its blobs.

Artifacts are ``.npz`` files loaded with ``allow_pickle=False``; a JSON header
carries the format version, backend name and fingerprint, classes and the sha256
of the payload, which is verified before anything else is trusted. Training is
:func:`prompting.learner.learner_train`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from prompting.anomaly import AnomalyModel, anomaly_fuse, anomaly_planes
from prompting.errors import ArtifactError
from prompting.features.base import FeatureBackend, FeatureMap
from prompting.images import pixels_hash
from prompting.mlp import (
    adapt_planar,
    guided_filter_planar,
    mlp_predict_planar,
    mlp_shifted,
    temper,
    with_one_blas_thread,
)
from prompting.worksize import work_image

ARTIFACT_FORMAT_VERSION = 1
ARTIFACT_FORMAT_NAME = "prompting.learner"


def features_for(
    backend: FeatureBackend,
    pixels: np.ndarray,
    *,
    cache: Any = None,
    image_hash: str | None = None,
    stats: dict[str, int] | None = None,
) -> FeatureMap:
    """Features of ``pixels`` (H,W,3) uint8 RGB, from ``cache`` when it has them.

    ``stats``: counts ``"cached"`` / ``"computed"`` up (what was reused)."""
    # deferred: PIL loads on first use
    from prompting.features.cache import features_extract_cached

    return features_extract_cached(backend, pixels, cache=cache, image_hash=image_hash, stats=stats)


def anomaly_patches_for(
    backend: FeatureBackend,
    pixels: np.ndarray,
    *,
    stages: Any,
    cache: Any = None,
    image_hash: str | None = None,
    stats: dict[str, int] | None = None,
) -> np.ndarray:
    """The anomaly patch grid (h, w, D) float32 of ``pixels`` (H,W,3) uint8 RGB for
    ``stages``, from ``cache`` when it has it (``stats``: ``anomaly_cached`` /
    ``anomaly_computed``)."""
    # deferred: PIL loads on first use
    from prompting.features.cache import anomaly_patches_cached

    return anomaly_patches_cached(
        backend, pixels, stages=stages, cache=cache, image_hash=image_hash, stats=stats
    )


@dataclass
class Learner:
    """A trained pixel classifier.

    ``classes``: the defect classes (index k-1 of probability plane k).
    ``weights``: MLP layers [W0 (F,H0), b0, W1, b1, ...] float32.
    ``mean``/``std``: (F,) float32 feature standardisation.
    """

    classes: list[str]
    backend_name: str
    backend_fingerprint: str
    backend_options: dict[str, Any]
    weights: list[np.ndarray]
    mean: np.ndarray
    std: np.ndarray
    temperature: float = 1.0
    info: dict[str, Any] = field(default_factory=dict)
    #: ``weights`` holds this many MLPs of equal depth, one after the other (an ensemble)
    n_models: int = 1
    #: memory bank of good-part patches (backends with ``anomaly_patches`` only)
    anomaly: AnomalyModel | None = None

    def models(self) -> list[list[np.ndarray]]:
        """The ensemble's MLPs, each [W0, b0, W1, b1, ...]."""
        per = len(self.weights) // max(self.n_models, 1)
        return [self.weights[i * per : (i + 1) * per] for i in range(self.n_models)]

    @property
    def n_features(self) -> int:
        return int(self.mean.shape[0])

    def _shifted(self, temperature: float) -> list[list[np.ndarray]]:
        """The ensemble's MLPs as :func:`~prompting.mlp.mlp_shifted` rewrites them, with
        the feature standardisation folded into the first layer (``(x - mean) / std
        @ W0 + b0 == x @ W0' + b0'``); built once per learner and temperature."""
        cache = self.__dict__.setdefault("_shifted_models", {})
        models = cache.get(temperature)
        if models is None:
            inv_std = (1.0 / self.std).astype(np.float32)
            models = []
            for m in self.models():
                w0 = (m[0] * inv_std[:, None]).astype(np.float32)
                b0 = (m[1] - (self.mean * inv_std) @ m[0]).astype(np.float32)
                models.append(mlp_shifted([w0, b0, *m[2:]], temperature=temperature))
            cache[temperature] = models
        return models

    @with_one_blas_thread
    def predict_features(self, fmap: FeatureMap) -> np.ndarray:
        """(K+1,H,W) float32 probabilities from a FeatureMap, upsampled to the image size.

        The fast path: the MLP runs on cache-sized chunks with the standardisation
        folded into its first layer and one pass per hidden layer
        (:func:`~prompting.mlp.mlp_shifted`), writing planar probabilities and
        copying out the feature columns read later while each chunk is in the
        cache; the per-image adaptation works on those raw columns; the guided filter
        box-filters by window sums in float32 with the guide's statistics
        computed once, the K defect planes only (the background plane is their
        complement: the filter is linear and preserves a constant). The result
        matches the straightforward computation up to float32 rounding.
        """
        feats = fmap.features
        if feats.ndim != 3 or feats.shape[2] != self.n_features:
            raise ArtifactError(
                f"model expects {self.n_features} features per pixel, backend gave "
                f"{feats.shape[-1] if feats.ndim == 3 else feats.shape}; wrong backend options?"
            )
        h, w, f = feats.shape
        flat = feats.reshape(-1, f)
        if flat.dtype != np.float32:
            flat = flat.astype(np.float32)
        n_out = len(self.classes) + 1
        temp_last = bool(self.info.get("temperature_last", False))
        models = self._shifted(1.0 if temp_last else float(self.temperature))
        adapt = self.info.get("adapt_features")
        cols = [int(c) for c in adapt if 0 <= int(c) < f] if adapt else []
        guide = self.info.get("guide_feature")
        radius = int(self.info.get("guide_radius", 0))
        guided = guide is not None and radius > 0 and 0 <= int(guide) < f
        # the columns the adaptation and the guided filter read, taken out in the MLP's pass
        keep = sorted({*cols, int(guide)} if guided else set(cols))
        out, kept = mlp_predict_planar(models, flat, n_out, keep=keep)
        if cols:
            inv_std = (1.0 / self.std).astype(np.float32)
            columns = kept[[keep.index(c) for c in cols]] if keep != cols else kept
            for _ in range(int(self.info.get("adapt_rounds", 1))):
                out = adapt_planar(out, columns, self.mean[cols], inv_std[cols])
        probs = out.reshape(n_out, h, w)
        if guided:
            eps = float(self.info.get("guide_eps", 1.0))
            passes = min(max(1, int(self.info.get("guide_passes", 1))), 4)
            probs = guided_filter_planar(
                probs,
                kept[keep.index(int(guide))].reshape(h, w),
                radius=radius,
                eps=eps,
                passes=passes,
            )
        if temp_last and self.temperature != 1.0:
            # calibration last: the arg-max and the refinements do not depend on it
            probs = temper(probs, float(self.temperature))
        big_h, big_w = fmap.image_size
        if (h, w) != (big_h, big_w):
            probs = upsample(probs, (big_h, big_w))
        return np.ascontiguousarray(probs, dtype=np.float32)

    def predict_proba(
        self,
        pixels: np.ndarray,
        *,
        backend: FeatureBackend,
        cache: Any = None,
        image_hash: str | None = None,
        sam_model: Any = None,
        sam_embedding: Any = None,
    ) -> np.ndarray:
        """Calibrated probabilities (K+1,H,W) float32 of ``pixels`` (H,W,3) uint8 RGB.

        Plane 0 is background; planes sum to 1. With ``sam_model`` each predicted
        blob is refined by SAM (:func:`probabilities_refine`).
        """
        pixels, small, key = self._at_work(pixels, image_hash, backend)
        return self._proba(pixels, small, key, backend, cache, sam_model, sam_embedding)

    def predict(
        self,
        pixels: np.ndarray,
        *,
        backend: FeatureBackend,
        cache: Any = None,
        image_hash: str | None = None,
        sam_model: Any = None,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """(:meth:`predict_proba`, :meth:`anomaly_map`) of ``pixels`` in one call, the
        image brought to the working resolution once for both (a Lanczos pass of
        60-150 ms on a 3.8 MP frame)."""
        pixels, small, key = self._at_work(pixels, image_hash, backend)
        anomaly = self._anomaly(pixels, small, key, backend, cache)
        return self._proba(pixels, small, key, backend, cache, sam_model, None, anomaly), anomaly

    def _at_work(
        self, pixels: np.ndarray, image_hash: str | None, backend: FeatureBackend
    ) -> tuple[np.ndarray, np.ndarray, str | None]:
        """(pixels as an array, the image at this model's working resolution, its
        cache key), once ``backend`` is checked to be the model's: what every
        prediction starts from."""
        self.check_backend(backend)
        pixels = np.asarray(pixels)
        return (pixels, *work_image(pixels, image_hash, self.work_max_side))

    def _proba(
        self,
        pixels: np.ndarray,
        small: np.ndarray,
        key: str | None,
        backend: FeatureBackend,
        cache: Any,
        sam_model: Any,
        sam_embedding: Any,
        anomaly: np.ndarray | None = None,
    ) -> np.ndarray:
        """:meth:`predict_proba` of ``pixels`` given its working image ``small`` and
        that image's cache ``key`` (and its :meth:`anomaly_map`, when computed)."""
        fmap = features_for(backend, small, cache=cache, image_hash=key)
        if self.anomaly_planes:
            fmap = self._with_anomaly_planes(fmap, small, backend, cache, key)
        if small.shape[:2] != pixels.shape[:2]:  # probabilities at the image's own size
            fmap = FeatureMap(features=fmap.features, image_size=pixels.shape[:2])
        probs = self.predict_features(fmap)
        if self.anomaly_fuse:
            if anomaly is None:
                anomaly = self._anomaly(pixels, small, key, backend, cache)
            probs = anomaly_fuse(probs, anomaly)
        if sam_model is not None:
            emb = sam_embedding if sam_embedding is not None else sam_model.embed(pixels)
            probs = probabilities_refine(probs, model=sam_model, embedding=emb)
        return probs

    @property
    def work_max_side(self) -> int | None:
        """The longer side (px) this model works at (:mod:`prompting.worksize`); None
        (models saved before the bound existed, or trained without one): every image
        whole."""
        return int(self.info.get("work_max_side") or 0) or None

    @property
    def anomaly_planes(self) -> bool:
        """Whether the classifier reads the anomaly map's planes beside the features
        (:func:`prompting.anomaly.anomaly_planes`; see :func:`learner_train`)."""
        return self.anomaly is not None and bool(self.info.get("anomaly_planes"))

    @property
    def anomaly_fuse(self) -> bool:
        """Whether the anomalous regions count as the class's pixels
        (:func:`prompting.anomaly.anomaly_fuse`): one-class models trained with
        good parts in the bank (older models: never)."""
        return self.anomaly_planes and bool(self.info.get("anomaly_fuse"))

    def _with_anomaly_planes(
        self,
        fmap: FeatureMap,
        pixels: np.ndarray,
        backend: FeatureBackend,
        cache: Any,
        image_hash: str | None,
    ) -> FeatureMap:
        grid = anomaly_patches_for(
            backend, pixels, stages=self.anomaly.stages, cache=cache, image_hash=image_hash
        )
        score = self.anomaly.score_map(
            grid, image_size=fmap.features.shape[:2], key=pixels_hash(pixels), framed=False
        )
        feats = np.concatenate([fmap.features, anomaly_planes(score)], axis=2)
        return FeatureMap(features=feats, image_size=fmap.image_size)

    def anomaly_map(
        self,
        pixels: np.ndarray,
        *,
        backend: FeatureBackend,
        cache: Any = None,
        image_hash: str | None = None,
    ) -> np.ndarray | None:
        """Anomaly score (H,W) float32 of ``pixels`` (H,W,3) uint8 RGB against the
        memory bank of good parts (1.0 = the level good training images reach), or
        None when the model has no bank. The image's patch grid comes from ``cache``
        (by ``image_hash``) when it holds it. An image whose patches are in the bank
        (a training image, recognised by its pixels' hash) is scored against the
        bank without them (held out, see :attr:`anomaly_held_out`)."""
        if self.anomaly is None:
            return None
        pixels, small, key = self._at_work(pixels, image_hash, backend)
        return self._anomaly(pixels, small, key, backend, cache)

    def _anomaly(
        self,
        pixels: np.ndarray,
        small: np.ndarray,
        key: str | None,
        backend: FeatureBackend,
        cache: Any,
    ) -> np.ndarray | None:
        """:meth:`anomaly_map` of ``pixels`` given its working image and cache key."""
        if self.anomaly is None:
            return None
        grid = anomaly_patches_for(
            backend, small, stages=self.anomaly.stages, cache=cache, image_hash=key
        )
        key = pixels_hash(small) if self.anomaly.origin is not None else None
        return self.anomaly.score_map(grid, image_size=pixels.shape[:2], key=key)

    @property
    def anomaly_held_out(self) -> bool:
        """Whether :meth:`anomaly_map` scores the training images held out (the bank
        records each row's image); False for models saved before that record."""
        return self.anomaly is not None and self.anomaly.can_hold_out

    def check_backend(self, backend: FeatureBackend) -> None:
        """ArtifactError unless ``backend`` is the one this model was trained on."""
        if backend.name != self.backend_name:
            raise ArtifactError(
                f"model was trained on backend {self.backend_name!r}, got {backend.name!r}"
            )
        fp = backend.fingerprint()
        if fp != self.backend_fingerprint:
            raise ArtifactError(
                f"backend fingerprint {fp!r} differs from the model's {self.backend_fingerprint!r} "
                "(other weights or options): retrain"
            )

    # ----------------------------------------------------------------- artifact

    def _payload(self) -> tuple[bytes, dict[str, np.ndarray]]:
        meta = {
            "classes": list(self.classes),
            "backend": {
                "name": self.backend_name,
                "fingerprint": self.backend_fingerprint,
                "options": self.backend_options,
            },
            "temperature": float(self.temperature),
            "n_layers": len(self.weights) // 2,
            "n_models": int(self.n_models),
            "info": self.info,
            "anomaly": None
            if self.anomaly is None
            else {
                "normal_level": self.anomaly.normal_level,
                "stages": list(self.anomaly.stages),
                "border": int(self.anomaly.border),
            },
        }
        if self.anomaly is not None and self.anomaly.origin is not None:
            meta["anomaly"]["origin_keys"] = list(self.anomaly.origin_keys)
        meta_bytes = json.dumps(meta, sort_keys=True).encode()
        arrays = {"mean": self.mean, "std": self.std}
        for i, w in enumerate(self.weights):
            arrays[f"w{i:02d}"] = w
        if self.anomaly is not None:
            arrays["anomaly_bank"] = self.anomaly.bank.astype(np.float16)
            if self.anomaly.origin is not None:
                arrays["anomaly_origin"] = self.anomaly.origin.astype(np.int32)
        return meta_bytes, arrays

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the artifact atomically (temp file + ``os.replace``)."""
        meta_bytes, arrays = self._payload()
        header = {
            "format": ARTIFACT_FORMAT_NAME,
            "format_version": ARTIFACT_FORMAT_VERSION,
            "backend": self.backend_name,
            "backend_fingerprint": self.backend_fingerprint,
            "classes": list(self.classes),
            "sha256": checksum(meta_bytes, arrays),
        }
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(
                    fh,
                    header=np.frombuffer(json.dumps(header).encode(), np.uint8),
                    meta=np.frombuffer(meta_bytes, np.uint8),
                    **arrays,
                )
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, expected_backend: str | None = None) -> Learner:
        """Read an artifact; ArtifactError if corrupt, foreign or incompatible."""
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ArtifactError(
                f"cannot read model artifact {path}: {exc.strerror or exc}"
            ) from None
        return cls.from_bytes(data, expected_backend=expected_backend, source=str(path))

    @classmethod
    def from_bytes(
        cls, data: bytes, *, expected_backend: str | None = None, source: str = "<bytes>"
    ) -> Learner:
        """Like :meth:`load` for the artifact's bytes."""
        if not data.startswith(b"PK"):
            raise ArtifactError(f"{source} is not a model artifact (not an .npz archive)")
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
        except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as exc:
            raise ArtifactError(
                f"{source} is corrupt or truncated ({type(exc).__name__}: {exc})"
            ) from None
        try:
            header = json.loads(bytes(arrays.pop("header")).decode())
            meta_bytes = bytes(arrays.pop("meta"))
        except (KeyError, ValueError, UnicodeDecodeError, TypeError):
            raise ArtifactError(
                f"{source} is not a model artifact of this engine (no valid header)"
            ) from None
        if not isinstance(header, dict) or header.get("format") != ARTIFACT_FORMAT_NAME:
            raise ArtifactError(
                f"{source} is not a model artifact of this engine (format {header.get('format')!r})"
                if isinstance(header, dict)
                else f"{source}: invalid header"
            )
        version = header.get("format_version")
        if version != ARTIFACT_FORMAT_VERSION:
            raise ArtifactError(
                f"{source} has artifact format version {version!r}; this engine reads version "
                f"{ARTIFACT_FORMAT_VERSION}: retrain the model"
            )
        if checksum(meta_bytes, arrays) != header.get("sha256"):
            raise ArtifactError(
                f"{source} failed its sha256 checksum: the file is corrupt or was modified"
            )
        try:
            meta = json.loads(meta_bytes.decode())
            n_layers = int(meta["n_layers"])
            weights = [arrays[f"w{i:02d}"].astype(np.float32) for i in range(2 * n_layers)]
            learner = cls(
                classes=[str(c) for c in meta["classes"]],
                backend_name=str(meta["backend"]["name"]),
                backend_fingerprint=str(meta["backend"]["fingerprint"]),
                backend_options=dict(meta["backend"].get("options") or {}),
                weights=weights,
                mean=arrays["mean"].astype(np.float32),
                std=arrays["std"].astype(np.float32),
                temperature=float(meta["temperature"]),
                info=dict(meta.get("info") or {}),
                n_models=int(meta.get("n_models", 1)),
            )
            if meta.get("anomaly"):
                learner.anomaly = AnomalyModel(
                    bank=arrays["anomaly_bank"].astype(np.float32),
                    normal_level=float(meta["anomaly"]["normal_level"]),
                    stages=tuple(int(v) for v in meta["anomaly"]["stages"]),
                    border=int(meta["anomaly"].get("border", 0)),
                    # models saved before the origin record score every image in-sample
                    origin=arrays["anomaly_origin"].astype(np.int32)
                    if "anomaly_origin" in arrays
                    else None,
                    origin_keys=tuple(str(k) for k in meta["anomaly"].get("origin_keys", ())),
                )
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            raise ArtifactError(
                f"{source} has an incomplete payload ({type(exc).__name__}: {exc})"
            ) from None
        check_shapes(learner, source)
        if expected_backend is not None and learner.backend_name != expected_backend:
            raise ArtifactError(
                f"{source} was trained on backend {learner.backend_name!r}, expected {expected_backend!r}"
            )
        return learner


def checksum(meta_bytes: bytes, arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    h.update(meta_bytes)
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"|{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def check_shapes(learner: Learner, source: str) -> None:
    f = learner.mean.shape
    ok = learner.mean.ndim == 1 and learner.std.shape == f and len(learner.weights) >= 2
    ok = ok and learner.n_models >= 1 and len(learner.weights) % (2 * learner.n_models) == 0
    for model in learner.models() if ok else []:
        prev = f[0]
        for i in range(0, len(model), 2):
            w, b = model[i], model[i + 1]
            ok = ok and w.ndim == 2 and w.shape[0] == prev and b.shape == (w.shape[1],)
            prev = w.shape[1] if w.ndim == 2 else -1
        ok = ok and prev == len(learner.classes) + 1
    ok = ok and bool(np.all(np.isfinite(learner.std)))
    ok = ok and bool(np.all(learner.std > 0)) and learner.temperature > 0
    a = learner.anomaly
    if ok and a is not None and a.origin is not None:
        ok = a.origin.shape == (len(a.bank),) and bool(np.all(a.origin < len(a.origin_keys)))
    if not ok:
        raise ArtifactError(f"{source} has inconsistent model shapes for classes {learner.classes}")


def upsample(probs: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize (C,h,w) -> (C,H,W), cell centres aligned; renormalised.

    Separable: rows are interpolated first, then columns (the same values as
    ``scipy.ndimage.map_coordinates(order=1, mode="nearest")`` on the clipped
    grid, at a fraction of its cost).
    """
    c, h, w = probs.shape
    big_h, big_w = size

    def axis(n_small: int, n_big: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = np.clip((np.arange(n_big) + 0.5) * n_small / n_big - 0.5, 0, n_small - 1)
        lo = np.floor(pos).astype(np.intp)
        hi = np.minimum(lo + 1, n_small - 1)
        return lo, hi, (pos - lo).astype(np.float32)

    y0, y1, wy = axis(h, big_h)
    x0, x1, wx = axis(w, big_w)
    p = np.asarray(probs, np.float32)
    rows = p[:, y0, :] * (1 - wy)[None, :, None] + p[:, y1, :] * wy[None, :, None]
    out = rows[:, :, x0] * (1 - wx) + rows[:, :, x1] * wx
    out /= np.maximum(out.sum(axis=0, keepdims=True), np.float32(1e-6))
    return out.astype(np.float32, copy=False)


def probabilities_refine(
    probs: np.ndarray, *, model: Any, embedding: Any, threshold: float = 0.5
) -> np.ndarray:
    """Sharpen each predicted blob with SAM (``prompting.segment.blob_refine``).

    ``probs``: (K+1,H,W) float32; ``embedding``: the image's SamEmbedding. For
    each class, the blobs of ``probs[k] >= threshold`` prompt SAM (box + interior
    points); inside SAM's mask the class gets at least 0.75, blob pixels SAM
    rejects at most 0.25; other planes are rescaled so each pixel sums to 1.
    Returns a new array.
    """
    # deferred: scikit-image and PIL load on first use
    from prompting.segment import blob_refine

    out = probs.copy()
    for k in range(1, probs.shape[0]):
        mask = probs[k] >= threshold
        if not mask.any():
            continue
        refined = np.asarray(blob_refine(model, embedding, mask), bool)
        new = probs[k].copy()
        new[refined] = np.maximum(new[refined], 0.75)
        rejected = mask & ~refined
        new[rejected] = np.minimum(new[rejected], 0.25)
        changed = new != probs[k]
        if not changed.any():
            continue
        scale = (1.0 - new[changed]) / np.maximum(1.0 - out[k][changed], 1e-6)
        for j in range(out.shape[0]):
            if j != k:
                out[j][changed] *= scale
        out[k][changed] = new[changed]
    out /= np.maximum(out.sum(axis=0, keepdims=True), 1e-6)
    return out.astype(np.float32)
