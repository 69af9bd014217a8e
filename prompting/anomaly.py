"""Anomaly evidence from good parts: a memory bank of normal patches (PatchCore-style).

Good parts are what a line has most of, and a defect nobody painted yet is
still *unlike* every good part. :func:`anomaly_fit` keeps a coreset of the
pretrained network's patch features from good images (and from painted
background); :func:`AnomalyModel.score_map` gives every pixel of a new image
the distance of its patch to the nearest normal patch, divided by the level
good parts themselves reach (:attr:`AnomalyModel.normal_level`, measured
leave-one-image-out on the training images), so a score of 1.0 means "as
unusual as the most unusual good training image", whatever the part.

Patch features (:func:`anomaly_patches`): each selected network stage is
averaged over a 3x3 neighbourhood (a patch sees its surroundings, as in
PatchCore), brought to the finest selected stage's grid, and concatenated.

The edge of the image is not scored: :attr:`AnomalyModel.border` cells along
each side of the patch grid (the backend's padding band, whose patches see the
mirrored-out image rather than the part) get score 0, and the normal level is
taken inside that frame too. On magnetic tiles every defect-free tile's
highest patch sat in that band (usually on the tile's dark top or bottom
edge), and scoring inside it took the image AUROC of the peak from 0.57 to
0.81 (benchmarks/README.md).

Held-out maps of training images: :attr:`AnomalyModel.origin` records which
training image (:attr:`AnomalyModel.origin_keys`, their pixel hashes) each
bank row came from, and :meth:`AnomalyModel.score_map` scores an image that
contributed to the bank against the bank without its own rows. Its map is
then as honest as a new part's: its patches are not in what it is compared
with. The normal level is measured the same way (each good training image's
held-out map), so a good training image's held-out peak is at most 1.0.

The pixel classifier reads the map too (:func:`anomaly_planes`): when the
learner has a bank of good parts that can hold training images out, it appends the map's
planes to every pixel's features, held-out maps for the training images and the
same map for a new part, so the strokes teach it how much "unlike the good
parts" counts for each class. The planes are scored along the edge as well
(``framed=False``): the classifier learns what the band looks like, where an
image-level peak could not.

Example::

    grids = [anomaly_patches(backend.deep_features(img, stages=ANOMALY_STAGES)) for img in good]
    model = anomaly_fit([g.reshape(-1, g.shape[-1]) for g in grids])
    score = model.score_map(anomaly_patches(...), image_size=(h, w))   # (h, w) float32, 1.0 = normal max
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from prompting.errors import TrainingError
from prompting.mlp import with_one_blas_thread
from prompting.rules.types import anomaly_region

#: at most this many normal patches are kept (greedy k-centre coreset)
MAX_BANK = 3000
#: a one-class model whose bank holds good parts marks the anomalous regions as its
#: class (:func:`anomaly_fuse`): regions that reach this score, grown as the rules grow them
FUSE_SCORE = 0.9
#: the class probability the pixels of such a region get at least (above the rules' 0.5)
FUSE_PROB = 0.75
#: ... unless the classifier is confident they are background: below this probability
#: of the class it keeps them (a dark square on even noise makes its whole
#: neighbourhood anomalous; the strokes say where the square ends)
FUSE_FLOOR = 0.2
#: random projection used only to choose the coreset quickly
CORESET_DIM = 32
#: the coreset is chosen from a random sample of at most this many patches
CORESET_FROM = 20_000
#: Gaussian smoothing of the score map, in feature cells (PatchCore uses sigma 4 px at stride 8)
SMOOTH_SIGMA = 1.0
#: at least this many normal patches are needed to fit a bank
MIN_PATCHES = 64
#: smoothing (px) of the anomaly planes the pixel classifier reads beside the raw one
PLANE_SIGMAS = (4.0, 12.0)
#: anomaly planes appended to the classifier's features (:func:`anomaly_planes`)
N_PLANES = 1 + len(PLANE_SIGMAS)


@dataclass
class AnomalyModel:
    """A fitted memory bank.

    ``bank``: (N, D) float32 normal patch features. ``normal_level``: the raw
    distance that maps to score 1.0 (the highest smoothed score a good training
    image reached when left out of the bank). ``stages``: the network stages the
    patches come from. ``border``: cells along each side of a patch grid that
    are not scored (0 everywhere scored; models saved before it existed load as 0).
    ``origin``: (N,) int32, the index into ``origin_keys`` of the training image
    each bank row came from (-1: unknown); ``origin_keys``: one key per training
    image (its :func:`prompting.images.pixels_hash`). Both are None / empty for
    models saved before they existed: those score every image in-sample.
    """

    bank: np.ndarray
    normal_level: float
    stages: tuple[int, ...]
    border: int = 0
    origin: np.ndarray | None = None
    origin_keys: tuple[str, ...] = ()

    def held_out_rows(self, key: str | None) -> np.ndarray | None:
        """(N,) bool: the bank rows that did not come from the training image ``key``,
        or None when ``key`` did not contribute to the bank (or the model has no
        origin record, or every row came from it: nothing would be left)."""
        if key is None or self.origin is None or key not in self.origin_keys:
            return None
        idx = [i for i, k in enumerate(self.origin_keys) if k == key]
        keep = ~np.isin(self.origin, idx)
        return keep if 0 < keep.sum() < len(keep) else None

    @property
    def can_hold_out(self) -> bool:
        """Whether training images are scored held-out (an origin record with at
        least two images in the bank)."""
        return self.origin is not None and len(np.unique(self.origin[self.origin >= 0])) >= 2

    def distances(self, patches: np.ndarray, *, rows: np.ndarray | None = None) -> np.ndarray:
        """Nearest-neighbour distance of each row of ``patches`` (n, D) to the bank
        (only its ``rows``, (N,) bool, when given) -> (n,) float32."""
        bank = self.bank if rows is None else self.bank[rows]
        return _nn_distance(np.asarray(patches, np.float32), bank)

    def score_map(
        self,
        grid: np.ndarray,
        *,
        image_size: tuple[int, int],
        key: str | None = None,
        framed: bool = True,
    ) -> np.ndarray:
        """Anomaly score (H, W) float32 of a patch grid (h, w, D); 1.0 = the normal level,
        0 in the unscored band of :attr:`border` cells along the image's edge
        (``framed=False``: scored there too, as the classifier's planes read it).

        ``key``: the image's pixel hash; when that image contributed to the bank it
        is scored against the bank without its own rows (:meth:`held_out_rows`).
        """
        h, w, d = grid.shape
        grid = np.ascontiguousarray(grid, np.float32)
        digest = hashlib.blake2b(grid.data, digest_size=16).digest()
        memo_key = (key, id(self.bank), id(self.origin), grid.shape, digest)
        memo = self.__dict__.get("_last_raw")  # the framed map and the classifier's planes
        if memo is not None and memo[0] == memo_key:  # score one grid: search the bank once
            raw = memo[1]
        else:
            raw = self.distances(grid.reshape(-1, d), rows=self.held_out_rows(key)).reshape(h, w)
            raw = ndi.gaussian_filter(raw, SMOOTH_SIGMA, mode="nearest")
            self.__dict__["_last_raw"] = (memo_key, raw)
        score = raw / np.float32(max(self.normal_level, 1e-6))
        inside = scored_cells((h, w), self.border if framed else 0)
        score[~inside] = 0.0
        out = _resize(score.astype(np.float32), image_size)
        if not inside.all():  # the band in pixels too (the resize blends it with the inside)
            rows, cols = np.flatnonzero(inside.any(1)), np.flatnonzero(inside.any(0))
            big_h, big_w = out.shape
            y0, y1 = round(rows[0] * big_h / h), round((rows[-1] + 1) * big_h / h)
            x0, x1 = round(cols[0] * big_w / w), round((cols[-1] + 1) * big_w / w)
            framed = np.zeros_like(out)
            framed[y0:y1, x0:x1] = out[y0:y1, x0:x1]
            out = framed
        return out


def anomaly_planes(score: np.ndarray) -> np.ndarray:
    """The pixel classifier's view of an anomaly map (H, W): log(1 + score), raw and
    smoothed over :data:`PLANE_SIGMAS` px -> (H, W, :data:`N_PLANES`) float32.

    >>> anomaly_planes(np.zeros((4, 5), np.float32)).shape
    (4, 5, 3)
    """
    s = np.log1p(np.maximum(np.asarray(score, np.float32), 0.0))
    planes = [s] + [ndi.gaussian_filter(s, sigma, mode="nearest") for sigma in PLANE_SIGMAS]
    return np.ascontiguousarray(np.stack(planes, axis=-1), dtype=np.float32)


def anomaly_fuse(
    probs: np.ndarray,
    score: np.ndarray,
    *,
    threshold: float = FUSE_SCORE,
    prob: float = FUSE_PROB,
    floor: float = FUSE_FLOOR,
) -> np.ndarray:
    """(2, H, W) float32 probabilities (background, the class) with the anomalous
    regions of ``score`` (H, W) float32 (:func:`prompting.rules.types.anomaly_region`
    at ``threshold``) given at least ``prob`` of the class where the classifier
    gives at least ``floor``; the rest unchanged.

    On magnetic tiles, with good parts in the bank, those regions segment defects
    better than the classifier trained on the strokes does, and it gives them
    0.3-0.6 (benchmarks/README.md); where it is confident they are background
    (the smooth surroundings of a strong defect) it is right.

    >>> p = np.stack([np.full((1, 4), 0.6, np.float32), np.full((1, 4), 0.4, np.float32)])
    >>> p[:, 0, 1] = [0.9, 0.1]
    >>> fused = anomaly_fuse(p, np.array([[0.95, 0.95, 1.0, 0.2]], np.float32))
    >>> (100 * fused[1]).round().astype(int).tolist()
    [[75, 10, 75, 40]]
    """
    region = (anomaly_region(score, threshold=threshold) > 0) & (probs[1] >= floor)
    if not region.any():
        return probs
    out = np.array(probs, np.float32, copy=True)
    out[1] = np.where(region, np.maximum(out[1], prob), out[1])
    out[0] = 1.0 - out[1]
    return out


def scored_cells(shape: tuple[int, int], border: int) -> np.ndarray:
    """(h, w) bool: the cells of a patch grid of ``shape`` that are scored, i.e. all
    but ``border`` cells along each side (fewer where the grid is too small to keep
    at least one row and one column).

    >>> scored_cells((5, 4), 1).astype(int).tolist()
    [[0, 0, 0, 0], [0, 1, 1, 0], [0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0]]
    """
    h, w = shape
    inside = np.zeros((h, w), bool)
    by = max(0, min(int(border), (h - 1) // 2))
    bx = max(0, min(int(border), (w - 1) // 2))
    inside[by : h - by, bx : w - bx] = True
    return inside


def anomaly_patches(deep: Sequence[np.ndarray], *, pool: int = 1) -> np.ndarray:
    """Patch features (h, w, D) float32 from network stage outputs, each (C_i, h_i, w_i), fine first.

    ``pool``: the finest stage's grid is averaged over ``pool`` x ``pool`` cells
    first (a coarser grid: fewer, equally informative patches).

    >>> anomaly_patches([np.ones((2, 8, 8), np.float32), np.ones((3, 4, 4), np.float32)]).shape
    (8, 8, 5)
    """
    if not deep:
        raise TrainingError("anomaly patches need at least one network stage")
    h, w = deep[0].shape[1:]
    if pool > 1:
        h, w = max(1, h // pool), max(1, w // pool)
    planes = []
    for fmap in deep:
        pooled = ndi.uniform_filter(np.asarray(fmap, np.float32), size=(1, 3, 3), mode="nearest")
        if pooled.shape[1:] != (h, w):
            pooled = np.stack([_resize(p, (h, w)) for p in pooled])
        planes.append(pooled)
    return np.ascontiguousarray(np.concatenate(planes, 0).transpose(1, 2, 0))


def coreset_select(x: np.ndarray, n: int, *, seed: int = 0) -> np.ndarray:
    """Indices of ``n`` rows of ``x`` (N, D) chosen by greedy k-centre (farthest point) selection.

    Distances are taken in a seeded random projection to :data:`CORESET_DIM`
    dimensions, as PatchCore does, among a random sample of at most
    :data:`CORESET_FROM` rows, so choosing 3,000 of 100,000 patches takes about
    a second. Returns all indices when ``n >= N``.
    """
    total = len(x)
    if n >= total:
        return np.arange(total)
    rng = np.random.default_rng(seed)
    if total > max(CORESET_FROM, n):
        pool = np.sort(rng.choice(total, max(CORESET_FROM, n), replace=False))
        return pool[coreset_select(x[pool], n, seed=seed)]
    d = x.shape[1]
    proj = x
    if d > CORESET_DIM:
        proj = x @ (rng.standard_normal((d, CORESET_DIM)).astype(np.float32) / np.sqrt(CORESET_DIM))
    proj = np.ascontiguousarray(proj, np.float32)
    sq = np.einsum("ij,ij->i", proj, proj)
    chosen = np.empty(n, np.int64)
    chosen[0] = int(rng.integers(total))
    c = proj[chosen[0]]
    best = sq - 2 * proj @ c + c @ c
    for i in range(1, n):
        j = int(np.argmax(best))
        chosen[i] = j
        c = proj[j]
        np.minimum(best, sq - 2 * proj @ c + c @ c, out=best)
    return chosen


def anomaly_fit(
    normal: Sequence[np.ndarray],
    *,
    stages: Sequence[int],
    grids: Sequence[np.ndarray | None] | None = None,
    max_bank: int = MAX_BANK,
    border: int = 0,
    keys: Sequence[str | None] | None = None,
    seed: int = 0,
) -> AnomalyModel:
    """Fit a memory bank from normal patches.

    ``normal``: one (n_i, D) float32 array of normal patches per training image
    (a good image's every patch, or the patches under painted background).
    ``grids``: optional whole (h, w, D) patch grid per image, for the images whose
    every patch is normal (good parts), None for the others. Each image is left
    out in turn and scored against a random sample of the other images' patches
    (as many as the bank holds): the normal level is the highest smoothed score
    a good image reaches inside the ``border`` frame (for painted-background
    sets, the 99.5th percentile of their patches' distances), the largest over
    the images. ``border``: cells along each side of a grid that are not scored
    (:attr:`AnomalyModel.border`). ``keys``: one key per image (its pixel hash;
    None: unknown) recorded as each bank row's origin
    (:attr:`AnomalyModel.origin`); with them each image is left out by scoring it
    against the bank without its own rows, exactly as :meth:`AnomalyModel.score_map`
    scores it later, so the normal level is the highest held-out score a good
    training image gets (images without a key, or whose rows would leave nothing,
    against a random sample of the other images' patches as large as the bank).
    Raises TrainingError when there are fewer than :data:`MIN_PATCHES` patches.
    """
    grids = list(grids) if grids is not None else [None] * len(normal)
    if len(grids) != len(normal):
        raise ValueError("grids must have one entry (or None) per normal patch set")
    with_keys = keys is not None
    keys = list(keys) if keys is not None else [None] * len(normal)
    if len(keys) != len(normal):
        raise ValueError("keys must have one entry (or None) per normal patch set")
    triples = [
        (np.asarray(p, np.float32).reshape(-1, np.asarray(p).shape[-1]), g, k)
        for p, g, k in zip(normal, grids, keys, strict=True)
        if len(p)
    ]
    pairs = [(p, g) for p, g, _ in triples]
    if sum(len(p) for p, _ in pairs) < MIN_PATCHES:
        raise TrainingError(
            "too little normal evidence for the anomaly model: mark good parts OK or paint background"
        )
    sets = [p for p, _ in pairs]
    every = np.concatenate(sets)
    chosen = coreset_select(every, max_bank, seed=seed)
    bank = every[chosen]
    model = AnomalyModel(
        bank=bank, normal_level=1.0, stages=tuple(int(s) for s in stages), border=int(border)
    )
    if with_keys:
        model.origin_keys = tuple(dict.fromkeys(str(k) for _, _, k in triples if k is not None))
        index = {k: i for i, k in enumerate(model.origin_keys)}
        per_set = [index[str(k)] if k is not None else -1 for _, _, k in triples]
        model.origin = np.repeat(np.asarray(per_set, np.int32), [len(p) for p in sets])[chosen]
    levels = []
    rng = np.random.default_rng(seed)
    if len(sets) >= 2:
        per_image = max(1, max_bank // len(sets))
        for i, (patches, grid) in enumerate(pairs):
            sub = _bank_without(model, triples[i][2])
            if sub is None:
                others = np.concatenate([s for j, s in enumerate(sets) if j != i])
                take = min(len(others), per_image * (len(sets) - 1))
                sub = (
                    others[rng.choice(len(others), take, replace=False)]
                    if take < len(others)
                    else others
                )
            if grid is not None:
                raw = _nn_distance(grid.reshape(-1, grid.shape[-1]), sub).reshape(grid.shape[:2])
                smooth = ndi.gaussian_filter(raw, SMOOTH_SIGMA, mode="nearest")
                levels.append(float(smooth[scored_cells(smooth.shape, border)].max()))
            else:
                levels.append(float(np.quantile(_nn_distance(patches, sub), 0.995)))
    if levels:
        model.normal_level = float(np.max(levels))
    else:  # one image: half of its patches against the other half
        half = rng.permutation(len(every))
        a, b = every[half[: len(every) // 2]], every[half[len(every) // 2 :]]
        model.normal_level = float(np.quantile(_nn_distance(a, b), 0.995)) or 1.0
    return model


def _bank_without(model: AnomalyModel, key: str | None) -> np.ndarray | None:
    """The bank rows that did not come from training image ``key`` (N', D), or None
    when that is unknown (no key or origin record) or would leave no row."""
    if key is None or model.origin is None:
        return None
    own = np.isin(model.origin, [i for i, k in enumerate(model.origin_keys) if k == str(key)])
    return None if own.all() else model.bank[~own]


@with_one_blas_thread
def _nn_distance(x: np.ndarray, bank: np.ndarray, *, chunk: int = 4096) -> np.ndarray:
    """Euclidean distance of each row of ``x`` to its nearest row of ``bank`` (float32).

    BLAS on one thread, as the learner's: with two Run workers on two cores, each
    multiplying on two threads, a 120-image Run's predictions took twice as long
    as with one worker (``benchmarks.propagation --backend backbone``)."""
    x = np.ascontiguousarray(x, np.float32)
    bank = np.ascontiguousarray(bank, np.float32)
    b2 = np.einsum("ij,ij->i", bank, bank)
    out = np.empty(len(x), np.float32)
    for s in range(0, len(x), chunk):
        part = x[s : s + chunk]
        d2 = np.einsum("ij,ij->i", part, part)[:, None] - 2.0 * part @ bank.T + b2[None, :]
        out[s : s + chunk] = np.sqrt(np.maximum(d2.min(axis=1), 0.0))
    return out


def _resize(plane: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a (h, w) float32 plane to ``size`` (H, W)."""
    h, w = plane.shape
    if (h, w) == tuple(size):
        return plane
    zy, zx = size[0] / h, size[1] / w
    out = ndi.zoom(plane, (zy, zx), order=1, mode="nearest", grid_mode=True)
    return out[: size[0], : size[1]].astype(np.float32)
