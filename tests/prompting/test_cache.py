"""Disk feature/embedding cache: hits, misses, eviction, corruption, several writers."""

from __future__ import annotations

import multiprocessing
import os
import time

import numpy as np
import pytest

from prompting.features.base import FeatureMap
from prompting.features.cache import FeatureCache, cache_key, features_extract_cached
from prompting.features.sam import (
    SamBackend,
    SamEmbedding,
    embedding_cache_get,
    embedding_cache_put,
    embedding_extract_cached,
)

KB = 1024


def _arr(value: float, n: int = 256) -> np.ndarray:
    """n float32 values (n * 4 bytes) all equal to ``value``."""
    return np.full(n, value, np.float32)


@pytest.fixture
def cache(tmp_path) -> FeatureCache:
    return FeatureCache(tmp_path / "cache", max_bytes=64 * KB)


# ----------------------------------------------------------------- keys


def test_cache_key_depends_on_fingerprint_hash_and_kind() -> None:
    base = cache_key("fp1", "h1")
    assert base == cache_key("fp1", "h1")
    assert base.startswith("features-") and len(base) == len("features-") + 64
    others = {
        cache_key("fp2", "h1"),
        cache_key("fp1", "h2"),
        cache_key("fp1", "h1", kind="sam_embedding"),
    }
    assert base not in others and len(others) == 3


@pytest.mark.parametrize("key", ["", "../evil", "a/b", ".hidden", "x" * 300, "sp ace"])
def test_unsafe_keys_are_rejected(cache, key) -> None:
    with pytest.raises(ValueError, match="invalid cache key"):
        cache.put(key, _arr(1))


def test_max_bytes_must_be_positive(tmp_path) -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        FeatureCache(tmp_path, max_bytes=0)


# ----------------------------------------------------------------- hit / miss


@pytest.mark.parametrize(
    "array",
    [
        np.arange(12, dtype=np.float32).reshape(3, 4),
        np.arange(6, dtype=np.int16).reshape(1, 2, 3),
        np.array([True, False]),
        np.zeros((0, 3), np.float64),
    ],
)
def test_roundtrip(cache, array) -> None:
    assert cache.get("k") is None
    cache.put("k", array)
    got = cache.get("k")
    assert got.dtype == array.dtype and got.shape == array.shape
    np.testing.assert_array_equal(got, array)
    assert "k" in cache


def test_put_overwrites(cache) -> None:
    cache.put("k", _arr(1))
    cache.put("k", _arr(2))
    assert cache.get("k")[0] == 2


def test_hit_touches_entry(cache) -> None:
    cache.put("k", _arr(1))
    old = time.time_ns() - 10**10
    os.utime(cache.path("k"), ns=(old, old))
    cache.get("k")
    assert cache.path("k").stat().st_mtime_ns > old


@pytest.mark.parametrize(
    "content",
    [b"", b"garbage bytes", b"\x93NUMPY\x01\x00", None],
    ids=["empty", "garbage", "truncated-header", "truncated-data"],
)
def test_corrupt_entry_is_a_miss_then_overwritten(cache, content) -> None:
    cache.put("k", _arr(3, 1000))
    path = cache.path("k")
    if content is None:
        content = path.read_bytes()[:-100]
    path.write_bytes(content)
    assert cache.get("k") is None
    cache.put("k", _arr(4))
    assert cache.get("k")[0] == 4


def test_foreign_npy_is_a_miss(cache) -> None:
    np.save(cache.path("k"), np.zeros(3))
    assert cache.get("k") is None


def test_object_arrays_are_never_unpickled(cache) -> None:
    with pytest.raises(ValueError):
        cache.put("k", np.array([{"a": 1}], dtype=object))
    assert cache.get("k") is None
    assert not list(cache.root.glob("*.tmp"))


# ----------------------------------------------------------------- eviction


