"""SnAG's attention building blocks, written anew from the reference description (§1.5 / §4).

Everything here is channels-first ``(B, C, T)`` with masks ``(B, 1, T)`` bool (True = valid),
except ``GlobalAttentionMixer``, which is channels-last so it can stand in for Hydra.

- ``MaskedConv1D``: conv of the masked input; stride > 1 downsamples the mask (nearest).
- ``MaskedMaxPool1D``: max-pool over valid positions only (the skip of stride-2 encoders).
- ``sinusoid_encoding``: SnAG's absolute position table.
- ``MaskedMHA``: multi-head attention with 1x1-conv projections, q and k *each* scaled by
  d_head^(-1/4); global (``window_size=0``) or banded local attention (``window_size`` odd).
- ``ConvAttNLayer`` / ``ConvXAttNLayer``: (depthwise conv -> LayerNorm) q/k/v, then attention.
- ``FFN``, ``TransformerEncoder`` (stride 0 = no convs, 1, or 2), ``TransformerDecoder`` (the
  cross-attention fusion layer, ``adaln`` or ``affine``).
- ``GlobalAttentionMixer``: global masked self-attention with the Hydra interface
  ``(B, L, D), (B, L) -> (B, L, D)``, used for the ``global_mixer=attention`` ablation.

Sub-module names equal the authors' (``attn.q_conv.conv.weight``, ``ln_attn.weight``...), so the
authors' checkpoints load by name.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from hieramamba.models.conv_ops import depthwise_conv3, gelu_pointwise_conv, is_channels_last, pointwise_conv
from hieramamba.models.dropout import Dropout
from hieramamba.models.norms import LayerNorm, LayerScale
from hieramamba.models.window_attention import banded_attention


def sinusoid_encoding(seq_len: int, n_freqs: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """SnAG's sinusoidal table ``(2 * n_freqs, seq_len)``: ``[sin(t / f_j) ; cos(t / f_j)]``.

    f_j = 10000^(j / n_freqs), j = 0 .. n_freqs - 1. ``dtype`` is the dtype the table is
    *computed* in: float64 by default (accurate phases for long videos); the authors compute
    it in float32 (``reference_precision``).
    """
    tics = torch.arange(seq_len, dtype=dtype)
    freqs = 10000 ** torch.linspace(0, 1, n_freqs + 1, dtype=dtype)[:n_freqs]
    x = tics[None, :] / freqs[:, None]  # (n_freqs, T)
    return torch.cat((torch.sin(x), torch.cos(x)))  # (2 * n_freqs, T)


def downsample_mask_nearest(mask: torch.Tensor, stride: int, out_len: int) -> torch.Tensor:
    """Nearest downsampling of a ``(B, 1, T)`` mask to ``out_len`` = ceil(T / stride) positions.

    Equals ``F.interpolate(mode='nearest')`` (what the authors use) whenever T % stride == 0, and
    stays aligned with the conv output (position j <- input j * stride) for other lengths.
    """
    return mask[..., ::stride][..., :out_len]


class MaskedConv1D(nn.Module):
    """``conv(x * mask)``; the output mask is the input mask, downsampled when stride > 1.

    The bias (when there is one) is initialised to zero, as SnAG does.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, groups: int = 1, bias: bool = True):
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                              groups=groups, bias=bias)
        if bias:
            nn.init.zeros_(self.conv.bias)

    def _conv(self, x: torch.Tensor) -> torch.Tensor:
        """``self.conv(x)``, by the faster equal form of ``conv_ops`` where one applies."""
        conv = self.conv
        k, groups = conv.kernel_size[0], conv.groups
        if k == 1 and groups == 1 and self.stride == 1:
            return pointwise_conv(x, conv)
        if (k, self.stride, conv.padding[0]) == (3, 1, 1) and groups == conv.in_channels == conv.out_channels \
                and conv.bias is None:
            return depthwise_conv3(x, conv.weight)
        return conv(x)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        # x (B, C_in, T), mask (B, 1, T) -> (B, C_out, T'), (B, 1, T')
        if mask is None:
            mask = torch.ones_like(x[:, :1], dtype=torch.bool)
        return self.forward_masked(x * mask.to(x.dtype), mask)

    def forward_masked(self, x_masked: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``forward`` for an input already multiplied by ``mask`` (several convs of one input
        then share that product instead of each writing, and in training keeping, its own)."""
        out = self._conv(x_masked)
        if self.stride > 1:
            mask = downsample_mask_nearest(mask, self.stride, out.shape[-1])
        return out, mask


class MaskedMaxPool1D(nn.Module):
    """Max-pool (kernel k, stride s, padding (k-1)//2) that ignores invalid positions.

    An output is valid iff its window holds a valid input; invalid outputs are zero. Same result
    as SnAG's (which fills invalid inputs with the sequence minimum) on every valid output.
    """

    def __init__(self, kernel_size: int, stride: int):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pad = (self.kernel_size - 1) // 2
        filled = x.masked_fill(~mask, float("-inf"))
        out = F.max_pool1d(filled, self.kernel_size, self.stride, pad)
        out_mask = F.max_pool1d(mask.to(x.dtype), self.kernel_size, self.stride, pad) > 0
        out = torch.where(out_mask, out, torch.zeros_like(out))
        return out, out_mask


class MaskedMHA(nn.Module):
    """Masked multi-head attention (global or banded local), SnAG's ``MaskedMHA``.

    Projections are 1x1 convs named ``query``, ``key``, ``value``, ``proj``. q and k are each
    multiplied by d_head^(-1/4) (so the logits carry 1/sqrt(d_head) overall).

    - ``window_size=0``: global attention; invalid keys are excluded (logit -inf). A query row
      with no valid key at all gives zeros instead of NaN.
    - ``window_size=w`` (odd): query t attends to keys t-w//2 .. t+w//2 that exist and are valid;
      rows of invalid queries are zeroed (as SnAG's). SnAG computes this band with overlapping
      Longformer chunks, which needs the length to be a multiple of w//2 (HieraMamba zero-pads
      q/k/v for that); here it is ``hieramamba.models.window_attention.banded_attention``
      (blocks of queries against their keys plus a halo, no per-position copies of k/v), which
      gives the same numbers for any length with no length condition. Self-attention only (t1 == t2).
    - ``kv_size``: when k/v have more rows than q, each q row is repeated ``kv_size[i]`` times
      (one video shared by several queries).
    """

    def __init__(self, embd_dim: int, q_dim: int | None = None, kv_dim: int | None = None,
                 out_dim: int | None = None, n_heads: int = 4, window_size: int = 0,
                 attn_pdrop: float = 0.0, proj_pdrop: float = 0.0):
        super().__init__()
        if embd_dim % n_heads != 0:
            raise ValueError(f"embd_dim {embd_dim} is not divisible by n_heads {n_heads}")
        if window_size != 0 and window_size % 2 != 1:
            raise ValueError(f"window_size must be 0 (global) or odd, got {window_size}")
        q_dim = embd_dim if q_dim is None else q_dim
        kv_dim = embd_dim if kv_dim is None else kv_dim
        out_dim = q_dim if out_dim is None else out_dim
        self.embd_dim = embd_dim
        self.n_heads = n_heads
        self.n_channels = embd_dim // n_heads
        self.scale = 1.0 / math.sqrt(math.sqrt(self.n_channels))
        self.out_dim = out_dim
        self.window_size = window_size
        self.query = nn.Conv1d(q_dim, embd_dim, 1)
        self.key = nn.Conv1d(kv_dim, embd_dim, 1)
        self.value = nn.Conv1d(kv_dim, embd_dim, 1)
        self.proj = nn.Conv1d(embd_dim, out_dim, 1)
        self.attn_drop = Dropout(attn_pdrop)
        self.proj_drop = Dropout(proj_pdrop)

    def _global(self, q, k, v, kv_mask):
        # q (b, h, d, t1), k/v (b, h, d, t2), kv_mask (b, 1, t2)
        logits = (q * self.scale).transpose(2, 3) @ (k * self.scale)  # (b, h, t1, t2)
        logits = logits.masked_fill(~kv_mask[:, :, None, :], float("-inf"))
        attn = torch.softmax(logits, dim=-1)
        # rows with no valid key: softmax of all -inf is NaN -> zero weights
        attn = torch.where(kv_mask[:, :, None, :].any(-1, keepdim=True), attn, torch.zeros_like(attn))
        attn = self.attn_drop(attn)
        return attn @ v.transpose(2, 3)  # (b, h, t1, d)

    def _local(self, q, k, v, mask):
        # q/k/v (b, h, d, t), mask (b, 1, t) -> (b, h, t, d); q.k carries scale twice, as in _global
        return banded_attention(q, k, v, mask, self.window_size, self.scale * self.scale, self.attn_drop)

    def forward(self, q: torch.Tensor, k: torch.Tensor | None = None, v: torch.Tensor | None = None,
                kv_mask: torch.Tensor | None = None, kv_size: torch.Tensor | None = None) -> torch.Tensor:
        # q (B, C_q, t1), k/v (B', C_kv, t2), kv_mask (B', 1, t2) -> (B', out_dim, t1)
        k = q if k is None else k
        v = k if v is None else v
        if kv_mask is None:
            kv_mask = torch.ones_like(k[:, :1], dtype=torch.bool)
        q = pointwise_conv(q, self.query)  # (B, C, t1); the 1x1 convs as matmuls (conv_ops)
        k = pointwise_conv(k, self.key)
        v = pointwise_conv(v, self.value)
        if kv_size is not None and k.shape[0] != q.shape[0]:
            q = q.repeat_interleave(kv_size, dim=0)
        channels_last = is_channels_last(q)  # the output keeps the input's layout (conv_ops)
        bs, h, d = q.shape[0], self.n_heads, self.n_channels
        q = q.view(bs, h, d, -1)
        k = k.view(bs, h, d, -1)
        v = v.view(bs, h, d, -1)
        if self.window_size > 0:
            if q.shape[-1] != k.shape[-1]:
                raise ValueError("windowed attention is self-attention: query and key lengths must match")
            out = self._local(q, k, v, kv_mask)
        else:
            out = self._global(q, k, v, kv_mask)
        if channels_last:
            out = out.transpose(1, 2).reshape(bs, -1, self.embd_dim).transpose(1, 2)  # (B, C, t1), channels-last
        else:
            out = out.transpose(2, 3).reshape(bs, self.embd_dim, -1)  # (B, C, t1)
        return self.proj_drop(pointwise_conv(out, self.proj))


class ConvAttNLayer(nn.Module):
    """Self-attention whose q, k, v are each LayerNorm(depthwise conv k=3 (given stride))(x).

    ``stride=0`` uses x directly for q, k, v (no convs); stride 1 or 2 keeps / halves the length.
    """

    def __init__(self, embd_dim: int, out_dim: int | None = None, stride: int = 1, n_heads: int = 4,
                 window_size: int = 0, attn_pdrop: float = 0.0, proj_pdrop: float = 0.0):
        super().__init__()
        self.use_conv = stride > 0
        if self.use_conv:
            if not (stride == 1 or stride % 2 == 0):
                raise ValueError(f"conv stride must be 1 or even, got {stride}")
            for name in ("q", "k", "v"):
                setattr(self, f"{name}_conv", MaskedConv1D(embd_dim, embd_dim, 3, stride, 1, groups=embd_dim, bias=False))
                setattr(self, f"{name}_norm", LayerNorm(embd_dim))
        self.attn = MaskedMHA(embd_dim, out_dim=out_dim or embd_dim, n_heads=n_heads, window_size=window_size,
                              attn_pdrop=attn_pdrop, proj_pdrop=proj_pdrop)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.use_conv:
            # one masked copy of x for the three convs (each conv's own x * mask was a full-size
            # pass, and in training a tensor kept for the conv's weight gradient: 2 of 3 saved);
            # each output normalised right after its conv, so at most one un-normalised one exists
            x_masked = x * mask.to(x.dtype)
            k = self.k_norm(self.k_conv.forward_masked(x_masked, mask)[0])
            v = self.v_norm(self.v_conv.forward_masked(x_masked, mask)[0])
            q, mask = self.q_conv.forward_masked(x_masked, mask)
            del x_masked
            q = self.q_norm(q)
        else:
            q = k = v = x
        return self.attn(q, k, v, mask), mask


class ConvXAttNLayer(nn.Module):
    """Cross-attention whose query is LayerNorm(depthwise conv k=3 (x)); keys/values are ``kv``."""

    def __init__(self, embd_dim: int, kv_dim: int, out_dim: int | None = None, stride: int = 1,
                 n_heads: int = 4, attn_pdrop: float = 0.0, proj_pdrop: float = 0.0):
        super().__init__()
        self.use_conv = stride > 0
        if self.use_conv:
            self.q_conv = MaskedConv1D(embd_dim, embd_dim, 3, stride, 1, groups=embd_dim, bias=False)
            self.q_norm = LayerNorm(embd_dim)
        self.xattn = MaskedMHA(embd_dim, kv_dim=kv_dim, out_dim=out_dim or embd_dim, n_heads=n_heads,
                               attn_pdrop=attn_pdrop, proj_pdrop=proj_pdrop)

    def forward(self, q, q_mask, kv, kv_mask, kv_size=None):
        if self.use_conv:
            q, q_mask = self.q_conv(q, q_mask)
            q = self.q_norm(q)
        out = self.xattn(q, kv, None, kv_mask, kv_size)
        if kv_size is not None and out.shape[0] != q_mask.shape[0]:
            q_mask = q_mask.repeat_interleave(kv_size, dim=0)
        return out, q_mask


class FFN(nn.Module):
    """1x1 conv C -> eC, GELU, dropout, 1x1 conv eC -> C, dropout (channels-first)."""

    def __init__(self, channels: int, expansion: int = 4, pdrop: float = 0.0):
        super().__init__()
        self.fc = nn.Conv1d(channels, channels * expansion, 1)
        self.actv = nn.GELU()
        self.proj = nn.Conv1d(channels * expansion, channels, 1)
        self.dropout = Dropout(pdrop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = pointwise_conv(x, self.fc)  # (B, eC, T); 1x1 convs as matmuls (conv_ops)
        if self.training and self.dropout.p > 0.0:
            return self.dropout(pointwise_conv(self.dropout(self.actv(h)), self.proj))
        if torch.is_grad_enabled() and h.requires_grad and is_channels_last(h):
            return gelu_pointwise_conv(h, self.proj)  # keeps h, not GELU(h), for the backward (conv_ops)
        h = self.actv(h)  # rebinding frees the pre-activation before proj runs (inference memory)
        return pointwise_conv(h, self.proj)


class TransformerEncoder(nn.Module):
    """SnAG's encoder layer: (depthwise-conv q/k/v) masked self-attention, then an FFN.

    x <- x * mask; x <- skip * mask + LS(attn(LN(x))); x <- x + LS(FFN(LN(x)) * mask), where
    skip = x (stride <= 1) or a masked max-pool k=3 (stride 2, which halves the length and the
    mask). ``window_size=0`` is global attention. Returns ``(x, mask)``; outputs at invalid
    positions are not guaranteed to be zero (callers mask them).
    """

    def __init__(self, embd_dim: int, stride: int = 1, n_heads: int = 4, window_size: int = 0,
                 expansion: int = 4, attn_pdrop: float = 0.0, proj_pdrop: float = 0.0, path_pdrop: float = 0.0):
        super().__init__()
        self.attn = ConvAttNLayer(embd_dim, stride=stride, n_heads=n_heads, window_size=window_size,
                                  attn_pdrop=attn_pdrop, proj_pdrop=proj_pdrop)
        self.ln_attn = LayerNorm(embd_dim)
        self.drop_path_attn = LayerScale(embd_dim, path_pdrop)
        self.attn_skip = MaskedMaxPool1D(3, stride=stride) if stride > 1 else None
        self.ffn = FFN(embd_dim, expansion, proj_pdrop)
        self.ln_ffn = LayerNorm(embd_dim)
        self.drop_path_ffn = LayerScale(embd_dim, path_pdrop)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        # x (B, C, T), mask (B, 1, T) -> (B, C, T'), (B, 1, T') with T' = T or ceil(T / stride)
        if mask is None:
            mask = torch.ones_like(x[:, :1], dtype=torch.bool)
        x = x * mask.to(x.dtype)
        skip = self.attn_skip(x, mask)[0] if self.attn_skip is not None else x
        h, mask = self.attn(self.ln_attn(x), mask)
        x = skip * mask.to(x.dtype) + self.drop_path_attn(h)
        h = self.ffn(self.ln_ffn(x)) * mask.to(x.dtype)
        return x + self.drop_path_ffn(h), mask


class TransformerDecoder(nn.Module):
    """SnAG's fusion layer: cross-attention modulation (no self-attention), then an FFN.

    h = XAttn(q = LN_q(video), kv = LN_kv(text)) with 2C outputs = (scale, shift);
    q <- norm(q * mask) * scale + shift (norm: non-affine LayerNorm for ``adaln``, identity for
    ``affine``; no residual around the cross-attention); q <- q + LS(FFN(LN(q)) * mask).
    Video rows are repeated per query when ``kv_size`` says several queries share one video.
    """

    def __init__(self, embd_dim: int, kv_dim: int, n_heads: int = 4, expansion: int = 4,
                 attn_pdrop: float = 0.0, proj_pdrop: float = 0.0, path_pdrop: float = 0.0,
                 xattn_mode: str = "adaln"):
        super().__init__()
        if xattn_mode not in ("affine", "adaln"):
            raise ValueError(f"xattn_mode must be 'affine' or 'adaln', got {xattn_mode!r}")
        self.xattn = ConvXAttNLayer(embd_dim, kv_dim, embd_dim * 2, stride=1, n_heads=n_heads,
                                    attn_pdrop=attn_pdrop, proj_pdrop=proj_pdrop)
        self.ln_xattn_q = LayerNorm(embd_dim)
        self.ln_xattn_kv = LayerNorm(kv_dim)
        self.adaln = LayerNorm(embd_dim, affine=False) if xattn_mode == "adaln" else nn.Identity()
        self.ffn = FFN(embd_dim, expansion, proj_pdrop)
        self.ln_ffn = LayerNorm(embd_dim)
        self.drop_path_ffn = LayerScale(embd_dim, path_pdrop)

    def forward(self, q, q_mask, kv, kv_mask, kv_size=None):
        # q (B_v, C, T), q_mask (B_v, 1, T), kv (B_q, C_t, t), kv_mask (B_q, 1, t) -> (B_q, C, T)
        if q_mask is None:
            q_mask = torch.ones_like(q[:, :1], dtype=torch.bool)
        q = q * q_mask.to(q.dtype)
        h, q_mask = self.xattn(self.ln_xattn_q(q), q_mask, self.ln_xattn_kv(kv), kv_mask, kv_size)
        if kv_size is not None and q.shape[0] != h.shape[0]:
            q = q.repeat_interleave(kv_size, dim=0)
        q = self.adaln(q * q_mask.to(q.dtype))
        scale, shift = h.chunk(2, dim=1)
        q = q * scale + shift
        h = self.ffn(self.ln_ffn(q)) * q_mask.to(q.dtype)
        return q + self.drop_path_ffn(h), q_mask


class GlobalAttentionMixer(nn.Module):
    """Global masked multi-head self-attention with Hydra's interface (channels-last).

    ``forward(u (B, L, D), mask (B, L) bool | None) -> (B, L, D)``. Padded positions are
    excluded as keys, so they cannot change any valid output; their own outputs are zeroed.
    In the AMP block it takes Hydra's place inside the same pre-norm / LayerScale / gate
    wrapper, which makes the block a standard (global) transformer block.
    """

    def __init__(self, d_model: int, n_heads: int = 4, attn_pdrop: float = 0.0, proj_pdrop: float = 0.0):
        super().__init__()
        self.attn = MaskedMHA(d_model, n_heads=n_heads, window_size=0, attn_pdrop=attn_pdrop, proj_pdrop=proj_pdrop)

    def forward(self, u: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = u.transpose(1, 2)  # (B, D, L)
        m = None if mask is None else mask[:, None, :]  # (B, 1, L)
        out = self.attn(x, kv_mask=m).transpose(1, 2)  # (B, L, D)
        if mask is not None:
            out = out * mask[..., None].to(out.dtype)
        return out
