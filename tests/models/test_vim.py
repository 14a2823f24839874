"""Vim bidirectional Mamba-1 mixer and its residual stack: maths, symmetry, padding, counts."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hieramamba.models.selective_scan import selective_scan_reference
from hieramamba.models.vim import BiMambaMixer, VimStack, drop_path_rates


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One intra-op thread: the 2 shared CPU cores are oversubscribed, and OpenMP barriers then
    cost more than the small ops they split."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _randomise(module: torch.nn.Module, seed: int = 0) -> None:
    """Give every parameter a random value (so no term hides behind a zero or one init)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=g, dtype=p.dtype))
            if "A_" in name:
                p.copy_(torch.rand(p.shape, generator=g, dtype=p.dtype))


def _naive_direction(mixer, x, z, backward):
    """One direction as the per-step recurrence with an explicit causal conv loop. x, z (B, E, L)."""
    conv, x_proj, dt_proj, a_log, d_skip = mixer.direction_params(backward)
    b, e, l = x.shape
    k = conv.kernel_size[0]
    w = conv.weight[:, 0, :]  # (E, K)
    xc = torch.zeros_like(x)
    for t in range(l):
        acc = conv.bias.clone().expand(b, e)
        for j in range(k):
            s = t - k + 1 + j
            if s >= 0:
                acc = acc + w[:, j] * x[:, :, s]
        xc[:, :, t] = F.silu(acc)
    x_dbl = xc.transpose(1, 2) @ x_proj.weight.t()  # (B, L, R + 2N)
    r, n = mixer.dt_rank, mixer.d_state
    dt, bs, cs = x_dbl[..., :r], x_dbl[..., r:r + n], x_dbl[..., r + n:]
    delta = F.softplus(dt @ dt_proj.weight.t() + dt_proj.bias).transpose(1, 2)  # (B, E, L)
    y = selective_scan_reference(xc, delta, -torch.exp(a_log), bs.transpose(1, 2), cs.transpose(1, 2),
                                 D=d_skip)
    return y * F.silu(z)


def _naive_mixer(mixer, u):
    xz = (u @ mixer.in_proj.weight.t()).transpose(1, 2)
    x, z = xz.chunk(2, dim=1)
    y_f = _naive_direction(mixer, x, z, backward=False)
    y_b = _naive_direction(mixer, x.flip(-1), z.flip(-1), backward=True).flip(-1)
    y = y_f + y_b if mixer.combine == "sum" else 0.5 * (y_f + y_b)
    return y.transpose(1, 2) @ mixer.out_proj.weight.t()


@pytest.mark.parametrize("combine", ["sum", "mean"])
def test_mixer_equals_naive_two_direction_composition_float64(combine):
    torch.manual_seed(0)
    mixer = BiMambaMixer(8, d_state=4, d_conv=4, expand=2, combine=combine, chunk_size=4).double()
    _randomise(mixer)
    u = torch.randn(2, 11, 8, dtype=torch.float64)
    out = mixer(u)
    ref = _naive_mixer(mixer, u)
    assert (out - ref).abs().max().item() <= 1e-10


def test_mixer_backward_direction_really_runs():
    # Changing only backward parameters must change the output (the forks drop them on CPU).
    torch.manual_seed(1)
    mixer = BiMambaMixer(8, d_state=4).double()
    _randomise(mixer)
    u = torch.randn(1, 9, 8, dtype=torch.float64)
    before = mixer(u)
    with torch.no_grad():
        mixer.x_proj_b.weight.mul_(2.0)
    assert (mixer(u) - before).abs().max().item() > 1e-3
    # and the first step's output depends on the last input only through the backward branch
    u2 = u.clone()
    u2[:, -1] += 1.0
    assert (mixer(u2)[:, 0] - mixer(u)[:, 0]).abs().max().item() > 1e-6


