"""The faster convolution forms of ``hieramamba.models.conv_ops`` (and the layers that use them) equal
the ``nn.Conv1d`` / concatenation formulations they replace: values and gradients, both layouts,
odd lengths, B = 2 with masks."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from hieramamba.models.amp import gated_merge
from hieramamba.models.attention import MaskedMHA, TransformerEncoder
from hieramamba.models.conv_ops import (CONV1D_MIN_LENGTH, depthwise_conv3, depthwise_conv_channels_last,
                                        gelu_pointwise_conv, is_channels_last, pointwise_conv)
from hieramamba.models.norms import LayerNorm

TOL = dict(rtol=1e-10, atol=1e-10)  # float64: only summation order differs


def _grads(fn, *tensors):
    """Values and input gradients of fn(*tensors) against a fixed random cotangent."""
    ins = [t.detach().clone().requires_grad_(True) for t in tensors]
    out = fn(*ins)
    cot = torch.randn(out.shape, generator=torch.Generator().manual_seed(7), dtype=out.dtype)
    (out * cot).sum().backward()
    return out.detach(), [t.grad for t in ins]


def _check_same(fn_new, fn_old, *tensors, params=()):
    out_new, g_new = _grads(fn_new, *tensors)
    p_new = [p.grad.clone() for p in params]
    for p in params:
        p.grad = None
    out_old, g_old = _grads(fn_old, *tensors)
    torch.testing.assert_close(out_new, out_old, **TOL)
    for a, b in zip(g_new, g_old):
        torch.testing.assert_close(a, b, **TOL)
    for a, p in zip(p_new, params):
        torch.testing.assert_close(a, p.grad, **TOL)


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("length", [37, CONV1D_MIN_LENGTH + 3])  # the GEMM form and the long-sequence conv form
def test_pointwise_conv_equals_conv1d(batch, bias, channels_last, length):
    torch.manual_seed(0)
    conv = nn.Conv1d(6, 10, 1, bias=bias).double()
    x = torch.randn(batch, 6, length, dtype=torch.float64)
    if channels_last:
        x = x.transpose(1, 2).contiguous().transpose(1, 2)
    out = pointwise_conv(x, conv)
    assert is_channels_last(out) == channels_last  # the layout is kept
    _check_same(lambda t: pointwise_conv(t, conv), conv, x, params=list(conv.parameters()))


@pytest.mark.parametrize("length", [1, 2, 3, 30, 31])
def test_depthwise_conv3_equals_conv1d(length):
    torch.manual_seed(0)
    w = torch.randn(5, 1, 3, dtype=torch.float64, requires_grad=True)
    x = torch.randn(2, 5, length, dtype=torch.float64)
    _check_same(lambda t: depthwise_conv3(t, w), lambda t: F.conv1d(t, w, None, padding=1, groups=5), x, params=[w])
    xl = x.transpose(1, 2).contiguous().transpose(1, 2)  # a channels-last input gives the same numbers
    torch.testing.assert_close(depthwise_conv3(xl, w), F.conv1d(x, w, None, padding=1, groups=5), **TOL)


@pytest.mark.parametrize("padding,kernel", [(3, 7), (6, 7), (1, 3), (3, 4)])  # symmetric (Hydra), causal (Mamba2)
@pytest.mark.parametrize("length", [1, 9, 20])
def test_depthwise_conv_channels_last_equals_the_transposed_conv(padding, kernel, length):
    torch.manual_seed(0)
    conv = nn.Conv1d(12, 12, kernel, groups=12, padding=padding).double()
    # a column slice of a wider tensor, as Hydra's xBC is a slice of in_proj's output
    wide = torch.randn(2, length, 20, dtype=torch.float64)
    _check_same(lambda t: depthwise_conv_channels_last(t[..., 4:16], conv),
                lambda t: conv(t[..., 4:16].transpose(1, 2)).transpose(1, 2), wide, params=list(conv.parameters()))
    out = depthwise_conv_channels_last(wide[..., 4:16], conv)
    assert out.shape == (2, length + 2 * padding - kernel + 1, 12)
    if length > 1:  # a length-1 input is both layouts at once; torch may then return either
        assert out.is_contiguous()


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("channels_last", [True, False])
def test_gelu_pointwise_conv_equals_gelu_then_conv1d(bias, channels_last):
    torch.manual_seed(0)
    conv = nn.Conv1d(12, 5, 1, bias=bias).double()
    x = torch.randn(2, 12, 23, dtype=torch.float64)
    if channels_last:  # the AMP block's layout: the recomputing backward (keeps x, not GELU(x))
        x = x.transpose(1, 2).contiguous().transpose(1, 2)
    params = [conv.weight] + ([conv.bias] if bias else [])
    _check_same(lambda t: gelu_pointwise_conv(t, conv), lambda t: F.conv1d(F.gelu(t), conv.weight, conv.bias), x,
                params=params)
    with torch.no_grad():  # and without a graph
        torch.testing.assert_close(gelu_pointwise_conv(x, conv), F.conv1d(F.gelu(x), conv.weight, conv.bias), **TOL)


def test_gelu_pointwise_conv_keeps_its_input_not_the_activation():
    conv = nn.Conv1d(8, 4, 1)
    x = torch.randn(1, 30, 8).transpose(1, 2).requires_grad_(True)  # channels-last (B, C, T)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        gelu_pointwise_conv(x, conv)
    assert sorted(tuple(t.shape) for t in saved) == [(1, 30, 8), (4, 8)]  # x (as rows) and the weight


def test_gated_merge_equals_the_concatenated_gate():
    torch.manual_seed(0)
    gate = nn.Linear(16, 8).double()
    f, h = torch.randn(2, 11, 8, dtype=torch.float64), torch.randn(2, 11, 8, dtype=torch.float64)

    def old(f, h):
        w = torch.sigmoid(gate(torch.cat((f, h), dim=-1)))
        return w * h + (1.0 - w) * f

    _check_same(lambda a, b: gated_merge(gate, a, b), old, f, h, params=list(gate.parameters()))


def test_layer_norm_of_either_layout_is_the_same():
    torch.manual_seed(0)
    norm = LayerNorm(8).double()
    nn.init.normal_(norm.weight)
    nn.init.normal_(norm.bias)
    x = torch.randn(2, 8, 13, dtype=torch.float64) * 3 + 1
    xl = x.transpose(1, 2).contiguous().transpose(1, 2)
    _check_same(lambda t: norm(t.transpose(1, 2).contiguous().transpose(1, 2)), norm, x,
                params=list(norm.parameters()))
    assert is_channels_last(norm(xl)) and norm(x).is_contiguous()


@pytest.mark.parametrize("window_size", [0, 5])
def test_encoder_layer_on_a_channels_last_input_equals_channels_first_with_masks(window_size):
    """The AMP block hands its local mixer a transposed (channels-last) view; B = 2 with padding."""
    torch.manual_seed(0)
    layer = TransformerEncoder(16, stride=1, n_heads=2, window_size=window_size).double().eval()
    for m in layer.modules():  # non-trivial scales and biases
        if isinstance(m, (nn.Conv1d, LayerNorm)) and m.bias is not None:
            nn.init.normal_(m.bias)
    for p in (layer.drop_path_attn.scale, layer.drop_path_ffn.scale):
        nn.init.normal_(p)
    x = torch.randn(2, 16, 23, dtype=torch.float64)
    mask = torch.ones(2, 1, 23, dtype=torch.bool)
    mask[1, :, 15:] = False

    def cl(t):
        return layer(t.transpose(1, 2).contiguous().transpose(1, 2), mask)[0]

    _check_same(cl, lambda t: layer(t, mask)[0], x, params=[p for p in layer.parameters()])


def test_mha_keeps_the_layout():
    mha = MaskedMHA(16, n_heads=4, window_size=3).double()
    x = torch.randn(1, 16, 9, dtype=torch.float64)
    xl = x.transpose(1, 2).contiguous().transpose(1, 2)
    assert is_channels_last(mha(xl)) and mha(x).is_contiguous()
    torch.testing.assert_close(mha(xl), mha(x), **TOL)
