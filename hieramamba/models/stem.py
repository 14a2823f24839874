"""The embedding stem HieraMamba and SnAG share (reference §1.4 steps 1-3), used by every backbone.

    x (B, C_in, T) -> embd_fc (masked 1x1 conv) -> num_convs x [masked conv (no bias), channel
      LayerNorm, ReLU] -> + sinusoidal PE (optional) -> x * mask          -> (B, D, T'), (B, 1, T')

with T' = ceil(T / input_stride). MAD uses ``input_stride=2``: the first embedding conv is kernel 5,
stride 2 (mask downsampled), so every level stride is doubled relative to the input grid.

One construction (``add_embedding_layers``) and one computation (``embed``), written against the
module that owns the layers, so that:

- ``EmbeddingStem`` (the seed backbones' ``stem`` child) owns them itself;
- ``HieraMambaBackbone`` registers them on itself, keeping its checkpoint keys ``embd_fc.*``,
  ``embd_convs.*``, ``embd_norms.*`` (those of the authors' checkpoints, see
  ``hieramamba.models.compat``) instead of the ``stem.embd_*`` a child module would give.

The PE table is a non-persistent buffer ``pe`` (not in checkpoints; rebuilt from the config).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from hieramamba.errors import ConfigError
from hieramamba.models.attention import MaskedConv1D, sinusoid_encoding
from hieramamba.models.norms import LayerNorm


def position_table(max_seq_len: int, embd_dim: int, reference_precision: bool = False) -> torch.Tensor:
    """The backbone's PE ``(D, max_seq_len)``: SnAG's sinusoid table divided by sqrt(D).

    Computed in float64 (then cast to the activations' dtype at use); ``reference_precision``
    computes it in float32 as the authors do (their third float32 round-trip).
    """
    if embd_dim % 2:
        raise ConfigError(f"model.embd_dim = {embd_dim} must be even for the sinusoidal position encoding")
    dtype = torch.float32 if reference_precision else torch.float64
    return sinusoid_encoding(max_seq_len, embd_dim // 2, dtype=dtype) / embd_dim ** 0.5


def positions_for_length(pe: torch.Tensor, length: int, training: bool) -> torch.Tensor:
    """PE for ``length`` steps: a prefix of the table, or (eval only) the table linearly
    interpolated to ``length`` when the video is longer than ``max_seq_len``."""
    if length <= pe.shape[-1]:
        return pe[..., :length]
    if training:
        raise ValueError(f"training sequence length {length} exceeds max_seq_len {pe.shape[-1]}")
    return F.interpolate(pe[None], size=length, mode="linear", align_corners=True)[0]


def check_stem_args(input_stride: int, num_convs: int) -> None:
    """``input_stride`` must be a power of 2 that ``num_convs`` stride-2 convs can realise."""
    if input_stride < 1 or input_stride & (input_stride - 1):
        raise ConfigError(f"model.backbone.input_stride = {input_stride} must be a power of 2")
    if num_convs < int(math.log2(input_stride)):
        raise ConfigError(f"model.backbone.num_convs = {num_convs} cannot realise input_stride {input_stride}")


def add_embedding_layers(owner: nn.Module, in_dim: int, embd_dim: int, max_seq_len: int = 2304,
                         num_convs: int = 2, input_stride: int = 1, use_abs_pe: bool = True,
                         reference_precision: bool = False) -> None:
    """Register the stem's layers on ``owner``: ``embd_fc``, ``embd_convs``, ``embd_norms``, buffer
    ``pe`` (None without PE) and ``input_stride``. The first log2(input_stride) convs are kernel 5,
    stride 2; the others kernel 3, stride 1."""
    check_stem_args(input_stride, num_convs)
    owner.input_stride = input_stride
    owner.embd_fc = MaskedConv1D(in_dim, embd_dim, 1)
    owner.embd_convs = nn.ModuleList()
    owner.embd_norms = nn.ModuleList()
    remaining = input_stride
    for _ in range(num_convs):
        strided = remaining > 1
        owner.embd_convs.append(MaskedConv1D(embd_dim, embd_dim, kernel_size=5 if strided else 3,
                                             stride=2 if strided else 1, padding=2 if strided else 1,
                                             bias=False))
        owner.embd_norms.append(LayerNorm(embd_dim))
        remaining = max(remaining // 2, 1)
    if use_abs_pe:
        owner.register_buffer("pe", position_table(max_seq_len, embd_dim, reference_precision), persistent=False)
    else:
        owner.pe = None


def embed(owner: nn.Module, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The stem's computation with ``owner``'s layers (see ``add_embedding_layers``):
    ``x (B, C_in, T), mask (B, 1, T) -> (B, D, T'), (B, 1, T')``, zero at padded steps."""
    x, _ = owner.embd_fc(x, mask)  # (B, D, T)
    for conv, norm in zip(owner.embd_convs, owner.embd_norms):
        x, mask = conv(x, mask)  # (B, D, T'), (B, 1, T')
        x = F.relu(norm(x))
    if owner.pe is not None:
        x = x + positions_for_length(owner.pe, x.shape[-1], owner.training).to(x.dtype)
    return x * mask.to(x.dtype), mask


class EmbeddingStem(nn.Module):
    """The stem as a module: ``forward(x (B, C_in, T), mask (B, 1, T)) -> (x (B, D, T'),
    mask (B, 1, T'))`` with T' = ceil(T / input_stride); outputs are zero at padded steps.

    Sub-module names and computation are ``HieraMambaBackbone``'s (same code), so the seed
    backbones get exactly the stem HieraMamba has: a controlled comparison of what comes after it.
    """

    def __init__(self, in_dim: int, embd_dim: int, max_seq_len: int = 2304, num_convs: int = 2,
                 input_stride: int = 1, use_abs_pe: bool = True, reference_precision: bool = False):
        super().__init__()
        add_embedding_layers(self, in_dim, embd_dim, max_seq_len, num_convs, input_stride, use_abs_pe,
                             reference_precision)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return embed(self, x, mask)
