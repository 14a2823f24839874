"""The fast-mask dropout (hieramamba.models.dropout): nn.Dropout's semantics, reproducible draws."""

from __future__ import annotations

import pytest
import torch

from hieramamba.models.dropout import Dropout, keep_mask


def test_evaluation_and_p_zero_are_identity():
    x = torch.randn(3, 5, 7)
    assert Dropout(0.1).eval()(x) is x
    assert Dropout(0.0).train()(x) is x


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5])
def test_drop_rate_scale_and_expectation(p):
    torch.manual_seed(0)
    x = torch.rand(4, 64, 4096) + 0.5  # no zeros of its own
    y = Dropout(p).train()(x)
    dropped = y == 0
    n = x.numel()
    rate = dropped.double().mean().item()
    assert abs(rate - p) < 4 * (p * (1 - p) / n) ** 0.5 + 2 ** -16, rate
    _, keep_prob = keep_mask(torch.Size([1]), p)
    assert abs(keep_prob - (1 - p)) <= 2 ** -17
    torch.testing.assert_close(y[~dropped], x[~dropped] / keep_prob, rtol=1e-6, atol=0)
    # the expectation is the input: mean over many draws of a constant input
    assert abs(y.double().mean().item() / x.double().mean().item() - 1) < 5e-3


def test_gradient_is_the_mask():
    torch.manual_seed(1)
    x = torch.randn(2, 8, 300, requires_grad=True)
    y = Dropout(0.2).train()(x)
    (g,) = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close(g, torch.where(y != 0, y / x, torch.zeros_like(y)).detach(), rtol=1e-5, atol=1e-6)


def test_mask_bits_are_uniform_and_reproducible():
    torch.manual_seed(2)
    a, _ = keep_mask(torch.Size([10, 1001]), 0.5)  # odd size: the last 64-bit word is cut
    torch.manual_seed(2)
    b, _ = keep_mask(torch.Size([10, 1001]), 0.5)
    assert torch.equal(a, b)
    torch.manual_seed(3)
    c, _ = keep_mask(torch.Size([10, 1001]), 0.5)
    assert not torch.equal(a, c)
    # the 16 random bits are uniform: every threshold k / 16 drops its share (within 4 standard errors)
    n = 200_000
    for k in range(1, 16):
        rate = (~keep_mask(torch.Size([n]), k / 16)[0]).double().mean().item()
        assert abs(rate - k / 16) < 4 * (k / 16 * (1 - k / 16) / n) ** 0.5, (k, rate)


def test_bad_probability():
    with pytest.raises(ValueError, match="dropout probability"):
        Dropout(1.0)
