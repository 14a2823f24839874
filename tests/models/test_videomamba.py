"""VideoMamba backbone: builds per dataset, maths of the stack and pooled pyramid, padding, gradients."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from hieramamba.models import vim
from hieramamba.models.backbones import build_backbone
from hieramamba.models.videomamba import VideoMambaBackbone


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One intra-op thread: the 2 shared CPU cores are oversubscribed, and OpenMP barriers then
    cost more than the small ops they split."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

# (C_in, D, input stride, levels) of the released dataset settings (reference §1.9).
DATASETS = {"ego4d_nlq": (256, 384, 1, 8), "tacos": (4096, 256, 1, 8), "mad": (512, 512, 2, 9),
            "madv2": (768, 768, 2, 9)}


def _count(m):
    return sum(p.numel() for p in m.parameters())


def _tiny(**kw):
    args = dict(in_dim=6, embd_dim=8, max_seq_len=64, num_levels=4, depth=2, d_state=4, drop_path_rate=0.0)
    args.update(kw)
    return VideoMambaBackbone(**args)


@pytest.mark.parametrize("dataset", sorted(DATASETS))
def test_builds_for_every_dataset_config(dataset):
    c_in, d, stride, levels = DATASETS[dataset]
    torch.manual_seed(0)
    model = build_backbone("videomamba", in_dim=c_in, embd_dim=d, max_seq_len=256, num_levels=levels,
                           input_stride=stride).eval()
    assert isinstance(model, VideoMambaBackbone)
    assert model.num_levels == levels
    assert model.level_strides == [stride * 2 ** l for l in range(levels)]
    e, n, r = 2 * d, 16, math.ceil(d / 16)
    mixer = 3 * d * e + 2 * (5 * e + e * (r + 2 * n) + (r * e + e) + e * n + e)
    assert _count(model.blocks) == 24 * (mixer + d) + d  # 24 mixers + their RMSNorms + final RMSNorm
    t = 21
    with torch.no_grad():
        out = model(torch.randn(1, c_in, t), torch.ones(1, 1, t, dtype=torch.bool))
    assert out.anchors is None and out.anchor_masks is None
    for l, (f, m) in enumerate(zip(out.fpn, out.fpn_masks)):
        assert f.shape == (1, d, math.ceil(t / model.level_strides[l]))
        assert m.shape == (1, 1, f.shape[-1]) and m.dtype == torch.bool
    print(f"videomamba {dataset}: {_count(model):,} parameters")


def test_matches_stack_and_pooling_maths_float64():
    torch.manual_seed(1)
    model = _tiny().double().eval()
    x = torch.randn(2, 6, 13, dtype=torch.float64)
    mask = torch.ones(2, 1, 13, dtype=torch.bool)
    out = model(x, mask)
    # explicit composition: stem -> pre-norm residual blocks -> final RMSNorm -> repeated max-pool
    h, _ = model.stem(x, mask)
    r = h.transpose(1, 2)
    for norm, mixer in zip(model.blocks.norms, model.blocks.mixers):
        normed = r * torch.rsqrt(r.pow(2).mean(-1, keepdim=True) + 1e-5) * norm.weight
        r = r + mixer(normed)
    nf = model.blocks.norm_f
    level = (r * torch.rsqrt(r.pow(2).mean(-1, keepdim=True) + 1e-5) * nf.weight).transpose(1, 2)
    for l in range(model.num_levels):
        assert (out.fpn[l] - level).abs().max().item() <= 1e-12
        level = F.max_pool1d(level, 3, 2, 1)


def test_videomamba_init_and_summed_directions():
    torch.manual_seed(2)
    model = _tiny(depth=4)
    for mixer in model.blocks.mixers:
        assert mixer.combine == "sum"
        assert (mixer.dt_proj.bias == 0).all() and (mixer.dt_proj_b.bias == 0).all()
        bound = 1 / math.sqrt(mixer.d_inner) / math.sqrt(4)  # kaiming-uniform(a=sqrt 5) / sqrt(depth)
        assert mixer.out_proj.weight.abs().max() <= bound + 1e-7
        assert mixer.in_proj.weight.std() < 0.03
    assert model.blocks.drop_rates == [0.0, 0.0, 0.0, 0.0]
    assert VideoMambaBackbone(6, 8, depth=3, d_state=4, drop_path_rate=0.3).blocks.drop_rates == \
        pytest.approx([0.0, 0.15, 0.3])


def _randomise(model, seed=0):
    """Trained-like weights: every parameter random (the init's tiny x_proj would hide a leak)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=g))
            if "A_" in name:
                p.copy_(torch.rand(p.shape, generator=g))
    return model


def _padding_gap(model, valid=11, pad=6, dtype=torch.float32):
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
        assert int(m.sum()) == n  # as many valid steps as the unpadded run has
        gaps.append((a - b[..., :n]).abs().max().item())
    return max(gaps)


@pytest.mark.parametrize("stride", [1, 2])
def test_padding_never_changes_valid_outputs(stride):
    torch.manual_seed(4)
    model = _tiny(input_stride=stride).eval()
    assert _padding_gap(model) <= 1e-6
    assert _padding_gap(_randomise(model)) <= 1e-6
    # in float64 the padded and unpadded runs agree to rounding: the isolation is exact
    assert _padding_gap(model.double(), dtype=torch.float64) <= 1e-12


def test_padding_test_fails_without_the_masking_recipe(monkeypatch):
    torch.manual_seed(4)
    model = _randomise(_tiny().eval())
    original = vim.BiMambaMixer.forward
    monkeypatch.setattr(vim.BiMambaMixer, "forward", lambda self, u, mask=None: original(self, u, None))
    assert _padding_gap(model) > 1e-3


def test_forward_backward_every_parameter_gets_a_gradient():
    torch.manual_seed(5)
    model = _tiny(drop_path_rate=0.0).train()
    x = torch.randn(2, 6, 17)
    mask = torch.ones(2, 1, 17, dtype=torch.bool)
    mask[1, :, 12:] = False
    out = model(x, mask)
    sum(f.pow(2).sum() for f in out.fpn).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()
               or p.grad.abs().sum() == 0]
    assert not missing, missing
    assert model.backend_name == "torch"