def test_reversal_symmetry():
    torch.manual_seed(2)
    mixer = BiMambaMixer(8, d_state=4, chunk_size=4).double()
    _randomise(mixer)
    swapped = BiMambaMixer(8, d_state=4, chunk_size=4).double()
    sd = mixer.state_dict()
    pairs = [("conv1d", "conv1d_b"), ("x_proj", "x_proj_b"), ("dt_proj", "dt_proj_b"), ("A_log", "A_b_log"),
             ("D", "D_b")]
    new = dict(sd)
    for f, b in pairs:
        for key in list(sd):
            if key == f or key.startswith(f + "."):
                other = b + key[len(f):]
                new[key], new[other] = sd[other], sd[key]
    swapped.load_state_dict(new)
    u = torch.randn(2, 10, 8, dtype=torch.float64)
    assert (swapped(u.flip(1)).flip(1) - mixer(u)).abs().max().item() <= 1e-12


def _padding_case(module, d_model, valid=7, pad=5, seed=3):
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(1, valid, d_model, generator=g)
    junk = 1e3 * torch.randn(1, pad, d_model, generator=g)  # large random values in the padding
    padded = torch.cat([u, junk], dim=1)
    mask = torch.zeros(1, valid + pad, dtype=torch.bool)
    mask[:, :valid] = True
    clean = module(u, torch.ones(1, valid, dtype=torch.bool))
    masked = module(padded, mask)[:, :valid]
    unmasked = module(padded, None)[:, :valid]
    return clean, masked, unmasked


def test_mixer_padding_never_changes_valid_outputs():
    torch.manual_seed(4)
    mixer = BiMambaMixer(16, d_state=8)
    clean, masked, unmasked = _padding_case(mixer, 16)
    assert (masked - clean).abs().max().item() <= 1e-6
    # Without the recipe, the backward scan carries the padding into valid steps.
    assert (unmasked - clean).abs().max().item() > 1e-3


def test_mixer_zero_padding_also_leaks_without_step_two():
    # Even exact zeros in the padding leak through the conv bias unless x~ is zeroed (step 2).
    torch.manual_seed(5)
    mixer = BiMambaMixer(16, d_state=8)
    u = torch.randn(2, 6, 16)
    padded = torch.cat([u, torch.zeros(2, 4, 16)], dim=1)
    clean = mixer(u)
    assert (mixer(padded)[:, :6] - clean).abs().max().item() > 1e-6
    mask = torch.arange(10)[None].expand(2, 10) < 6
    assert (mixer(padded, mask)[:, :6] - clean).abs().max().item() <= 1e-6


def test_stack_padding_and_gradients():
    torch.manual_seed(6)
    stack = VimStack(16, depth=3, d_state=8, drop_path_rate=0.0)
    clean, masked, unmasked = _padding_case(stack, 16)
    assert (masked - clean).abs().max().item() <= 1e-6
    assert (unmasked - clean).abs().max().item() > 1e-3
    x = torch.randn(2, 9, 16)
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[1, 6:] = False
    out = stack(x, mask)
    assert out.shape == (2, 9, 16) and (out[1, 6:] == 0).all()
    out.pow(2).sum().backward()
    missing = [n for n, p in stack.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, missing


def test_stack_residual_stream_is_float32_under_bfloat16():
    stack = VimStack(16, depth=2, d_state=4)
    x = torch.randn(1, 5, 16, dtype=torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = stack(x)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()


def test_drop_path_schedule():
    assert drop_path_rates(1, 0.1) == [0.1]  # depth-1 units: the final add uses the full rate
    assert drop_path_rates(3, 0.2) == pytest.approx([0.0, 0.1, 0.2])


@pytest.mark.parametrize("d_model,expected", [(192, 281_856), (384, 1_042_944), (576, 2_283_264)])
def test_parameter_count_matches_reference_formula(d_model, expected):
    mixer = BiMambaMixer(d_model)
    assert sum(p.numel() for p in mixer.parameters()) == expected


def test_mixer_init_and_backend():
    mixer = BiMambaMixer(32)
    assert mixer.backend_name == "torch"
    assert torch.allclose(-torch.exp(mixer.A_log[0]), -torch.arange(1, 17).float())
    dt = F.softplus(mixer.dt_proj.bias)
    assert dt.min() >= 1e-4 - 1e-7 and dt.max() <= 0.1 + 1e-6
    with pytest.raises(ValueError, match="combine"):
        BiMambaMixer(8, combine="max")
    with pytest.raises(ValueError, match="backend"):
        BiMambaMixer(8, backend="triton")
    with pytest.raises(RuntimeError, match="CUDA"):
        _ = BiMambaMixer(8, backend="mamba_ssm").backend_name
