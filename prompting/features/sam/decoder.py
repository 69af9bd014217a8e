"""SAM's mask decoder, minus the work that does not depend on the prompts.

``segment_anything``'s ``MaskDecoder.predict_masks`` + ``TwoWayTransformer``
recompute, on every click, things that depend only on the image embedding
(and on the model): the dense positional encoding, the flattened image
tokens, and in the first transformer block the projections of the image
tokens (the prompts only meet the image tokens after those). On a 2-core CPU
that is about a quarter of a decode. :class:`DecoderPrep` holds them for one
embedding; :func:`mask_decoder_run` is ``MaskDecoder.forward`` that uses it.

Same modules, same weights, same operations in the same order: the tests
compare the result with an untouched ``SamPredictor``. Batch size 1 (one
prompt set per call), as in ``SamPredictor.predict``. A prep is read-only once
built, so threads may share it.

Imported lazily (torch).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor


def decoder_supported(sam: Any) -> bool:
    """True when ``sam``'s decoder has the segment_anything structure this module mirrors."""
    md = getattr(sam, "mask_decoder", None)
    tr = getattr(md, "transformer", None)
    layers = getattr(tr, "layers", None)
    return (
        layers is not None
        and len(layers) > 0
        and hasattr(tr, "final_attn_token_to_image")
        and hasattr(md, "output_upscaling")
        and hasattr(md, "output_hypernetworks_mlps")
        and all(hasattr(layer, "cross_attn_image_to_token") for layer in layers)
    )


@dataclass(frozen=True)
class DecoderPrep:
    """Prompt-independent decoder inputs for one image embedding.

    ``keys``: (1, HW, C) image tokens (embedding + no-mask dense embedding);
    ``key_pe``: (1, HW, C) positional encoding; ``k_t2i``/``v_t2i``: block 0's
    token-to-image key/value projections; ``q_i2t``: block 0's image-to-token
    query projection. ``shape``: (C, H, W) of the embedding grid.
    """

    keys: Tensor
    key_pe: Tensor
    k_t2i: Tensor
    v_t2i: Tensor
    q_i2t: Tensor
    shape: tuple[int, int, int]


def dense_pe(sam: Any) -> Tensor:
    """(1, HW, C) flattened dense positional encoding of the prompt encoder (contiguous)."""
    return sam.prompt_encoder.get_dense_pe().flatten(2).permute(0, 2, 1).contiguous()


def decoder_prepare(sam: Any, image_embedding: Tensor, key_pe: Tensor) -> DecoderPrep:
    """Precompute :class:`DecoderPrep` for ``image_embedding`` (1, C, H, W), no mask input."""
    pe = sam.prompt_encoder
    _, c, h, w = image_embedding.shape
    dense = pe.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(1, -1, h, w)
    # contiguous once here: a permuted view would be copied again on every click
    keys = (image_embedding + dense).flatten(2).permute(0, 2, 1).contiguous()
    block0 = sam.mask_decoder.transformer.layers[0]
    kpe = keys + key_pe
    return DecoderPrep(
        keys=keys,
        key_pe=key_pe,
        k_t2i=block0.cross_attn_token_to_image.k_proj(kpe),
        v_t2i=block0.cross_attn_token_to_image.v_proj(keys),
        q_i2t=block0.cross_attn_image_to_token.q_proj(kpe),
        shape=(c, h, w),
    )


def _attend(
    m: Any,
    q: Tensor,
    k: Tensor | None,
    v: Tensor | None,
    *,
    k_done: Tensor | None = None,
    v_done: Tensor | None = None,
) -> Tensor:
    """``segment_anything`` ``Attention.forward`` with optional ready key/value projections
    (the prompt tokens' self attention, and block 0's token-to-image attention)."""
    q = m.q_proj(q)
    k = k_done if k_done is not None else m.k_proj(k)
    v = v_done if v_done is not None else m.v_proj(v)
    q = m._separate_heads(q, m.num_heads)
    k = m._separate_heads(k, m.num_heads)
    v = m._separate_heads(v, m.num_heads)
    _, _, _, c_per_head = q.shape
    attn = q @ k.permute(0, 1, 3, 2)
    attn = attn / math.sqrt(c_per_head)
    attn = torch.softmax(attn, dim=-1)
    out = attn @ v
    out = m._recombine_heads(out)
    return m.out_proj(out)


