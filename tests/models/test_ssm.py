"""Hydra (bidirectional) and its unidirectional Mamba-2 variant: maths, padding, parameters."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import hieramamba.models.ssm as ssm_module
from hieramamba.models import ssd
from hieramamba.models.ssd import ssd_scan_reference
from hieramamba.models.ssm import Hydra


def small_hydra(dtype=torch.float64, seed=0, **kw):
    torch.manual_seed(seed)
    args = dict(d_model=16, d_state=4, d_conv=7, expand=2, headdim=8, chunk_size=8)
    args.update(kw)
    m = Hydra(**args).to(dtype)
    with torch.no_grad():  # move the init away from its special values so every term matters
        m.A_log.uniform_(-1.0, 1.0)
        m.D.uniform_(0.5, 1.5)
        m.norm.weight.uniform_(0.5, 1.5)
        m.conv1d.bias.uniform_(-0.5, 0.5)
    return m


def dense_hydra_mixer(p):
    """y = M x per head with the explicit quasiseparable matrix of hieramamba-reference.md §2.1."""
    x, A, Dt = p["x"], p["A"], p["Dt"]
    Bf, Cf, Bb, Cb, dtf, dtb = (p[k] for k in ("Bf", "Cf", "Bb", "Cb", "dtf", "dtb"))
    b, l, h, _ = x.shape
    g = Bf.shape[2]
    y = torch.zeros_like(x)
    for bi in range(b):
        for hi in range(h):
            gi = hi // (h // g)
            M = torch.zeros(l, l, dtype=x.dtype)
            for t in range(l):
                for s in range(l):
                    if s < t:
                        decay = torch.exp(A[hi] * dtf[bi, s + 1 : t, hi].sum())
                        M[t, s] = (Cf[bi, t - 1, gi] @ Bf[bi, s, gi]) * decay * dtf[bi, s, hi]
                    elif s > t:
                        decay = torch.exp(A[hi] * dtb[bi, t + 1 : s, hi].sum())
                        M[t, s] = (Cb[bi, t + 1, gi] @ Bb[bi, s, gi]) * decay * dtb[bi, s, hi]
                    else:
                        M[t, t] = Dt[bi, t, hi]
            y[bi, :, hi] = M @ x[bi, :, hi]
    return y.reshape(b, l, -1)


def recurrence_hydra_mixer(p):
    """The flip / shift recipe with the per-step recurrence for both scans."""
    x = p["x"]
    b, l, _, _ = x.shape
    yf = ssd_scan_reference(x, p["dtf"], p["A"], p["Bf"], p["Cf"])
    yb = ssd_scan_reference(*(t.flip(1) for t in (x, p["dtb"])), p["A"], p["Bb"].flip(1), p["Cb"].flip(1)).flip(1)
    shifted = torch.zeros_like(x)
    shifted[:, 1:] += yf[:, :-1]
    shifted[:, :-1] += yb[:, 1:]
    return (shifted + p["Dt"][..., None] * x).reshape(b, l, -1)


@pytest.mark.parametrize("l,ngroups", [(1, 1), (5, 1), (13, 2), (17, 1), (24, 2)])
def test_hydra_matches_dense_matrix_and_recurrence(l, ngroups):
    m = small_hydra(ngroups=ngroups, seed=l)
    u = torch.randn(2, l, 16, dtype=torch.float64)
    with torch.no_grad():
        p = m.mixer_inputs(u)
        y = m.mix(p)
        y_dense = dense_hydra_mixer(p)
        y_rec = recurrence_hydra_mixer(p)
        assert (y - y_dense).abs().max().item() <= 1e-10
        assert (y - y_rec).abs().max().item() <= 1e-10
        # and the whole module: forward == gated norm + out_proj of the dense mixer output
        z = p["z"]
        ref = m.out_proj(m.norm.weight * y_dense * torch.rsqrt(y_dense.pow(2).mean(-1, keepdim=True) + 1e-5) * F.silu(z))
        assert (m(u) - ref).abs().max().item() <= 1e-10


def test_hydra_uses_c_of_the_neighbours():
    # Row t of M uses C_{t-1} (forward) and C_{t+1} (backward): output t must not depend on the
    # direction-specific C at t itself. Perturb Cf and Cb at one step only through the dense check.
    m = small_hydra(seed=3)
    u = torch.randn(1, 9, 16, dtype=torch.float64)
    with torch.no_grad():
        p = m.mixer_inputs(u)
        y = m.mix(p)
        for key in ("Cf", "Cb"):
            q = dict(p)
            q[key] = p[key].clone()
            q[key][:, 4] += 10.0
            changed = (m.mix(q) - y).abs().amax(-1)[0] > 1e-12  # (L,)
            expected = torch.zeros(9, dtype=torch.bool)
            expected[5 if key == "Cf" else 3] = True
            assert torch.equal(changed, expected)


def pad_with_garbage(u, n_pad, front=False, seed=1):
    gen = torch.Generator().manual_seed(seed)
    garbage = 1e3 * torch.randn(u.shape[0], n_pad, u.shape[2], generator=gen, dtype=u.dtype)
    return torch.cat([garbage, u], 1) if front else torch.cat([u, garbage], 1)


@pytest.mark.parametrize("bidirectional", [True, False])
def test_padding_invariance(bidirectional):
    torch.manual_seed(0)
    m = Hydra(32, d_state=8, headdim=16, chunk_size=16, bidirectional=bidirectional).eval()
    with torch.no_grad():
        m.conv1d.bias.uniform_(-0.5, 0.5)  # a non-zero conv bias is what leaks padding otherwise
    lengths = [29, 21]
    total = 45
    us = [torch.randn(1, n, 32) for n in lengths]
    u = torch.cat([pad_with_garbage(v, total - v.shape[1], seed=i) for i, v in enumerate(us)], 0)  # (2, 45, 32)
    mask = torch.arange(total)[None] < torch.tensor(lengths)[:, None]  # (2, 45)
    with torch.no_grad():
        out = m(u, mask)
        out_nomask = m(u)
        for i, n in enumerate(lengths):
            alone = m(us[i])[0]
            assert (out[i, :n] - alone).abs().max().item() <= 1e-6
            if bidirectional:  # without masking the garbage reaches valid outputs (can fail)
                assert (out_nomask[i, :n] - alone).abs().max().item() > 1e-2
        # padding in front works the same way
        v = us[0]
        front = pad_with_garbage(v, 7, front=True)
        fmask = torch.arange(v.shape[1] + 7)[None] >= 7
        assert (m(front, fmask)[0, 7:] - m(v)[0]).abs().max().item() <= 1e-6
        assert (m(front)[0, 7:] - m(v)[0]).abs().max().item() > 1e-2  # unmasked: it leaks (can fail)


def test_gradients_reach_every_parameter():
    for bidirectional in (True, False):
        torch.manual_seed(0)
        m = Hydra(16, d_state=4, headdim=8, chunk_size=8, bidirectional=bidirectional, d_conv=7 if bidirectional else 4)
        u = torch.randn(2, 19, 16)
        mask = torch.ones(2, 19, dtype=torch.bool)
        mask[1, 15:] = False
        m(u, mask).square().sum().backward()
        for name, prm in m.named_parameters():
            assert prm.grad is not None and prm.grad.abs().sum() > 0, name


@pytest.mark.parametrize("bidirectional", [True, False])
def test_recomputed_conv_gives_the_same_values_and_gradients(bidirectional, monkeypatch):
    # a long training sequence keeps in_proj's xBC, not the conv output, for the backward
    torch.manual_seed(0)
    m = Hydra(16, d_state=4, headdim=8, chunk_size=8, bidirectional=bidirectional, d_conv=7 if bidirectional else 4).double()
    u = torch.randn(2, 19, 16, dtype=torch.float64)
    results = []
    for threshold in (10 ** 9, 0):  # never recomputed / always recomputed
        monkeypatch.setattr(ssm_module, "RECOMPUTE_MIN_ELEMENTS", threshold)
        m.zero_grad()
        ui = u.clone().requires_grad_(True)
        out = m(ui)
        out.square().sum().backward()
        results.append([out.detach(), ui.grad] + [prm.grad.clone() for prm in m.parameters()])
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def unidirectional_reference(m, u):
    """Mamba2 block, written out step by step: causal conv, per-step scan, D skip, gate-then-norm."""
    Bsz, L, _ = u.shape
    H, P, N, G = m.nheads, m.headdim, m.d_state, m.ngroups
    z, xBC, dt = torch.split(m.in_proj(u), [m.d_inner, m.d_inner + 2 * G * N, H], dim=-1)
    k = m.d_conv
    xpad = F.pad(xBC, (0, 0, k - 1, 0))  # (B, L + k - 1, C): zeros before the start
    w = m.conv1d.weight[:, 0]  # (C, k)
    conv = torch.stack([(xpad[:, t : t + k] * w.T).sum(1) for t in range(L)], 1) + m.conv1d.bias
    xBC = F.silu(conv)
    x, B, C = torch.split(xBC, [m.d_inner, G * N, G * N], dim=-1)
    x = x.reshape(Bsz, L, H, P)
    dt = F.softplus(dt + m.dt_bias)
    A = -torch.exp(m.A_log)
    y = ssd_scan_reference(x, dt, A, B.reshape(Bsz, L, G, N), C.reshape(Bsz, L, G, N))
    y = (y + m.D[:, None] * x).reshape(Bsz, L, -1)
    h = y * F.silu(z)
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + 1e-5) * m.norm.weight
    return m.out_proj(h)


@pytest.mark.parametrize("l,ngroups", [(1, 1), (11, 1), (20, 2)])
def test_unidirectional_matches_reference_and_is_causal(l, ngroups):
    m = small_hydra(bidirectional=False, d_conv=4, ngroups=ngroups, seed=l)
    u = torch.randn(2, l, 16, dtype=torch.float64)
    with torch.no_grad():
        out = m(u)
        assert (out - unidirectional_reference(m, u)).abs().max().item() <= 1e-10
        t0 = l // 2
        u2 = u.clone()
        u2[:, t0] += 5.0
        diff = (m(u2) - out).abs().amax(-1)
        assert torch.all(diff[:, :t0] == 0.0)  # nothing before t0 moves
        assert diff[:, t0].min().item() > 0.0


@pytest.mark.parametrize(
    "d_model,in_proj_out,conv_channels",
    [(256, 1296, 768), (384, 1816, 1024), (512, 2336, 1280), (768, 3376, 1792)],
)
def test_parameter_names_and_shapes_match_goombalab(d_model, in_proj_out, conv_channels):
    m = Hydra(d_model)
    d_inner, H = 2 * d_model, 2 * d_model // 64
    expected = {
        "in_proj.weight": (in_proj_out, d_model),
        "conv1d.weight": (conv_channels, 1, 7),
        "conv1d.bias": (conv_channels,),
        "dt_bias": (H,),
        "A_log": (H,),
        "D": (H,),
        "fc_D.weight": (H, d_inner),
        "norm.weight": (d_inner,),
        "out_proj.weight": (d_model, d_inner),
    }
    assert {k: tuple(v.shape) for k, v in m.state_dict().items()} == expected
    # goombalab's init
    assert torch.equal(m.A_log, torch.zeros(H)) and torch.equal(m.D, torch.ones(H))
    assert torch.equal(m.norm.weight, torch.ones(d_inner))
    dt = F.softplus(m.dt_bias)
    assert dt.min() >= 1e-3 - 1e-7 and dt.max() <= 0.1 + 1e-7


def test_unidirectional_parameter_names_follow_mamba2():
    m = Hydra(384, bidirectional=False, d_conv=4, headdim=48)
    shapes = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    H = 768 // 48
    assert shapes == {
        "in_proj.weight": (2 * 768 + 2 * 64 + H, 384),
        "conv1d.weight": (768 + 2 * 64, 1, 4),
        "conv1d.bias": (768 + 2 * 64,),
        "dt_bias": (H,),
        "A_log": (H,),
        "D": (H,),
        "norm.weight": (768,),
        "out_proj.weight": (384, 768),
    }
    A = torch.exp(m.A_log)
    assert A.min() >= 1.0 and A.max() <= 16.0


def test_reference_precision_same_in_float32_differs_under_bf16(monkeypatch):
    torch.manual_seed(0)
    default = Hydra(32, d_state=8, headdim=16, chunk_size=16)
    reference = Hydra(32, d_state=8, headdim=16, chunk_size=16, reference_precision=True)
    reference.load_state_dict(default.state_dict())
    u = torch.randn(2, 40, 32)
    with torch.no_grad():
        assert torch.equal(default(u), reference(u))
        seen = []
        real_scan = ssm_module.ssd_scan
        monkeypatch.setattr(ssm_module, "ssd_scan", lambda x, *a, **k: seen.append(x.dtype) or real_scan(x, *a, **k))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out_default = default(u)
            out_reference = reference(u)
    # default feeds the scan float32 and keeps its output in float32; the reference path hands it
    # the bf16 activations and gets bf16 back (the scan itself accumulates in float32 either way)
    assert seen == [torch.float32] * 2 + [torch.bfloat16] * 2  # one forward and one reverse scan each
    assert not torch.equal(out_default, out_reference)
    exact = default(u).detach()
    assert (out_default.float() - exact).abs().max() <= 0.05 * exact.abs().max()


def test_backend_name_and_summary():
    m = Hydra(16, d_state=4, headdim=8)
    assert m.backend_name == "torch"  # auto on CPU
    assert "backend=auto -> torch" in repr(m)
    m(torch.randn(1, 5, 16))
    assert m.backend_name == "torch"
    forced = Hydra(16, d_state=4, headdim=8, backend="mamba_ssm")
    with pytest.raises(RuntimeError, match="CUDA"):
        forced(torch.randn(1, 5, 16))
    assert "unavailable" in repr(forced)


def test_bad_arguments():
    with pytest.raises(ValueError, match="odd"):
        Hydra(16, d_conv=4, headdim=8)
    with pytest.raises(ValueError, match="headdim"):
        Hydra(16, headdim=12)
    with pytest.raises(ValueError, match="backend"):
        Hydra(16, backend="triton")
    m = Hydra(16, d_state=4, headdim=8)
    with pytest.raises(ValueError, match="mask"):
        m(torch.randn(2, 5, 16), torch.ones(2, 4, dtype=torch.bool))


@pytest.mark.cuda
def test_hydra_mamba_ssm_parity_cuda():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    if not ssd.mamba_ssm_available():
        pytest.skip("needs mamba_ssm (pip install 'hieramamba[cuda]'): mamba_chunk_scan_combined did not import")
    torch.manual_seed(0)
    ref = Hydra(384, chunk_size=64, backend="torch").cuda()
    fast = Hydra(384, chunk_size=64, backend="mamba_ssm").cuda()
    fast.load_state_dict(ref.state_dict())
    u = torch.randn(2, 1000, 384, device="cuda")
    mask = torch.ones(2, 1000, dtype=torch.bool, device="cuda")
    mask[1, 700:] = False
    outs = []
    for m in (ref, fast):
        out = m(u, mask)
        out.square().sum().backward()
        outs.append(out.detach())
    assert ref.backend_name == "torch" and fast.backend_name == "mamba_ssm"
    scale = outs[0].abs().max()
    assert (outs[0] - outs[1]).abs().max() <= 1e-3 * scale
    for (name, p_ref), p_fast in zip(ref.named_parameters(), fast.parameters()):
        assert (p_ref.grad - p_fast.grad).abs().max() <= 1e-2 * p_ref.grad.abs().max(), name
