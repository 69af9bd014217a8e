"""A tiny randomly initialised SAM for tests, smoke benchmarks and workers that
run them: no download, no GPU, seconds on a CPU.

Built from segment_anything's own classes: a 2-block windowed ViT image encoder
(embed_dim 32) that still takes the 1024 x 1024 input with patch 16, so its
neck yields the real (1, 256, 64, 64) embedding, plus the real prompt encoder
and a slim mask decoder. :func:`tiny_sam_register` makes it the model type
``vit_tiny_test`` through the public registry, so the product's own loader
(``sam_model_load``) loads what :func:`tiny_sam_save` writes. Its masks mean
nothing and its timings are not SAM's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prompting.features.sam.registry import sam_model_type_register

TINY_SAM_TYPE = "vit_tiny_test"


def tiny_sam_build() -> Any:
    """An uninitialised tiny ``segment_anything.modeling.Sam`` (random weights)."""
    # deferred: torch and segment_anything load only when a model is built
    from functools import partial

    import torch
    from segment_anything.modeling import (
        ImageEncoderViT,
        MaskDecoder,
        PromptEncoder,
        Sam,
        TwoWayTransformer,
    )

    return Sam(
        image_encoder=ImageEncoderViT(
            img_size=1024,
            patch_size=16,
            embed_dim=32,
            depth=2,
            num_heads=2,
            mlp_ratio=2.0,
            out_chans=256,
            qkv_bias=True,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            use_rel_pos=True,
            window_size=14,
            global_attn_indexes=(),  # windowed only: global attention on 64x64 tokens is the slow part
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=256,
            image_embedding_size=(64, 64),
            input_image_size=(1024, 1024),
            mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            transformer_dim=256,
            transformer=TwoWayTransformer(depth=1, embedding_dim=256, mlp_dim=64, num_heads=2),
            num_multimask_outputs=3,
            iou_head_depth=2,
            iou_head_hidden_dim=32,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    ).eval()


def tiny_sam_register() -> str:
    """Register :func:`tiny_sam_build` as :data:`TINY_SAM_TYPE`; returns the type name."""
    sam_model_type_register(TINY_SAM_TYPE, tiny_sam_build)
    return TINY_SAM_TYPE


def tiny_sam_save(path: Path, *, seed: int) -> Path:
    """Save the state_dict of a tiny SAM initialised with ``seed`` to ``path``."""
    # deferred: torch loads only when a checkpoint is made
    import torch

    tiny_sam_register()
    torch.manual_seed(seed)
    model = tiny_sam_build()
    torch.save(model.state_dict(), path)
    return path