def _heads(m: Any) -> tuple[int, int]:
    """(number of heads, channels per head) of a segment_anything ``Attention``."""
    return m.num_heads, m.internal_dim // m.num_heads


def _attend_tokens_to_image(m: Any, q: Tensor, kpe: Tensor, keys: Tensor) -> Tensor:
    """``Attention.forward(q, kpe, keys)`` for a few prompt-token queries over the
    image tokens, without projecting the image tokens.

    Reassociated, same maths: per head, ``q_h . (x W_k,h + b_k,h)`` is
    ``(q_h W_k,h) . x`` plus a per-query constant the softmax ignores, and
    ``softmax_h (x W_v,h + b_v,h)`` is ``(softmax_h x) W_v,h + b_v,h`` (rows sum
    to 1). The two (HW x C) @ (C x C/2) projections become products with the
    few queries: about 2.3x less work for SAM's 4,096 image tokens.
    """
    n_heads, d = _heads(m)
    c = kpe.shape[-1]
    qh = m.q_proj(q)[0].view(-1, n_heads, d).transpose(0, 1)  # (H, T, d)
    t = qh.shape[1]
    a = qh @ m.k_proj.weight.view(n_heads, d, c)  # (H, T, C)
    attn = (a.reshape(n_heads * t, c) @ kpe[0].T) / math.sqrt(d)  # (H*T, N)
    attn = torch.softmax(attn, dim=-1)
    av = (attn @ keys[0]).view(n_heads, t, c)  # (H, T, C)
    out = av @ m.v_proj.weight.view(n_heads, d, c).transpose(1, 2)  # (H, T, d)
    out = out + m.v_proj.bias.view(n_heads, 1, d)
    return m.out_proj(out.transpose(0, 1).reshape(1, t, n_heads * d))


def _attend_image_to_tokens(
    m: Any, kpe: Tensor | None, k: Tensor, v: Tensor, *, q_done: Tensor | None = None
) -> Tensor:
    """``Attention.forward(kpe, k, v)`` for the image tokens as queries over a few
    prompt tokens, without projecting the image tokens (``q_done``: their query
    projection, when already made).

    Reassociated, same maths: the scores are ``x (W_q,h^T k_h^T) + b_q,h k_h^T``
    and the output ``sum_h softmax_h (v_h W_o,h^T) + b_o``, so the image tokens
    meet (C x H*T) and (H*T x C) matrices instead of two (C x C/2) projections.
    """
    n_heads, d = _heads(m)
    kh = m.k_proj(k)[0].view(-1, n_heads, d).transpose(0, 1)  # (H, T, d)
    vh = m.v_proj(v)[0].view(-1, n_heads, d).transpose(0, 1)  # (H, T, d)
    t = kh.shape[1]
    if q_done is not None:
        qh = q_done[0].view(-1, n_heads, d).transpose(0, 1)  # (H, N, d)
        scores = kh @ qh.transpose(1, 2)  # (H, T, N)
    else:
        c = kpe.shape[-1]
        wq = m.q_proj.weight.view(n_heads, d, c)
        b = (kh @ wq).reshape(n_heads * t, c)  # (H*T, C)
        bias = (kh @ m.q_proj.bias.view(n_heads, d, 1)).reshape(n_heads * t, 1)
        scores = (b @ kpe[0].T + bias).view(n_heads, t, -1)  # (H, T, N)
    # softmax over the T tokens, computed along the long axis (fast kernel)
    attn = torch.softmax(scores / math.sqrt(d), dim=1)
    c_out = m.out_proj.weight.shape[0]
    wo = m.out_proj.weight.view(c_out, n_heads, d).permute(1, 2, 0)  # (H, d, C)
    p = (vh @ wo).reshape(n_heads * t, c_out)  # (H*T, C)
    out = attn.reshape(n_heads * t, -1).T @ p + m.out_proj.bias
    return out.unsqueeze(0)


