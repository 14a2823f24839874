"""Normalisation and residual-scaling layers shared by the HieraMamba and SnAG-style blocks.

- ``RMSNorm``: channels-last RMS normalisation computed in (at least) float32.
- ``LayerNorm``: channels-first ``(B, C, T)`` layer norm over C (SnAG's ``LayerNorm``).
- ``LayerScale``: per-channel residual scale (init 1e-4) followed by per-sample stochastic depth.
- ``Scale``: one learnable scalar (the per-level regression scale of the heads).
- ``drop_path``: per-sample stochastic depth.

Parameter names and shapes follow the authors' modules so their checkpoints load by name.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from hieramamba.models.conv_ops import is_channels_last


def drop_path(x: torch.Tensor, drop_prob: float = 0.0, training: bool = False) -> torch.Tensor:
    """Stochastic depth per sample: zero whole rows of the batch with probability ``drop_prob``.

    Kept rows are rescaled by ``1 / (1 - drop_prob)`` so the expectation is unchanged.
    """
    if drop_prob == 0.0 or not training:
        return x
    keep_prob = 1.0 - drop_prob
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    keep = torch.rand(shape, dtype=x.dtype, device=x.device) < keep_prob
    return x * keep.to(x.dtype) / keep_prob


class RMSNorm(nn.Module):
    """RMSNorm over the last axis: ``x * rsqrt(mean(x^2) + eps) * weight``.

    The statistics are computed in float32 (float64 inputs stay float64) and the result is cast
    back to the input dtype. ``reference_precision=True`` reproduces the authors' order of
    operations exactly: normalise in float32 (also for float64 inputs), cast to the input dtype,
    *then* multiply by the float32 weight (so a half-precision input comes back as float32).
    """

    def __init__(self, hidden_size: int, eps: float = 1e-6, reference_precision: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))  # (D,)
        self.eps = eps
        self.reference_precision = reference_precision

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (..., D) -> (..., D)
        in_dtype = x.dtype
        if self.reference_precision:
            h = x.to(torch.float32)
            h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
            return self.weight * h.to(in_dtype)
        compute = torch.float64 if in_dtype == torch.float64 else torch.float32
        h = x.to(compute)
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return (h * self.weight.to(compute)).to(in_dtype)

    def extra_repr(self) -> str:
        return f"{self.weight.numel()}, eps={self.eps}, reference_precision={self.reference_precision}"


class LayerNorm(nn.Module):
    """Layer norm of a channels-first ``(B, C, T)`` tensor over C; affine params shaped (C, 1)."""

    def __init__(self, n_channels: int, affine: bool = True, eps: float = 1e-5):
        super().__init__()
        self.n_channels = n_channels
        self.eps = eps
        if affine:
            self.weight = nn.Parameter(torch.ones(n_channels, 1))
            self.bias = nn.Parameter(torch.zeros(n_channels, 1))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T) -> (B, C, T), x's layout
        if is_channels_last(x):
            # channels-last memory (the transpose of a contiguous (B, T, C)): torch's fused layer norm
            # over the last axis, one pass instead of the ~9 elementwise passes below; same formula
            # (biased variance, eps inside the square root)
            w = None if self.weight is None else self.weight[:, 0].to(x.dtype)
            b = None if self.bias is None else self.bias[:, 0].to(x.dtype)
            return F.layer_norm(x.transpose(1, 2), (self.n_channels,), w, b, self.eps).transpose(1, 2)
        x = x - x.mean(dim=1, keepdim=True)
        x = x / torch.sqrt(x.pow(2).mean(dim=1, keepdim=True) + self.eps)
        if self.weight is not None:
            x = x * self.weight.to(x.dtype) + self.bias.to(x.dtype)
        return x


class LayerScale(nn.Module):
    """Per-channel scale of a residual branch (init ``init_scale``), then stochastic depth.

    ``channel_dim=1`` is SnAG's channels-first ``LayerScale`` (scale shaped (1, C, 1));
    ``channel_dim=-1`` is the authors' channels-last ``LayerScale2`` (scale shaped (1, 1, C)).
    """

    def __init__(self, n_channels: int, pdrop: float = 0.0, init_scale: float = 1e-4, channel_dim: int = 1):
        super().__init__()
        if channel_dim not in (1, -1):
            raise ValueError(f"channel_dim must be 1 (channels-first) or -1 (channels-last), got {channel_dim}")
        shape = (1, n_channels, 1) if channel_dim == 1 else (1, 1, n_channels)
        self.scale = nn.Parameter(init_scale * torch.ones(shape))
        self.pdrop = pdrop
        self.channel_dim = channel_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(self.scale.to(x.dtype) * x, self.pdrop, self.training)


class Scale(nn.Module):
    """Multiply by one learnable scalar (init ``init``)."""

    def __init__(self, init: float = 1.0):
        super().__init__()
        self.scale = nn.Parameter(torch.as_tensor(init, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale.to(x.dtype)