def test_size_stays_bounded_and_lru_is_evicted(tmp_path) -> None:
    entry = 4 * KB  # payload; files are a little bigger (npy headers)
    cache = FeatureCache(tmp_path, max_bytes=int(3.5 * (entry + 400)))
    t0 = time.time_ns() - 10**10
    for i in range(3):
        cache.put(f"k{i}", _arr(i, entry // 4))
        os.utime(cache.path(f"k{i}"), ns=(t0 + i * 10**6,) * 2)  # k0 oldest
    cache.get("k0")  # k0 is now the most recently used
    cache.put("k3", _arr(3, entry // 4))
    assert cache.size_bytes() <= cache.max_bytes
    assert cache.get("k1") is None  # least recently used
    assert cache.get("k0") is not None and cache.get("k2") is not None
    assert cache.get("k3") is not None
    for i in range(4, 20):
        cache.put(f"k{i}", _arr(i, entry // 4))
        assert cache.size_bytes() <= cache.max_bytes
    assert cache.get("k19") is not None


def test_entry_larger_than_bound_is_not_stored(tmp_path) -> None:
    cache = FeatureCache(tmp_path, max_bytes=KB)
    cache.put("big", _arr(1, 1000))
    assert cache.get("big") is None and cache.size_bytes() == 0


def test_stale_tmp_files_are_cleaned(cache) -> None:
    stale = cache.root / ".k.123.abc.tmp"
    fresh = cache.root / ".k.456.def.tmp"
    stale.write_bytes(b"x")
    fresh.write_bytes(b"y")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    cache.put("k", _arr(1))
    assert not stale.exists() and fresh.exists()


def test_evicted_meanwhile_is_tolerated(cache) -> None:
    cache.put("k", _arr(1))
    cache.path("k").unlink()
    assert cache.get("k") is None
    assert cache.evict() == 0


# ----------------------------------------------------------------- several processes


def _writer(root: str, max_bytes: int, wid: int, rounds: int, queue) -> None:
    cache = FeatureCache(root, max_bytes=max_bytes)
    bad = []
    for r in range(rounds):
        cache.put("shared", _arr(wid, 2048))
        cache.put(f"own{wid}-{r % 5}", _arr(100 + wid, 2048))
        for key in ("shared", f"own{(wid + 1) % 3}-{r % 5}"):
            got = cache.get(key)
            if got is not None and (got.shape != (2048,) or len(np.unique(got)) != 1):
                bad.append(key)
    queue.put((wid, bad))


def test_concurrent_writers_never_expose_partial_entries(tmp_path) -> None:
    root = str(tmp_path / "shared")
    max_bytes = 8 * (2048 * 4 + 512)  # room for 8 entries: eviction runs concurrently
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(root, max_bytes, w, 40, queue)) for w in range(3)]
    for p in procs:
        p.start()
    results = dict(queue.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert results == {0: [], 1: [], 2: []}
    cache = FeatureCache(root, max_bytes=max_bytes)
    assert cache.get("shared")[0] in (0, 1, 2)
    assert cache.size_bytes() <= max_bytes
    assert not list(cache.root.glob("*.tmp"))


# ----------------------------------------------------------------- typed entries


def _embedding() -> SamEmbedding:
    rng = np.random.default_rng(0)
    return SamEmbedding(
        embedding=rng.standard_normal((1, 256, 64, 64)).astype(np.float32),
        original_size=(480, 640),
        input_size=(768, 1024),
    )


def test_embedding_roundtrip(tmp_path) -> None:
    cache = FeatureCache(tmp_path, max_bytes=16 * 1024 * KB)
    emb = _embedding()
    embedding_cache_put(cache, "e", emb)
    got = embedding_cache_get(cache, "e")
    assert got.original_size == (480, 640) and got.input_size == (768, 1024)
    np.testing.assert_array_equal(got.embedding, emb.embedding)


@pytest.mark.parametrize(
    "arrays",
    [
        [np.zeros(4, np.int64)],
        [np.zeros(3, np.int64), np.zeros((1, 256, 64, 64), np.float32)],
        [np.zeros(4, np.int64), np.zeros((256, 64, 64), np.float32)],
        [np.zeros(4, np.int64), np.zeros((1, 256, 64, 64), np.float64)],
    ],
)
def test_embedding_from_bad_arrays(arrays) -> None:
    with pytest.raises(ValueError):
        SamEmbedding.from_arrays(arrays)


def test_embedding_to_arrays_is_plain() -> None:
    sizes, emb = _embedding().to_arrays()
    assert sizes.tolist() == [480, 640, 768, 1024] and emb.dtype == np.float32


def test_non_embedding_entry_is_an_embedding_miss(cache) -> None:
    cache.put("e", _arr(1))
    assert embedding_cache_get(cache, "e") is None


class _CountingBackend:
    name = "counting"

    def __init__(self, fp: str = "count-v1") -> None:
        self.fp = fp
        self.calls = 0

    def fingerprint(self) -> str:
        return self.fp

    def extract(self, image: np.ndarray) -> FeatureMap:
        self.calls += 1
        feats = np.repeat(image[..., :1].astype(np.float32), 2, axis=-1)
        return FeatureMap(features=feats, image_size=image.shape[:2])


def test_features_extract_cached_hits_and_misses(cache) -> None:
    image = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    backend = _CountingBackend()
    first = features_extract_cached(backend, image, cache=cache, image_hash="h")
    second = features_extract_cached(backend, image, cache=cache, image_hash="h")
    assert backend.calls == 1
    np.testing.assert_array_equal(first.features, second.features)
    assert second.image_size == (4, 5)
    features_extract_cached(_CountingBackend("count-v2"), image, cache=cache, image_hash="h")
    features_extract_cached(backend, image, cache=cache, image_hash="other")
    assert backend.calls == 2
    features_extract_cached(backend, image, cache=None, image_hash="h")
    assert backend.calls == 3


def test_features_extract_cached_hashes_pixels_when_no_hash(cache) -> None:
    image = np.zeros((3, 3, 3), np.uint8)
    backend = _CountingBackend()
    features_extract_cached(backend, image, cache=cache, image_hash=None)
    features_extract_cached(backend, image.copy(), cache=cache, image_hash=None)
    assert backend.calls == 1


def test_sam_backend_caches_the_embedding(tmp_path, tiny_sam_checkpoint, monkeypatch) -> None:
    cache = FeatureCache(tmp_path, max_bytes=64 * 1024 * KB)
    backend = SamBackend(**tiny_sam_checkpoint._asdict())
    image = np.full((60, 80, 3), 90, np.uint8)
    miss = features_extract_cached(backend, image, cache=cache, image_hash="img1")
    assert len(list(cache.root.glob("sam_embedding-*.npy"))) == 1

    def no_encoder(*args, **kwargs):
        raise AssertionError("encoder ran on a cache hit")

    monkeypatch.setattr(backend.model, "embed", no_encoder)
    hit = features_extract_cached(backend, image, cache=cache, image_hash="img1")
    np.testing.assert_array_equal(hit.features, miss.features)
    assert hit.features.shape == (48, 64, 256)
    emb = embedding_extract_cached(backend.model, image, cache=cache, image_hash="img1")
    assert emb.original_size == (60, 80)


# ----------------------------------------------------------------- fingerprints


def test_the_cache_lists_the_fingerprints_it_stored_entries_for(cache) -> None:
    image = np.zeros((3, 3, 3), np.uint8)
    assert cache.fingerprints_seen() == set()
    features_extract_cached(_CountingBackend("count-v1"), image, cache=cache, image_hash="a")
    features_extract_cached(_CountingBackend("count-v1"), image, cache=cache, image_hash="b")
    features_extract_cached(_CountingBackend("count-v2"), image, cache=cache, image_hash="a")
    assert cache.fingerprints_seen() == {"count-v1", "count-v2"}
    # another process (a new instance) sees the same list, written once per fingerprint
    other = FeatureCache(cache.root, max_bytes=cache.max_bytes)
    other.fingerprint_note("count-v1")
    assert other.fingerprints_seen() == {"count-v1", "count-v2"}
    assert (cache.root / "fingerprints.txt").read_text().splitlines() == ["count-v1", "count-v2"]
    # the list is not an entry: not counted, not evicted, not cleared
    assert cache.size_bytes() == sum(p.stat().st_size for p in cache.root.glob("*.npy"))
    cache.clear()
    assert cache.fingerprints_seen() == {"count-v1", "count-v2"}


@pytest.mark.parametrize("fingerprint", ["", "two\nlines", "x" * 301, "tab\there"])
def test_a_fingerprint_that_is_not_one_line_is_refused(cache, fingerprint) -> None:
    with pytest.raises(ValueError, match="fingerprint"):
        cache.fingerprint_note(fingerprint)
    assert cache.fingerprints_seen() == set()


def test_sam_embeddings_note_the_models_fingerprint(tmp_path, tiny_sam_checkpoint) -> None:
    cache = FeatureCache(tmp_path, max_bytes=64 * 1024 * KB)
    backend = SamBackend(**tiny_sam_checkpoint._asdict())
    embedding_extract_cached(
        backend.model, np.full((60, 80, 3), 90, np.uint8), cache=cache, image_hash="img1"
    )
    assert cache.fingerprints_seen() == {backend.model.fingerprint}


class _FractionBackend(_CountingBackend):
    """Features that float16 does not hold exactly (thirds), or beyond its range."""

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__(f"fraction-{scale}")
        self.scale = scale

    def extract(self, image: np.ndarray) -> FeatureMap:
        self.calls += 1
        feats = (image[..., :2].astype(np.float32) / np.float32(3)) * np.float32(self.scale)
        return FeatureMap(features=feats, image_size=image.shape[:2])


def test_float16_cache_halves_entries_and_hands_out_the_same_rounded_map(tmp_path) -> None:
    image = np.arange(6 * 7 * 3, dtype=np.uint8).reshape(6, 7, 3)
    exact = FeatureCache(tmp_path / "f32", max_bytes=64 * KB)
    half = FeatureCache(tmp_path / "f16", max_bytes=64 * KB, features_dtype="float16")
    backend = _FractionBackend()
    computed = backend.extract(image).features
    miss = features_extract_cached(backend, image, cache=half, image_hash="h")
    hit = features_extract_cached(backend, image, cache=half, image_hash="h")
    assert backend.calls == 2  # one by hand, one miss
    # a miss hands out what a hit reads: predictions never depend on the cache's state
    assert miss.features.dtype == hit.features.dtype == np.float32
    np.testing.assert_array_equal(miss.features, hit.features)
    np.testing.assert_array_equal(hit.features, computed.astype(np.float16).astype(np.float32))
    assert not np.array_equal(hit.features, computed)  # thirds are rounded...
    assert np.abs(hit.features - computed).max() <= np.abs(computed).max() * 2.0**-11
    # ...and the float32 cache keeps them exactly
    features_extract_cached(backend, image, cache=exact, image_hash="h")
    again = features_extract_cached(backend, image, cache=exact, image_hash="h")
    np.testing.assert_array_equal(again.features, computed)
    saved = exact.size_bytes() - half.size_bytes()
    assert saved >= computed.nbytes // 2 - 16


def test_float16_cache_keeps_maps_beyond_its_range_exactly(tmp_path) -> None:
    image = np.full((3, 4, 3), 255, np.uint8)
    half = FeatureCache(tmp_path, max_bytes=64 * KB, features_dtype="float16")
    backend = _FractionBackend(scale=1e4)  # 255 / 3 * 1e4 > 65504
    features_extract_cached(backend, image, cache=half, image_hash="h")
    hit = features_extract_cached(backend, image, cache=half, image_hash="h")
    assert backend.calls == 1
    np.testing.assert_array_equal(hit.features, backend.extract(image).features)


def test_features_dtype_is_checked(tmp_path) -> None:
    with pytest.raises(ValueError, match="features_dtype"):
        FeatureCache(tmp_path, max_bytes=KB, features_dtype="int8")


def test_float16_entries_widen_exactly_to_float32() -> None:
    from prompting.features.cache import _float16_widen

    rng = np.random.default_rng(0)
    specials = np.array([np.inf, -np.inf, np.nan, 0.0, -0.0, 6e-8, 65504, -65504], np.float16)
    values = np.concatenate([rng.normal(size=70_001).astype(np.float16), specials])
    widened = _float16_widen(values.reshape(-1, 1))
    assert widened.dtype == np.float32 and widened.shape == (values.size, 1)
    np.testing.assert_array_equal(widened[:, 0], values.astype(np.float32))


def test_entries_kept_the_other_way_are_misses(tmp_path) -> None:
    # the setting changed between writing and reading: computed again, so a
    # prediction never depends on when its features were cached
    image = np.arange(6 * 7 * 3, dtype=np.uint8).reshape(6, 7, 3)
    exact = FeatureCache(tmp_path, max_bytes=64 * KB)
    half = FeatureCache(tmp_path, max_bytes=64 * KB, features_dtype="float16")
    backend = _FractionBackend()
    features_extract_cached(backend, image, cache=exact, image_hash="h")
    again = features_extract_cached(backend, image, cache=half, image_hash="h")
    assert backend.calls == 2
    np.testing.assert_array_equal(
        again.features, backend.extract(image).features.astype(np.float16).astype(np.float32)
    )
    features_extract_cached(backend, image, cache=half, image_hash="h")
    assert backend.calls == 3  # one by hand above; the float16 entry is a hit now
    features_extract_cached(backend, image, cache=exact, image_hash="h")
    assert backend.calls == 4
