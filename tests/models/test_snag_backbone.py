"""SnAG backbone and the shared embedding stem: builds, maths, padding, gradients, counts."""

from __future__ import annotations

import math

import pytest
import torch

from hieramamba.errors import ConfigError
from hieramamba.models.attention import TransformerEncoder
from hieramamba.models.backbones import build_backbone
from hieramamba.models.snag_backbone import EmbeddingStem, SnAGBackbone


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One intra-op thread: the 2 shared CPU cores are oversubscribed."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# (C_in, D, input stride, levels, window) of SnAG's released settings (reference §4.4).
DATASETS = {"ego4d_nlq": (256, 384, 1, 8, 19), "tacos": (4096, 256, 1, 8, 19), "mad": (512, 512, 2, 9, 17),
            "madv2": (768, 768, 2, 9, 17)}


def _count(m):
    return sum(p.numel() for p in m.parameters())


def _tiny(**kw):
    args = dict(in_dim=6, embd_dim=8, max_seq_len=64, num_levels=4, n_heads=2, window_size=5)
    args.update(kw)
    return SnAGBackbone(**args)


def _randomise(module, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=g))
    return module


@pytest.mark.parametrize("dataset", sorted(DATASETS))
def test_builds_for_every_dataset_config(dataset):
    c_in, d, stride, levels, window = DATASETS[dataset]
    torch.manual_seed(0)
    model = build_backbone("snag", in_dim=c_in, embd_dim=d, max_seq_len=256, num_levels=levels,
                           input_stride=stride, window_size=window).eval()
    assert isinstance(model, SnAGBackbone)
    assert model.level_strides == [stride * 2 ** l for l in range(levels)]
    assert [b.attn_skip is not None for b in model.branch] == [False] + [True] * (levels - 1)
    # per encoder: 3 depthwise convs (k=3, no bias) + 3 LN on q/k/v, 4 1x1 projections, 2 LN, FFN 4x, 2 LayerScales
    enc = 3 * (3 * d + 2 * d) + 4 * (d * d + d) + 2 * 2 * d + (d * 4 * d + 4 * d + 4 * d * d + d) + 2 * d
    assert _count(model.branch[0]) == enc
    t = 23
    with torch.no_grad():
        out = model(torch.randn(1, c_in, t), torch.ones(1, 1, t, dtype=torch.bool))
    assert out.anchors is None
    for l, (f, m) in enumerate(zip(out.fpn, out.fpn_masks)):
        assert f.shape == (1, d, math.ceil(t / model.level_strides[l]))
        assert m.shape == (1, 1, f.shape[-1])
    print(f"snag {dataset}: {_count(model):,} parameters")


@pytest.mark.parametrize("stride,use_pe", [(1, True), (2, True), (2, False)])
def test_stem_is_hieramamba_embedding(stride, use_pe):
    from hieramamba.models.backbone import HieraMambaBackbone

    torch.manual_seed(1)
    hm = HieraMambaBackbone(6, 8, max_seq_len=64, num_levels=1, input_stride=stride, use_abs_pe=use_pe,
                            global_mixer="none", local_mixer="none")
    stem = EmbeddingStem(6, 8, max_seq_len=64, input_stride=stride, use_abs_pe=use_pe)
    state = {k: v for k, v in hm.state_dict().items() if k.startswith("embd_")}
    stem.load_state_dict(_randomise(stem).state_dict() | state)
    x = torch.randn(2, 6, 15)
    mask = torch.ones(2, 1, 15, dtype=torch.bool)
    mask[1, :, 9:] = False
    ref_x, ref_mask = hm.embed(x, mask)
    out_x, out_mask = stem(x, mask)
    assert torch.equal(ref_mask, out_mask)
    assert (ref_x - out_x).abs().max().item() <= 1e-6


def test_seed_backbones_share_the_stem_module():
    from hieramamba.models import mstemba, stem, videomamba

    assert EmbeddingStem is stem.EmbeddingStem
    assert mstemba.EmbeddingStem is stem.EmbeddingStem and videomamba.EmbeddingStem is stem.EmbeddingStem
    assert isinstance(_tiny().stem, stem.EmbeddingStem)


