"""On-disk cache of feature maps and SAM embeddings, shared by processes.

One file per entry, ``<root>/<key>.npy``, holding a small int64 header and
then the entry's arrays, each written with ``np.save(allow_pickle=False)``.

- Writes are atomic: a temporary file in the same directory, then
  ``os.replace``. Readers never see half a file from a live writer.
- Reads treat anything odd (file gone because another process evicted it,
  truncated, foreign, wrong header) as a miss; the next ``put`` overwrites it.
- The cache is bounded: after each ``put`` the least recently used entries
  (oldest mtime; a hit touches the file) are deleted until the total is at
  most ``max_bytes``. Concurrent writers may overshoot for a moment; the next
  ``put`` trims again.

Feature maps may be kept as float16 (``features_dtype="float16"``): half the
bytes, so twice the images fit and a hit reads half as much. A float32 map is
then stored rounded to float16 and read back as float32, and
:func:`features_extract_cached` hands out the rounded map on a miss too, so a
prediction never depends on whether its features were cached. (On
sd_saliency_900, the classic backend's 52 features, 150 images: predicting
from rounded features changes 239 of 3,200,000 mask pixels and no verdict;
training and predicting on them, 765 pixels, seg IoU 0.5441 -> 0.5440.) Maps
with values beyond float16's range (65504) are kept as they are; an entry kept
the other way (the setting changed since) is a miss.

Keys come from :func:`cache_key` (backend fingerprint + image hash). Keys are
one-way, so the cache also keeps the list of fingerprints it has stored entries
for (``<root>/fingerprints.txt``): whoever deletes an image can then remove its
entries under every backend, option set and SAM checkpoint that made one.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from prompting.features.base import FeatureBackend, FeatureMap
from prompting.images import pixels_hash

log = logging.getLogger(__name__)

_MAGIC = 0x50524D43  # "PRMC"
_FORMAT_VERSION = 1
_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$")
_SUFFIX = ".npy"
_TMP_SUFFIX = ".tmp"
_FINGERPRINTS = "fingerprints.txt"
#: how feature maps may be kept: exactly, or rounded to half precision
FEATURE_DTYPES = ("float32", "float16")
_FLOAT16_MAX = float(np.finfo(np.float16).max)
#: a fingerprint is one line of text: no control characters, bounded length
_FINGERPRINT_RE = re.compile(r"^[\x20-\x7e]{1,300}$")
#: temporary files older than this are left over from crashed writers
_STALE_TMP_S = 3600.0


def cache_key(backend_fingerprint: str, pixels_hash: str, *, kind: str = "features") -> str:
    """Cache key of ``kind`` (``"features"``, ``"sam_embedding"``) for one backend and image.

    >>> cache_key("classic:v1", "ab" * 32)[:9]
    'features-'
    """
    if not re.fullmatch(r"[a-z0-9_]+", kind):
        raise ValueError(f"cache kind must be lowercase letters/digits/_: {kind!r}")
    digest = hashlib.sha256(f"{backend_fingerprint}\0{pixels_hash}".encode()).hexdigest()
    return f"{kind}-{digest}"


class FeatureCache:
    """Bounded, multi-process-safe directory of arrays keyed by string.

    ``root``: the directory (created if missing). ``max_bytes``: bound on the
    total size of entries. ``features_dtype``: ``"float32"`` (feature maps kept
    exactly) or ``"float16"`` (float32 maps rounded: see the module's notes).

    >>> cache = FeatureCache("/tmp/prompting-cache-doctest", max_bytes=1 << 20)
    >>> cache.put("k1", np.zeros((2, 3), np.float32))
    >>> cache.get("k1").shape
    (2, 3)
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        max_bytes: int,
        features_dtype: str = "float32",
    ) -> None:
        if int(max_bytes) <= 0:
            raise ValueError(f"max_bytes must be > 0, got {max_bytes}")
        if features_dtype not in FEATURE_DTYPES:
            raise ValueError(
                f"features_dtype must be one of {FEATURE_DTYPES}, got {features_dtype!r}"
            )
        self.root = Path(root)
        self.max_bytes = int(max_bytes)
        self.features_dtype = features_dtype
        self.root.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return (
            f"FeatureCache({str(self.root)!r}, max_bytes={self.max_bytes}, "
            f"features_dtype={self.features_dtype!r})"
        )

    # ------------------------------------------------------------------ paths
    def path(self, key: str) -> Path:
        """File of ``key`` (which must be a safe file name: letters, digits, ``_.-``)."""
        if not isinstance(key, str) or not _KEY_RE.match(key):
            raise ValueError(f"invalid cache key {key!r}")
        return self.root / f"{key}{_SUFFIX}"

    # ------------------------------------------------------------------ read
    def get_arrays(self, key: str) -> list[np.ndarray] | None:
        """The arrays stored under ``key``, or None on a miss (or an unreadable entry)."""
        path = self.path(key)
        try:
            with open(path, "rb") as f:
                header = np.load(f, allow_pickle=False)
                if (
                    header.dtype != np.int64
                    or header.shape != (3,)
                    or int(header[0]) != _MAGIC
                    or int(header[1]) != _FORMAT_VERSION
                ):
                    return None
                arrays = [np.load(f, allow_pickle=False) for _ in range(int(header[2]))]
        except FileNotFoundError:
            return None
        except (OSError, ValueError, EOFError) as exc:
            log.debug("cache entry %s unreadable (%s); treating as a miss", path.name, exc)
            return None
        self._touch(path)
        return arrays

    def get(self, key: str) -> np.ndarray | None:
        """The array stored under ``key`` with :meth:`put`, or None."""
        arrays = self.get_arrays(key)
        if arrays is None or len(arrays) != 1:
            return None
        return arrays[0]

    def __contains__(self, key: str) -> bool:
        return self.path(key).is_file()

    # ------------------------------------------------------------------ write
    def put_arrays(self, key: str, arrays: Sequence[np.ndarray]) -> None:
        """Store ``arrays`` under ``key`` atomically, then trim the cache to ``max_bytes``.

        Entries bigger than ``max_bytes`` on their own are not stored.
        """
        path = self.path(key)
        arrays = [np.asarray(a) for a in arrays]
        if sum(a.nbytes for a in arrays) > self.max_bytes:
            log.debug("cache entry %s larger than max_bytes; not stored", key)
            return
        tmp = self.root / f".{key}.{os.getpid()}.{uuid.uuid4().hex}{_TMP_SUFFIX}"
        header = np.array([_MAGIC, _FORMAT_VERSION, len(arrays)], dtype=np.int64)
        try:
            with open(tmp, "wb") as f:
                np.save(f, header, allow_pickle=False)
                for a in arrays:
                    np.save(f, a, allow_pickle=False)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self._touch(path)
        self.evict(keep=path.name)

    def put(self, key: str, array: np.ndarray) -> None:
        """Store one array under ``key`` (see :meth:`put_arrays`)."""
        self.put_arrays(key, [array])

    def delete(self, key: str) -> None:
        """Remove ``key`` if present."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path(key))

    # ------------------------------------------------------------------ fingerprints
    def fingerprint_note(self, fingerprint: str) -> None:
        """Record that entries are stored under ``fingerprint``.

        Called before each store (which follows an expensive extraction), so
        reading the short list each time costs nothing; a new fingerprint is
        one ``O_APPEND`` write, so concurrent processes never interleave within
        a line, and a duplicate from a race is harmless.
        """
        if not isinstance(fingerprint, str) or not _FINGERPRINT_RE.match(fingerprint):
            raise ValueError(f"invalid fingerprint {fingerprint!r}")
        if fingerprint not in self.fingerprints_seen():
            fd = os.open(self.root / _FINGERPRINTS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, f"{fingerprint}\n".encode())
            finally:
                os.close(fd)

    def fingerprints_seen(self) -> set[str]:
        """Every fingerprint :meth:`fingerprint_note` recorded in this directory."""
        try:
            text = (self.root / _FINGERPRINTS).read_text(errors="replace")
        except FileNotFoundError:
            return set()
        return {line for line in text.splitlines() if _FINGERPRINT_RE.match(line)}

    # ------------------------------------------------------------------ size
    def _entries(self) -> list[tuple[int, str, int]]:
        """(mtime_ns, name, size) of every entry; removes stale temporary files."""
        entries = []
        now = time.time()
        try:
            scan = list(os.scandir(self.root))
        except FileNotFoundError:
            return []
        for de in scan:
            try:
                st = de.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if de.name.endswith(_TMP_SUFFIX):
                if now - st.st_mtime > _STALE_TMP_S:
                    with contextlib.suppress(OSError):
                        os.unlink(de.path)
                continue
            if de.name.endswith(_SUFFIX) and de.is_file(follow_symlinks=False):
                entries.append((st.st_mtime_ns, de.name, st.st_size))
        return entries

    def size_bytes(self) -> int:
        """Total size of the entries on disk."""
        return sum(size for _, _, size in self._entries())

    def evict(self, *, keep: str | None = None) -> int:
        """Delete least recently used entries until the total is <= ``max_bytes``.

        ``keep``: a file name never deleted (the entry just written). Returns
        the number of bytes freed. Entries deleted meanwhile by another process
        are skipped.
        """
        entries = self._entries()
        total = sum(size for _, _, size in entries)
        freed = 0
        if total <= self.max_bytes:
            return 0
        for _, name, size in sorted(entries):
            if total <= self.max_bytes:
                break
            if name == keep:
                continue
            try:
                os.unlink(self.root / name)
                freed += size
            except FileNotFoundError:
                pass
            total -= size
        return freed

    def clear(self) -> None:
        """Delete every entry."""
        for _, name, _ in self._entries():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.root / name)

    @staticmethod
    def _touch(path: Path) -> None:
        now = time.time_ns()
        with contextlib.suppress(OSError):
            os.utime(path, ns=(now, now))

    # ------------------------------------------------------------------ typed entries
    def get_feature_map(self, key: str) -> FeatureMap | None:
        """A :class:`FeatureMap` stored with :meth:`put_feature_map` (float16
        entries read back as float32), or None."""
        arrays = self.get_arrays(key)
        if arrays is None or len(arrays) != 2:
            return None
        size, features = arrays
        if size.shape != (2,) or features.ndim != 3:
            return None
        # an entry kept the other way (written before the setting changed) is a
        # miss, so what a prediction sees never depends on when it was cached
        if features.dtype == np.float16:
            if self.features_dtype != "float16":
                return None
            features = _float16_widen(features)
        elif self._halves(features):
            return None
        return FeatureMap(features=features, image_size=(int(size[0]), int(size[1])))

    def put_feature_map(self, key: str, feature_map: FeatureMap) -> None:
        """Store a :class:`FeatureMap` under ``key`` (as float16 when the cache
        keeps them so and its values fit)."""
        size = np.array(feature_map.image_size, dtype=np.int64)
        features = np.asarray(feature_map.features)
        if self._halves(features):
            features = features.astype(np.float16)
        self.put_arrays(key, [size, features])

    def feature_map_as_stored(self, feature_map: FeatureMap) -> FeatureMap:
        """``feature_map`` as :meth:`get_feature_map` would return it once stored."""
        features = np.asarray(feature_map.features)
        if not self._halves(features):
            return feature_map
        rounded = features.astype(np.float16).astype(np.float32)
        return FeatureMap(features=rounded, image_size=feature_map.image_size)

    def _halves(self, features: np.ndarray) -> bool:
        """Whether float32 ``features`` are kept as float16 (finite, within its range)."""
        if self.features_dtype != "float16" or features.dtype != np.float32 or not features.size:
            return False
        low, high = float(features.min()), float(features.max())
        return low >= -_FLOAT16_MAX and high <= _FLOAT16_MAX  # False for NaN


#: elements per conversion step: below torch's parallel grain size (32768), so each
#: step runs on the calling thread (threads of its pool spin-wait on a busy CPU)
_WIDEN_STEP = 32768


def _float16_widen(features: np.ndarray) -> np.ndarray:
    """float16 array -> float32, exactly (every float16 is a float32).

    torch's conversion uses the CPU's half-precision instructions: ~0.6 ms for
    a 200x200 image's 52 features, against ~4.9 ms for numpy's ``astype``
    (one AMD EPYC core); numpy where torch is not installed.
    """
    try:
        # deferred: torch is loaded only by a cache that keeps float16 maps
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency of the engine
        return features.astype(np.float32)
    out = np.empty(features.shape, np.float32)
    src = torch.from_numpy(np.ascontiguousarray(features).reshape(-1))
    dst = torch.from_numpy(out.reshape(-1))
    for start in range(0, src.numel(), _WIDEN_STEP):
        dst[start : start + _WIDEN_STEP].copy_(src[start : start + _WIDEN_STEP])
    return out


def image_pixels_hash(image: np.ndarray) -> str:
    """``prompting.images.pixels_hash`` of an (H, W, 3) uint8 RGB image."""
    return pixels_hash(image)


def cache_fingerprint_note(cache, fingerprint: str) -> None:
    """``cache.fingerprint_note`` where the cache keeps a list (an in-memory one need not)."""
    note = getattr(cache, "fingerprint_note", None)
    if callable(note):
        note(fingerprint)


def features_extract_cached(
    backend: FeatureBackend,
    rgb8: np.ndarray,
    *,
    cache: FeatureCache | None,
    image_hash: str | None = None,
    stats: dict[str, int] | None = None,
) -> FeatureMap:
    """``backend.extract(rgb8)``, from ``cache`` when present there (then stored).

    ``rgb8``: (H, W, 3) uint8 RGB. ``image_hash``: ``pixels_hash(rgb8)`` when
    known. A backend with its own ``extract_cached(rgb8, cache=, image_hash=)``
    (SAM stores the embedding, which segmentation reuses) is delegated to.
    ``stats``: counts ``"cached"`` / ``"computed"`` (``"delegated"``) up.
    """

    def count(what: str) -> None:
        if stats is not None:
            stats[what] = stats.get(what, 0) + 1

    if cache is None:
        count("computed")
        return backend.extract(rgb8)
    own = getattr(backend, "extract_cached", None)
    if callable(own):
        count("delegated")
        return own(rgb8, cache=cache, image_hash=image_hash)
    key = cache_key(backend.fingerprint(), image_hash or image_pixels_hash(rgb8))
    feature_map = cache.get_feature_map(key)
    if feature_map is not None and tuple(feature_map.image_size) == tuple(rgb8.shape[:2]):
        count("cached")
        return feature_map
    count("computed")
    feature_map = backend.extract(rgb8)
    cache_fingerprint_note(cache, backend.fingerprint())
    cache.put_feature_map(key, feature_map)
    # what a hit will return (float16-rounded where the cache keeps them so)
    as_stored = getattr(cache, "feature_map_as_stored", None)
    return as_stored(feature_map) if callable(as_stored) else feature_map


def anomaly_patches_key(backend_fingerprint: str, stages: Sequence[int], pixels_hash: str) -> str:
    """Cache key of the anomaly patch grid of ``stages`` for one backend and image."""
    fingerprint = f"{backend_fingerprint}\0anomaly{[int(i) for i in stages]}"
    return cache_key(fingerprint, pixels_hash, kind="anomaly_patches")


def anomaly_patches_cached(
    backend: FeatureBackend,
    rgb8: np.ndarray,
    *,
    stages: Sequence[int],
    cache: FeatureCache | None,
    image_hash: str | None = None,
    stats: dict[str, int] | None = None,
) -> np.ndarray:
    """``backend.anomaly_patches(rgb8, stages=stages)``, from ``cache`` when there.

    The (h, w, D) float32 patch grid of the anomaly memory bank is kept exactly
    (float32) beside the image's features, so a retraining or a new model on
    unchanged images runs no network pass for it. ``stats`` counts
    ``"anomaly_cached"`` / ``"anomaly_computed"`` up.
    """

    def count(what: str) -> None:
        if stats is not None:
            stats[what] = stats.get(what, 0) + 1

    stages = tuple(int(i) for i in stages)
    if cache is None:
        count("anomaly_computed")
        return backend.anomaly_patches(rgb8, stages=stages)
    key = anomaly_patches_key(backend.fingerprint(), stages, image_hash or image_pixels_hash(rgb8))
    arrays = cache.get_arrays(key)
    if arrays is not None and len(arrays) == 1 and np.asarray(arrays[0]).ndim == 3:
        count("anomaly_cached")
        return np.asarray(arrays[0], dtype=np.float32)
    count("anomaly_computed")
    grid = np.asarray(backend.anomaly_patches(rgb8, stages=stages), dtype=np.float32)
    cache.put_arrays(key, [grid])
    return grid
