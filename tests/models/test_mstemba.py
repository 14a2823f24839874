"""MS-Temba backbone (current release): dilated SSM, fuser, pyramid, padding, gradients, counts."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from hieramamba.models import vim
from hieramamba.models.backbones import build_backbone
from hieramamba.models.mstemba import DilatedSSM, MSTembaBackbone


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One intra-op thread: the 2 shared CPU cores are oversubscribed."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# (C_in, D, input stride, levels) of the released dataset settings (reference §1.9).
DATASETS = {"ego4d_nlq": (256, 384, 1, 8), "tacos": (4096, 256, 1, 8), "mad": (512, 512, 2, 9),
            "madv2": (768, 768, 2, 9)}


def _count(m):
    return sum(p.numel() for p in m.parameters())


def _unit_params(d):
    e, n, r = 2 * d, 16, math.ceil(d / 16)
    return 3 * d * e + 2 * (5 * e + e * (r + 2 * n) + (r * e + e) + e * n + e) + 2 * d  # mixer + 2 RMSNorms


def _tiny(**kw):
    args = dict(in_dim=6, embd_dim=8, max_seq_len=64, num_levels=4, d_state=4, drop_path_rate=0.0)
    args.update(kw)
    return MSTembaBackbone(**args)


def _randomise(module, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=g))
            if "A_" in name:
                p.copy_(torch.rand(p.shape, generator=g))
    return module


@pytest.mark.parametrize("dataset", sorted(DATASETS))
def test_builds_for_every_dataset_config(dataset):
    c_in, d, stride, levels = DATASETS[dataset]
    torch.manual_seed(0)
    model = build_backbone("mstemba", in_dim=c_in, embd_dim=d, max_seq_len=256, num_levels=levels,
                           input_stride=stride).eval()
    assert isinstance(model, MSTembaBackbone)
    assert model.dilations == [1, 2, 3]
    assert model.level_strides == [stride * 2 ** l for l in range(levels)]
    # 1 + 2 + 3 dilation units, 1 fuser unit, one unit per coarse level
    units = 6 + 1 + (levels - 1)
    local = 3 * (d * d + d + 2 * d)  # LinearProjection: Linear + LayerNorm
    fuser = 3 * (d * d + d) + 2 * d
    assert _count(model) - _count(model.stem) == units * _unit_params(d) + local + fuser
    t = 19
    with torch.no_grad():
        out = model(torch.randn(1, c_in, t), torch.ones(1, 1, t, dtype=torch.bool))
    for l, (f, m) in enumerate(zip(out.fpn, out.fpn_masks)):
        assert f.shape == (1, d, math.ceil(t / model.level_strides[l]))
        assert m.shape == (1, 1, f.shape[-1])
    print(f"mstemba {dataset}: {_count(model):,} parameters")


@pytest.mark.parametrize("dilation,length", [(1, 7), (2, 9), (2, 10), (3, 7), (3, 12)])
def test_dilated_ssm_equals_explicit_dilation_float64(dilation, length):
    torch.manual_seed(dilation * 100 + length)
    dts = _randomise(DilatedSSM(8, dilation, d_state=4, drop_path_rate=0.0)).double().eval()
    x = torch.randn(2, length, 8, dtype=torch.float64)
    mask = torch.ones(2, length, dtype=torch.bool)
    out = dts(x, mask)
    expected = torch.zeros_like(out)
    for g in range(dilation):
        idx = list(range(g, length, dilation))  # frames g, g + d, g + 2d, ...
        sub = x[:, idx]
        y = dts.units[g](sub, torch.ones(2, len(idx), dtype=torch.bool))
        for j, t in enumerate(idx):
            expected[:, t] = y[:, j]
    assert (out - expected).abs().max().item() <= 1e-12


def test_dilation_groups_exchange_no_information():
    torch.manual_seed(1)
    dts = _randomise(DilatedSSM(8, 3, d_state=4)).double().eval()
    x = torch.randn(1, 11, 8, dtype=torch.float64)
    mask = torch.ones(1, 11, dtype=torch.bool)
    x2 = x.clone()
    x2[:, 4] += 1.0  # group 1 (frames 1, 4, 7, 10)
    delta = (dts(x2, mask) - dts(x, mask)).abs().amax(-1)[0]
    changed = {t for t in range(11) if delta[t] > 1e-9}
    assert changed == {1, 4, 7, 10}


def test_matches_block_fuser_pyramid_maths_float64():
    torch.manual_seed(2)
    model = _randomise(_tiny()).double().eval()
    x = torch.randn(2, 6, 14, dtype=torch.float64)
    mask = torch.ones(2, 1, 14, dtype=torch.bool)
    valid = mask[:, 0]
    out = model(x, mask)
    h = model.stem(x, mask)[0].transpose(1, 2)
    scales = []
    for block in model.blocks:
        lp = block.local
        h = F.gelu(F.layer_norm(h @ lp.fc.weight.t() + lp.fc.bias, (8,), lp.norm.weight, lp.norm.bias))
        h = block.dts(h, valid)
        scales.append(h)
    fz = model.fuser
    f = sum(F.layer_norm(s @ p.weight.t() + p.bias, (8,), fz.norm.weight, fz.norm.bias)
            for p, s in zip(fz.projs, scales))
    level = fz.interaction(f, valid).transpose(1, 2)
    assert (out.fpn[0] - level).abs().max().item() <= 1e-12
    for l in range(1, model.num_levels):
        pooled = F.max_pool1d(level, 3, 2, 1)
        level = model.pyramid[l - 1](pooled.transpose(1, 2)).transpose(1, 2)
        assert (out.fpn[l] - level).abs().max().item() <= 1e-12


def test_unit_is_averaged_depth_one_vim_with_full_drop_path():
    model = MSTembaBackbone(6, 8, num_levels=2, d_state=4)  # default drop path 0.1
    unit = model.fuser.interaction
    assert len(unit.mixers) == 1 and unit.mixers[0].combine == "mean"
    assert unit.drop_rates == [0.1]
    for m in model.modules():
        if isinstance(m, vim.BiMambaMixer):
            assert (m.dt_proj.bias == 0).all() and (m.dt_proj_b.bias == 0).all()  # MS-Temba's init
            assert m.out_proj.weight.std() < 0.03


def _padding_gap(model, valid=13, pad=7, dtype=torch.float32):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 6, valid, generator=g).to(dtype)
    junk = 1e3 * torch.randn(1, 6, pad, generator=g).to(dtype)
    mask = torch.zeros(1, 1, valid + pad, dtype=torch.bool)
    mask[..., :valid] = True
    with torch.no_grad():
        clean = model(x, torch.ones(1, 1, valid, dtype=torch.bool))
        padded = model(torch.cat([x, junk], -1), mask)
    gaps = []
    for a, b, m in zip(clean.fpn, padded.fpn, padded.fpn_masks):
        n = a.shape[-1]
        assert int(m.sum()) == n
        gaps.append((a - b[..., :n]).abs().max().item())
    return max(gaps)


@pytest.mark.parametrize("stride", [1, 2])
def test_padding_never_changes_valid_outputs(stride):
    torch.manual_seed(4)
    model = _randomise(_tiny(input_stride=stride)).eval()
    # float32: rounding only (1.07e-6 measured on one CPU, under 1e-6 on another); the float64 check
    # is the exact one, and without the masking recipe the gap is > 1e-3 (next test)
    assert _padding_gap(model) <= 1e-5
    assert _padding_gap(model.double(), dtype=torch.float64) <= 1e-12


def test_padding_test_fails_without_the_masking_recipe(monkeypatch):
    torch.manual_seed(4)
    model = _randomise(_tiny()).eval()
    original = vim.BiMambaMixer.forward
    monkeypatch.setattr(vim.BiMambaMixer, "forward", lambda self, u, mask=None: original(self, u, None))
    assert _padding_gap(model) > 1e-3


def test_forward_backward_every_parameter_gets_a_gradient():
    torch.manual_seed(5)
    model = _tiny().train()
    x = torch.randn(2, 6, 17)
    mask = torch.ones(2, 1, 17, dtype=torch.bool)
    mask[1, :, 11:] = False
    out = model(x, mask)
    sum(f.pow(2).sum() for f in out.fpn).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()
               or p.grad.abs().sum() == 0]
    assert not missing, missing