def _block(
    layer: Any,
    queries: Tensor,
    keys: Tensor,
    query_pe: Tensor,
    key_pe: Tensor,
    prep: DecoderPrep | None,
) -> tuple[Tensor, Tensor]:
    """``TwoWayAttentionBlock.forward``; with ``prep``, block 0's image-side projections are reused."""
    if layer.skip_first_layer_pe:
        queries = _attend(layer.self_attn, queries, queries, queries)
    else:
        q = queries + query_pe
        attn_out = _attend(layer.self_attn, q, q, queries)
        queries = queries + attn_out
    queries = layer.norm1(queries)

    q = queries + query_pe
    kpe = None  # keys + key_pe: the same value for both cross attentions below
    if prep is not None:
        attn_out = _attend(
            layer.cross_attn_token_to_image, q, None, None, k_done=prep.k_t2i, v_done=prep.v_t2i
        )
    else:
        kpe = keys + key_pe
        attn_out = _attend_tokens_to_image(layer.cross_attn_token_to_image, q, kpe, keys)
    queries = queries + attn_out
    queries = layer.norm2(queries)

    mlp_out = layer.mlp(queries)
    queries = queries + mlp_out
    queries = layer.norm3(queries)

    q = queries + query_pe
    if prep is not None:
        attn_out = _attend_image_to_tokens(
            layer.cross_attn_image_to_token, None, q, queries, q_done=prep.q_i2t
        )
    else:
        attn_out = _attend_image_to_tokens(layer.cross_attn_image_to_token, kpe, q, queries)
    keys = keys + attn_out
    keys = layer.norm4(keys)
    return queries, keys


def mask_decoder_run(
    sam: Any,
    *,
    image_embedding: Tensor,
    key_pe: Tensor,
    sparse: Tensor,
    dense: Tensor | None,
    prep: DecoderPrep | None,
    multimask_output: bool,
) -> tuple[Tensor, Tensor]:
    """``MaskDecoder.forward`` -> (low-res logits (1, C, 256, 256), iou (1, C)).

    ``dense``: the prompt encoder's dense embedding when a mask input was
    given, else None (then ``prep``, built for ``image_embedding``, is used).
    """
    md = sam.mask_decoder
    tr = md.transformer
    output_tokens = torch.cat([md.iou_token.weight, md.mask_tokens.weight], dim=0)
    output_tokens = output_tokens.unsqueeze(0).expand(sparse.size(0), -1, -1)
    tokens = torch.cat((output_tokens, sparse), dim=1)
    if tokens.shape[0] != 1:
        raise ValueError("mask_decoder_run handles one prompt set at a time")

    if dense is None:
        assert prep is not None
        keys = prep.keys
        c, h, w = prep.shape
    else:
        prep = None
        _, c, h, w = image_embedding.shape
        keys = (image_embedding + dense).flatten(2).permute(0, 2, 1)

    queries = tokens
    for i, layer in enumerate(tr.layers):
        queries, keys = _block(layer, queries, keys, tokens, key_pe, prep if i == 0 else None)
    q = queries + tokens
    k = keys + key_pe
    attn_out = _attend_tokens_to_image(tr.final_attn_token_to_image, q, k, keys)
    queries = queries + attn_out
    hs = tr.norm_final_attn(queries)

    iou_token_out = hs[:, 0, :]
    mask_tokens_out = hs[:, 1 : (1 + md.num_mask_tokens), :]
    chosen = range(1, md.num_mask_tokens) if multimask_output else range(1)
    hyper_in = torch.stack(
        [md.output_hypernetworks_mlps[i](mask_tokens_out[:, i, :]) for i in chosen], dim=1
    )
    parts = _upscaling_parts(md)
    if parts is not None:
        masks = _upscale_masks(parts, keys[0], h, w, hyper_in[0])
    else:  # pragma: no cover - other decoder heads
        upscaled = md.output_upscaling(keys.transpose(1, 2).view(1, c, h, w))
        b, cu, hu, wu = upscaled.shape
        masks = (hyper_in @ upscaled.view(b, cu, hu * wu)).view(b, -1, hu, wu)
    iou_pred = md.iou_prediction_head(iou_token_out)
    mask_slice = slice(1, None) if multimask_output else slice(0, 1)
    return masks, iou_pred[:, mask_slice]


