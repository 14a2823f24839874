"""Norms, LayerScale, Scale and drop_path."""

import pytest
import torch
import torch.nn.functional as F

from hieramamba.models.norms import LayerNorm, LayerScale, RMSNorm, Scale, drop_path


def test_rmsnorm_matches_formula_float64():
    torch.manual_seed(0)
    norm = RMSNorm(8).double()
    with torch.no_grad():
        norm.weight.copy_(torch.randn(8, dtype=torch.float64))
    x = torch.randn(3, 5, 8, dtype=torch.float64)
    expected = x / torch.sqrt((x ** 2).mean(-1, keepdim=True) + 1e-6) * norm.weight
    out = norm(x)
    assert out.dtype == torch.float64
    assert torch.allclose(out, expected, atol=1e-12, rtol=0)


def test_rmsnorm_reference_precision_reproduces_float32_round_trip():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 16, dtype=torch.float64) * 3
    ours, ref = RMSNorm(16).double(), RMSNorm(16, reference_precision=True).double()
    exact = ours(x)
    rounded = ref(x)
    # the authors normalise in float32 even for float64 inputs: visible at float64 precision
    assert (exact - rounded).abs().max() > 1e-10
    assert torch.allclose(exact, rounded, atol=1e-5)
    # half-precision input: the authors multiply by the float32 weight after casting back
    xb = torch.randn(2, 3, 16).bfloat16()
    assert RMSNorm(16, reference_precision=True)(xb).dtype == torch.float32
    assert RMSNorm(16)(xb).dtype == torch.bfloat16


def test_channels_first_layernorm_equals_torch_layernorm():
    torch.manual_seed(0)
    ln = LayerNorm(6).double()
    with torch.no_grad():
        ln.weight.copy_(torch.randn(6, 1))
        ln.bias.copy_(torch.randn(6, 1))
    x = torch.randn(2, 6, 7, dtype=torch.float64)
    ref = F.layer_norm(x.transpose(1, 2), (6,), ln.weight[:, 0], ln.bias[:, 0], eps=1e-5).transpose(1, 2)
    assert torch.allclose(ln(x), ref, atol=1e-12)
    assert LayerNorm(6, affine=False).weight is None


def test_layerscale_shapes_init_and_drop_path():
    first, last = LayerScale(4, 0.5), LayerScale(4, 0.5, channel_dim=-1)
    assert first.scale.shape == (1, 4, 1) and last.scale.shape == (1, 1, 4)
    assert torch.all(first.scale == 1e-4)
    x = torch.ones(64, 4, 3)
    first.eval()
    assert torch.allclose(first(x), x * 1e-4)
    torch.manual_seed(0)
    y = drop_path(x, 0.5, training=True)
    per_row = y.flatten(1)
    dropped = (per_row == 0).all(1)
    kept = (per_row == 2).all(1)
    assert bool((dropped | kept).all()) and 0 < int(dropped.sum()) < 64
    with pytest.raises(ValueError):
        LayerScale(4, channel_dim=0)


def test_scale():
    s = Scale(2.0)
    assert torch.allclose(s(torch.ones(3)), torch.full((3,), 2.0))
    assert s.scale.ndim == 0
