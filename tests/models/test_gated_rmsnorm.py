"""``GatedRMSNorm``'s hand-written backward equals autograd through the plain formula (values and
gradients, both gate orders, float64 and float32, odd sizes), and passes gradcheck."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hieramamba.models.ssm import GatedRMSNorm, _GatedRMSNormFn


def plain(x, z, w, eps, norm_before_gate):
    """The formula as autograd would differentiate it (the implementation before the custom backward)."""
    acc = torch.promote_types(x.dtype, torch.float32)
    h, gate, w = x.to(acc), F.silu(z.to(acc)), w.to(acc)
    if not norm_before_gate:
        h = h * gate
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps) * w
    if norm_before_gate:
        h = h * gate
    return h.to(x.dtype)


@pytest.mark.parametrize("norm_before_gate", [True, False])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_values_and_gradients_equal_the_plain_formula(norm_before_gate, dtype, tol):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 37, 24, generator=gen, dtype=dtype) * 3
    z = torch.randn(2, 37, 24, generator=gen, dtype=dtype) * 2
    w = torch.randn(24, generator=gen, dtype=dtype)
    g = torch.randn(2, 37, 24, generator=gen, dtype=dtype)
    ins = [t.clone().requires_grad_(True) for t in (x, z, w)]
    ref = [t.clone().requires_grad_(True) for t in (x, z, w)]
    out = _GatedRMSNormFn.apply(*ins, 1e-5, norm_before_gate)
    expected = plain(*ref, 1e-5, norm_before_gate)
    assert torch.equal(out, expected)  # same operations in the same order
    (out * g).sum().backward()
    (expected * g).sum().backward()
    for a, b in zip(ins, ref):
        torch.testing.assert_close(a.grad, b.grad, rtol=tol, atol=tol)


@pytest.mark.parametrize("norm_before_gate", [True, False])
def test_gradcheck(norm_before_gate):
    gen = torch.Generator().manual_seed(1)
    x, z = (torch.randn(3, 5, 7, generator=gen, dtype=torch.float64, requires_grad=True) for _ in range(2))
    w = torch.randn(7, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b, c: _GatedRMSNormFn.apply(a, b, c, 1e-5, norm_before_gate), (x, z, w))


def test_module_holds_less_for_backward():
    """The module saves x, z, weight and the per-row scale only (the point of the custom backward)."""
    norm = GatedRMSNorm(64)
    x, z = torch.randn(1, 100, 64, requires_grad=True), torch.randn(1, 100, 64, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
        norm(x, z)
    assert sorted(saved) == [64, 100, 6400, 6400]
