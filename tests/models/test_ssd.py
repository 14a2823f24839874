"""The chunked SSD scan against the per-step recurrence and the explicit causal matrix (float64)."""

from __future__ import annotations

import pytest
import torch

from hieramamba.models import ssd
from hieramamba.models.ssd import (
    resolve_backend,
    ssd_flops,
    ssd_scan,
    ssd_scan_chunked,
    ssd_scan_reference,
)


def make_inputs(b=2, l=37, h=4, p=3, g=1, n=5, dtype=torch.float64, seed=0, dt_scale=0.5, a_scale=2.0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(b, l, h, p, generator=gen, dtype=dtype)
    dt = torch.rand(b, l, h, generator=gen, dtype=dtype) * dt_scale + 0.01  # positive
    A = -(torch.rand(h, generator=gen, dtype=dtype) * a_scale + 0.1)  # negative
    B = torch.randn(b, l, g, n, generator=gen, dtype=dtype)
    C = torch.randn(b, l, g, n, generator=gen, dtype=dtype)
    return x, dt, A, B, C


def causal_matrix_scan(x, dt, A, B, C):
    """y = M x per head with M[t, s] = (C_t . B_s) exp(A sum_{s<r<=t} dt_r) dt_s for s <= t (dense)."""
    b, l, h, p = x.shape
    g = B.shape[2]
    y = torch.zeros_like(x)
    cum = torch.cumsum(dt * A, dim=1)  # (b, l, h): A * sum_{r<=t} dt_r
    lower = torch.ones(l, l, dtype=torch.bool).tril()
    for head in range(h):
        grp = head // (h // g)
        CB = torch.einsum("btn,bsn->bts", C[:, :, grp], B[:, :, grp])  # (b, l, l)
        logdecay = cum[:, :, head, None] - cum[:, None, :, head]  # (b, t, s)
        decay = torch.where(lower, torch.exp(torch.where(lower, logdecay, 0.0)), 0.0)
        M = CB * decay * dt[:, None, :, head]  # (b, t, s)
        y[:, :, head] = torch.einsum("bts,bsp->btp", M, x[:, :, head])
    return y


@pytest.mark.parametrize("l", [1, 2, 7, 33, 64, 65, 129])
@pytest.mark.parametrize("chunk", [8, 64])
@pytest.mark.parametrize("g", [1, 2])
def test_chunked_matches_recurrence_and_matrix(l, chunk, g):
    x, dt, A, B, C = make_inputs(l=l, g=g, seed=l + 100 * g)
    y = ssd_scan_chunked(x, dt, A, B, C, chunk_size=chunk)
    assert y.dtype == torch.float64 and y.shape == x.shape
    y_rec = ssd_scan_reference(x, dt, A, B, C)
    y_mat = causal_matrix_scan(x, dt, A, B, C)
    assert (y - y_rec).abs().max().item() <= 1e-10
    assert (y - y_mat).abs().max().item() <= 1e-10
    assert (y_rec - y_mat).abs().max().item() <= 1e-10


def test_many_chunks():
    # 601 steps in chunks of 2 -> 301 chunks of state passing.
    x, dt, A, B, C = make_inputs(b=1, l=601, h=2, p=2, g=1, n=3, dt_scale=0.05, a_scale=0.5)
    y = ssd_scan_chunked(x, dt, A, B, C, chunk_size=2)
    assert (y - ssd_scan_reference(x, dt, A, B, C)).abs().max().item() <= 1e-10


def test_strong_decay_stays_finite_with_gradients():
    # exp(A dt) ~ exp(-200) per step: the segsum mask must be applied before the exp.
    x, dt, A, B, C = make_inputs(l=40, dt_scale=20.0, a_scale=10.0)
    x.requires_grad_(True)
    dt.requires_grad_(True)
    y = ssd_scan_chunked(x, dt, A, B, C, chunk_size=16)
    assert torch.isfinite(y).all()
    assert (y - ssd_scan_reference(x, dt, A, B, C)).abs().max().item() <= 1e-10
    y.square().sum().backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(dt.grad).all()


@pytest.mark.parametrize("h,g,chunk", [(2, 1, 2), (4, 2, 4)])
def test_gradcheck_small(h, g, chunk):
    # 13 steps in chunks of 2 or 4: several chunks, so both hand-written backwards (the decayed
    # (Q x Q) scores, the state passing) are exercised, with heads sharing a group's B and C
    inputs = [t.requires_grad_(True) for t in make_inputs(b=1, l=13, h=h, p=2, g=g, n=2)]
    assert torch.autograd.gradcheck(lambda *a: ssd_scan_chunked(*a, chunk_size=chunk), inputs)


def test_padding_tail_leaves_earlier_outputs_unchanged():
    x, dt, A, B, C = make_inputs(l=20)
    y = ssd_scan_chunked(x, dt, A, B, C, chunk_size=8)
    x2, dt2, _, B2, C2 = make_inputs(l=29, seed=5)
    x2[:, :20], dt2[:, :20], B2[:, :20], C2[:, :20] = x, dt, B, C
    y2 = ssd_scan_chunked(x2, dt2, A, B2, C2, chunk_size=8)
    assert (y2[:, :20] - y).abs().max().item() <= 1e-12


def test_float32_accumulation_under_bf16_autocast():
    x, dt, A, B, C = make_inputs(l=70, h=4, p=8, n=8, dtype=torch.float32)
    xb, Bb, Cb = x.bfloat16(), B.bfloat16(), C.bfloat16()
    expected = ssd_scan_chunked(xb.float(), dt, A, Bb.float(), Cb.float(), chunk_size=16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y_bf = ssd_scan_chunked(xb, dt, A, Bb, Cb, chunk_size=16)
        y_f32 = ssd_scan_chunked(x, dt, A, B, C, chunk_size=16)
    # float32 maths inside, one rounding at the end: bitwise what the float32 scan gives.
    assert y_bf.dtype == torch.bfloat16 and torch.equal(y_bf, expected.bfloat16())
    assert y_f32.dtype == torch.float32
    assert torch.equal(y_f32, ssd_scan_chunked(x, dt, A, B, C, chunk_size=16))


def test_dtypes_and_shapes_checked():
    x, dt, A, B, C = make_inputs()
    assert ssd_scan(x.float(), dt.float(), A.float(), B.float(), C.float()).dtype == torch.float32
    with pytest.raises(ValueError, match="multiple"):
        ssd_scan(x, dt, A, *make_inputs(g=3)[3:])
    with pytest.raises(ValueError, match="dt"):
        ssd_scan(x, dt[:, :-1], A, B, C)
    with pytest.raises(ValueError, match="unknown"):
        ssd_scan(x, dt, A, B, C, backend="cuda")


def test_backend_resolution_on_cpu():
    assert resolve_backend("auto", "cpu") == "torch"
    assert resolve_backend("torch", "cpu") == "torch"
    with pytest.raises(RuntimeError, match="CUDA"):
        resolve_backend("mamba_ssm", "cpu")


def test_flop_count_matches_the_formula():
    # one chunk, no state passing: C B^T + (Q x Q) product + states + inter-chunk output
    b, l, h, p, g, n = 1, 64, 2, 8, 1, 4
    expected = 2 * l * 64 * n + 2 * l * 64 * h * p + 4 * l * h * n * p + 2 * h * n * p
    assert ssd_flops(b, l, h, p, g, n, 64) == expected


@pytest.mark.cuda
def test_mamba_ssm_parity_cuda():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    if not ssd.mamba_ssm_available():
        pytest.skip("needs mamba_ssm (pip install 'hieramamba[cuda]'): mamba_chunk_scan_combined did not import")
    torch.manual_seed(0)
    inputs = [t.float().cuda() for t in make_inputs(b=2, l=1000, h=8, p=64, g=2, n=64, dt_scale=0.1)]
    outs, grads = [], []
    for backend in ("torch", "mamba_ssm"):
        leaves = [t.clone().requires_grad_(True) for t in inputs]
        y = ssd_scan(*leaves, chunk_size=64, backend=backend)
        y.backward(torch.ones_like(y))
        outs.append(y.detach())
        grads.append([t.grad for t in leaves])
    scale = outs[0].abs().max()
    assert (outs[0] - outs[1]).abs().max() <= 1e-3 * scale
    for g_torch, g_mamba in zip(*grads):
        assert (g_torch - g_mamba).abs().max() <= 1e-3 * g_torch.abs().max()