def _upscaling_parts(md: Any) -> tuple[Any, ...] | None:
    """(w1, b1, norm, act1, w2, b2, act2) when ``output_upscaling`` is SAM's chain.

    That is ConvT(2x2, stride 2) -> LayerNorm2d -> act -> ConvT(2x2, stride 2)
    -> act; None for anything else (then the modules run as they are).
    """
    seq = md.output_upscaling
    if len(seq) != 5:
        return None
    ct1, norm, act1, ct2, act2 = seq
    if not (_is_2x2_up(ct1) and _is_2x2_up(ct2)):
        return None
    if type(norm).__name__ != "LayerNorm2d" or not hasattr(norm, "eps"):
        return None
    return ct1.weight, ct1.bias, norm, act1, ct2.weight, ct2.bias, act2


def _is_2x2_up(m: Any) -> bool:
    if isinstance(m, ConvTranspose2x2):
        return m.bias is not None
    return (
        type(m) is torch.nn.ConvTranspose2d
        and m.kernel_size == (2, 2)
        and m.stride == (2, 2)
        and m.padding == (0, 0)
        and m.output_padding == (0, 0)
        and m.dilation == (1, 1)
        and m.groups == 1
        and m.bias is not None
    )


def _upscale_masks(parts: tuple[Any, ...], x: Tensor, h: int, w: int, hyper: Tensor) -> Tensor:
    """Mask logits (1, M, 4h, 4w) from image tokens ``x`` (h*w, C) and ``hyper`` (M, C/8).

    The upscaling runs pixel-major (channels last), so no 32-channel
    full-resolution tensor is ever transposed: each 2x2 transposed conv is a
    matmul whose columns are (dy, dx, channel); only the M final masks are
    permuted into image order. Same maths as the module chain.
    """
    w1, b1, norm, act1, w2, b2, act2 = parts
    cin, o1 = w1.shape[:2]
    o2 = w2.shape[1]
    y = torch.addmm(b1.repeat(4), x, w1.permute(0, 2, 3, 1).reshape(cin, 4 * o1))
    y = y.view(-1, o1)  # rows (h, w, dy, dx)
    # LayerNorm2d over channels (biased variance, eps inside the root) is
    # layer_norm over the last axis here: one fused pass instead of eight
    y = torch.nn.functional.layer_norm(y, (o1,), norm.weight, norm.bias, norm.eps)
    y = act1(y)
    z = torch.addmm(b2.repeat(4), y, w2.permute(0, 2, 3, 1).reshape(o1, 4 * o2))
    z = act2(z.view(-1, o2))  # rows (h, w, dy, dx, dy2, dx2)
    m = z @ hyper.t()  # (N, M)
    n_masks = m.shape[1]
    m = m.view(h, w, 2, 2, 2, 2, n_masks).permute(6, 0, 2, 4, 1, 3, 5)
    return m.reshape(1, n_masks, 4 * h, 4 * w)


class ConvTranspose2x2(torch.nn.Module):
    """``ConvTranspose2d(kernel 2, stride 2)`` as a matmul, sharing the original weights."""

    def __init__(self, conv: torch.nn.ConvTranspose2d) -> None:
        super().__init__()
        self.weight = conv.weight  # (in, out, 2, 2)
        self.bias = conv.bias

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        out = self.weight.shape[1]
        y = torch.matmul(x.flatten(2).transpose(1, 2), self.weight.reshape(c, out * 4))
        y = y.reshape(b, h, w, out, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(b, out, 2 * h, 2 * w)
        return y if self.bias is None else y + self.bias.view(1, -1, 1, 1)


def upscaling_as_matmul(sam: Any) -> None:
    """Swap the decoder's 2x2 stride-2 transposed convolutions for :class:`ConvTranspose2x2`.

    Same weights (same state_dict keys), same arithmetic; it speeds up the
    decoder where it runs through its own modules (``sam.mask_decoder(...)``):
    oneDNN's transposed convolution reorders its tensors on every call.
    """
    upscaling = getattr(getattr(sam, "mask_decoder", None), "output_upscaling", None)
    if not isinstance(upscaling, torch.nn.Sequential):
        return
    for i, layer in enumerate(upscaling):
        if type(layer) is torch.nn.ConvTranspose2d and _is_2x2_up(layer):
            upscaling[i] = ConvTranspose2x2(layer)