def test_stem_strided_float64_matches_hand_composition():
    # input_stride 2: kernel-5 stride-2 conv first, mask downsampled; PE added; zero at padded steps
    torch.manual_seed(4)
    s = _randomise(EmbeddingStem(6, 8, max_seq_len=64, num_convs=2, input_stride=2)).double().eval()
    x = torch.randn(2, 6, 15, dtype=torch.float64)
    mask = torch.ones(2, 1, 15, dtype=torch.bool)
    mask[1, :, 9:] = False
    out, out_mask = s(x, mask)
    h, m = s.embd_fc(x, mask)
    for conv, norm in zip(s.embd_convs, s.embd_norms):
        h, m = conv(h, m)
        h = torch.relu(norm(h))
    h = (h + s.pe[:, : h.shape[-1]]) * m
    assert out.shape == (2, 8, 8) and torch.equal(out_mask, m)
    assert torch.equal(out_mask[:, 0], torch.stack([torch.ones(8, dtype=torch.bool),
                                                    torch.arange(8) < 5]))
    assert (out - h).abs().max().item() <= 1e-12
    assert torch.all(out[1, :, 5:] == 0)


def test_matches_encoder_composition_float64():
    torch.manual_seed(2)
    model = _tiny().double().eval()
    x = torch.randn(2, 6, 21, dtype=torch.float64)
    mask = torch.ones(2, 1, 21, dtype=torch.bool)
    out = model(x, mask)
    h, m = model.stem(x, mask)
    for l, block in enumerate(model.branch):
        assert isinstance(block, TransformerEncoder)
        h, m = block(h, m)
        assert (out.fpn[l] - h).abs().max().item() <= 1e-12
        assert torch.equal(out.fpn_masks[l], m)


def test_rejects_even_window():
    with pytest.raises(ConfigError, match="window_size"):
        _tiny(window_size=4)


def _padding_gap(model, valid=19, pad=9, dtype=torch.float32):
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
        assert (b[..., n:] == 0).all()
        gaps.append((a - b[..., :n]).abs().max().item())
    return max(gaps)


@pytest.mark.parametrize("stride", [1, 2])
def test_padding_never_changes_valid_outputs(stride):
    torch.manual_seed(4)
    model = _tiny(input_stride=stride).eval()
    with torch.no_grad():  # full-strength residual branches instead of LayerScale's 1e-4
        for b in model.branch:
            b.drop_path_attn.scale.fill_(1.0)
            b.drop_path_ffn.scale.fill_(1.0)
    assert _padding_gap(model) <= 1e-6
    # random weights (large activations, so float32 rounding is coarser): exact in float64
    assert _padding_gap(_randomise(model).double(), dtype=torch.float64) <= 1e-12


def test_padding_test_fails_without_masking():
    # Same padded input, but every step declared valid: the windowed attention reads the padding.
    torch.manual_seed(4)
    model = _randomise(_tiny()).eval()
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 6, 19, generator=g)
    padded = torch.cat([x, 1e3 * torch.randn(1, 6, 9, generator=g)], -1)
    with torch.no_grad():
        clean = model(x, torch.ones(1, 1, 19, dtype=torch.bool)).fpn[0]
        unmasked = model(padded, torch.ones(1, 1, 28, dtype=torch.bool)).fpn[0][..., :19]
    assert (clean - unmasked).abs().max().item() > 1e-3


def test_forward_backward_every_parameter_gets_a_gradient():
    torch.manual_seed(5)
    model = _tiny(proj_pdrop=0.0, path_pdrop=0.0).train()
    with torch.no_grad():  # LayerScale init 1e-4 is fine, but make every branch clearly active
        for b in model.branch:
            b.drop_path_attn.scale.fill_(0.5)
            b.drop_path_ffn.scale.fill_(0.5)
    x = torch.randn(2, 6, 17)
    mask = torch.ones(2, 1, 17, dtype=torch.bool)
    mask[1, :, 12:] = False
    out = model(x, mask)
    sum(f.pow(2).sum() for f in out.fpn).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()
               or p.grad.abs().sum() == 0]
    assert not missing, missing
