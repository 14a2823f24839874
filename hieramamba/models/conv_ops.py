"""Faster CPU forms of the convolutions the backbones use, equal to ``nn.Conv1d`` up to float rounding.

The modules keep their ``nn.Conv1d`` parameters (checkpoint names and shapes unchanged); only the
call differs. Measured on this project's 2-core CPU (2 threads, heap-only allocator, T = 24k, the
interleaved length of a 16k video at d 256), time per call against ``F.conv1d``:

- ``pointwise_conv``, a kernel-1 conv: on a channels-last input one ``F.linear`` over the (B T,
  C_in) rows (``F.conv1d`` on that layout is 1.2-3.3x slower); on a channels-first input one GEMM
  with the bias inside (``addmm``/``baddbmm``) for short sequences, and oneDNN's 1x1 convolution
  (``F.conv1d``) from ``CONV1D_MIN_LENGTH`` steps on. Measured 2026-12-07 (2 threads, heap-only
  allocator, median of 7, one process), forward / forward+backward ms, addmm vs conv1d:
  B 16, T 256: 4.6 / 11.6 vs 5.8 / 11.4 (256 -> 256), 12.1 / 40.4 vs 13.1 / 42.9 (256 -> 1024);
  B 4, T 2304: 28.8 / 88.1 vs 29.0 / 104.4 (256 -> 1024); B 1, T 4096: 12.4 vs 12.8, 13.2 vs 12.6
  (forward, 256 -> 1024 and 1024 -> 256); B 1, T 16384: 67.4 / 189.5 vs 52.6 / 177.8 (256 ->
  1024), 74.3 / 193.7 vs 53.8 / 178.1 (1024 -> 256); B 1, T 65536: 284 / 776 vs 210 / 672,
  280 / 847 vs 207 / 679. (An earlier round's "GEMM 7-16 % faster than conv1d" at T = 24k did
  not hold up: today conv1d is 10-22 % faster there.)
- ``depthwise_conv3``, SnAG's kernel-3, stride-1 depthwise q/k/v convs as three shifted
  multiply-adds: 24 vs 32 ms at C = 256.
- ``depthwise_conv_channels_last``, Hydra's depthwise conv (kernel 7, 768 channels) run on the
  channels-last ``(B, L, C)`` tensor as a 2-d channels-last conv: 40 vs 212 ms for transposing to
  ``(B, C, L)``, convolving and transposing back; the output is again channels-last, so neither
  side needs a layout copy.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def is_channels_last(x: torch.Tensor) -> bool:
    """True when the (B, C, T) tensor x is the transpose of a contiguous (B, T, C) one."""
    return x.transpose(1, 2).is_contiguous()


# From this many steps on, a channels-first 1x1 conv runs as oneDNN's convolution (see above).
CONV1D_MIN_LENGTH = 4096


def pointwise_conv(x: torch.Tensor, conv: nn.Conv1d) -> torch.Tensor:
    """A kernel-1 ``conv`` (stride 1, groups 1): (B, C_in, T) -> (B, C_out, T), by the fastest
    equal form measured for x's layout and length (module docstring).

    The output keeps x's layout: channels-first in, channels-first out; a channels-last x (the
    transpose of a contiguous (B, T, C_in)) gives the transpose of a contiguous (B, T, C_out).
    """
    weight = conv.weight[..., 0]  # (C_out, C_in)
    if is_channels_last(x):
        return F.linear(x.transpose(1, 2), weight, conv.bias).transpose(1, 2)  # one GEMM on (B T, C_in)
    if x.shape[-1] >= CONV1D_MIN_LENGTH:  # long sequences: MKL's GEMM with N = T lags oneDNN's conv
        return F.conv1d(x, conv.weight, conv.bias)
    if conv.bias is None:
        return torch.matmul(weight, x)
    if x.shape[0] == 1:
        return torch.addmm(conv.bias[:, None], weight, x[0])[None]  # one GEMM, bias folded in
    return torch.baddbmm(conv.bias[:, None], weight.expand(x.shape[0], -1, -1), x)


def depthwise_conv3(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Depthwise conv, kernel 3, stride 1, zero padding 1, no bias, as shifted multiply-adds.

    x (B, C, T), weight (C, 1, 3) -> (B, C, T): out[t] = w0 x[t-1] + w1 x[t] + w2 x[t+1].
    """
    w = weight[:, 0, :, None]  # (C, 3, 1)
    out = x * w[:, 1]
    out[..., 1:].addcmul_(x[..., :-1], w[:, 0])
    out[..., :-1].addcmul_(x[..., 1:], w[:, 2])
    return out


def depthwise_conv_channels_last(x: torch.Tensor, conv: nn.Conv1d) -> torch.Tensor:
    """``conv`` (depthwise, stride 1) on a channels-last sequence: (B, L, C) -> (B, L_out, C).

    L_out = L + 2 * padding - kernel + 1, as ``conv`` on the (B, C, L) transpose. The (B, C, 1, L)
    channels-last view of x is what mkldnn's depthwise kernel reads natively, and its output is
    channels-last again, i.e. a contiguous (B, L_out, C) (for L > 1: a length-1 input is both layouts
    at once and torch may return either; the values are the same).
    """
    x4 = x.transpose(1, 2).unsqueeze(2).contiguous(memory_format=torch.channels_last)  # (B, C, 1, L)
    out = F.conv2d(x4, conv.weight.unsqueeze(2), conv.bias, padding=(0, conv.padding[0]),
                   groups=conv.groups)  # (B, C, 1, L_out), channels-last
    return out.squeeze(2).transpose(1, 2)  # (B, L_out, C), contiguous


class _GeluLinear(torch.autograd.Function):
    """``F.linear(F.gelu(h), weight, bias)`` that keeps h, not gelu(h), for the backward.

    Autograd's chain keeps both the GELU's input (for its derivative) and its output (for the
    linear's weight gradient): two (rows, 4C) tensors per FFN. Here the output is recomputed from
    h in the backward, one elementwise pass; the same products as autograd's, so the same values.
    """

    @staticmethod
    def forward(ctx, h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(h, weight)
        ctx.has_bias = bias is not None
        return F.linear(F.gelu(h), weight, bias)  # (..., K) -> (..., M)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        h, weight = ctx.saved_tensors
        rows = grad.reshape(-1, grad.shape[-1])  # (N, M)
        d_weight = rows.t() @ F.gelu(h).reshape(-1, h.shape[-1]) if ctx.needs_input_grad[1] else None  # (M, K)
        d_bias = rows.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        d_h = torch.ops.aten.gelu_backward(grad @ weight, h) if ctx.needs_input_grad[0] else None  # (..., K)
        return d_h, d_weight, d_bias


def gelu_pointwise_conv(x: torch.Tensor, conv: nn.Conv1d) -> torch.Tensor:
    """``pointwise_conv(F.gelu(x), conv)``; for a channels-last x with an autograd graph, keeping
    only x for the backward (``_GeluLinear``). (B, C_in, T) -> (B, C_out, T), x's layout."""
    if not (torch.is_grad_enabled() and x.requires_grad and is_channels_last(x)):
        return pointwise_conv(F.gelu(x), conv)
    return _GeluLinear.apply(x.transpose(1, 2), conv.weight[..., 0], conv.bias).transpose(1, 2)
