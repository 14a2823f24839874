"""Loading the authors' state_dict layout (names read off jbistanbul/hieramamba libs/modeling/*.py
and goombalab Hydra) into our modules."""

import math

import pytest
import torch
import torch.nn.functional as F

from hieramamba.models.amp import AMPBlock
from hieramamba.models.compat import (
    StateDictMismatch,
    convert_authors_state_dict,
    extract_state_dict,
    load_authors_state_dict,
    set_reference_precision,
)
from hieramamba.models.model import GroundingModel
from hieramamba.models.ssm import Hydra

D, N, P, E = 16, 8, 8, 2  # d_model, d_state, headdim, expand


def authors_hydra_shapes(d=D, n=N, p=P, expand=E, d_conv=7):
    """goombalab Hydra's parameters (hydra/modules/hydra.py) for ngroups 1."""
    d_inner = expand * d
    h = d_inner // p
    conv_ch = d_inner + 4 * n
    return {
        "in_proj.weight": (2 * d_inner + 4 * n + 2 * h, d),
        "conv1d.weight": (conv_ch, 1, d_conv), "conv1d.bias": (conv_ch,),
        "dt_bias": (h,), "A_log": (h,), "D": (h,), "fc_D.weight": (h, d_inner),
        "norm.weight": (d_inner,), "out_proj.weight": (d, d_inner),
    }


def authors_snag_encoder_shapes(d, prefix):
    """SnAG TransformerEncoder(d, stride=1) (libs/modeling/blocks.py)."""
    shapes = {}
    for x in "qkv":
        shapes[f"{prefix}attn.{x}_conv.conv.weight"] = (d, 1, 3)
        shapes[f"{prefix}attn.{x}_norm.weight"] = (d, 1)
        shapes[f"{prefix}attn.{x}_norm.bias"] = (d, 1)
    for x in ("query", "key", "value", "proj"):
        shapes[f"{prefix}attn.attn.{x}.weight"] = (d, d, 1)
        shapes[f"{prefix}attn.attn.{x}.bias"] = (d,)
    shapes.update({f"{prefix}ln_attn.weight": (d, 1), f"{prefix}ln_attn.bias": (d, 1),
                   f"{prefix}drop_path_attn.scale": (1, d, 1), f"{prefix}ffn.fc.weight": (4 * d, d, 1),
                   f"{prefix}ffn.fc.bias": (4 * d,), f"{prefix}ffn.proj.weight": (d, 4 * d, 1),
                   f"{prefix}ffn.proj.bias": (d,), f"{prefix}ln_ffn.weight": (d, 1), f"{prefix}ln_ffn.bias": (d, 1),
                   f"{prefix}drop_path_ffn.scale": (1, d, 1)})
    return shapes


def authors_gated_block_shapes(d=D):
    """AnchorMambaPoolingBlockGated(local_encode=True, pool 'mean') (libs/modeling/anchor_mamba.py)."""
    shapes = {f"global_encoder.{k}": v for k, v in authors_hydra_shapes(d).items()}
    shapes.update({"norm_global.weight": (d,), "drop_path_global.scale": (1, 1, d),
                   "gate1.0.weight": (d, 2 * d), "gate1.0.bias": (d,), "gate2.0.weight": (d, 2 * d),
                   "gate2.0.bias": (d,), "norm_local.weight": (d,), "drop_path_local.scale": (1, 1, d),
                   "ffn.0.weight": (d, d), "ffn.0.bias": (d,), "norm_ffn.weight": (d,),
                   "drop_path_ffn.scale": (1, 1, d)})
    shapes.update(authors_snag_encoder_shapes(d, "local_encoder."))
    return shapes


def random_state(shapes, seed=0):
    g = torch.Generator().manual_seed(seed)
    sd = {k: 0.3 * torch.randn(v, generator=g, dtype=torch.float64) for k, v in shapes.items()}
    for k in sd:
        if k.endswith("A_log"):
            sd[k] = sd[k].abs() * 0.5
    return sd


def our_block(**kw):
    args = dict(d_state=N, headdim=P, expand=E, chunk_size=8, window_size=5, local_heads=2, dropout=0.0)
    args.update(kw)
    return AMPBlock(D, **args).double().eval()


def test_hydra_converts_and_loads():
    sd = random_state(authors_hydra_shapes())
    ours = Hydra(D, d_state=N, headdim=P, expand=E, chunk_size=8).double()
    ours.load_state_dict(convert_authors_state_dict(sd, ours), strict=True)
    for k, v in sd.items():
        assert torch.equal(ours.state_dict()[k], v)
    assert torch.isfinite(ours(torch.randn(1, 9, D, dtype=torch.float64))).all()


def authors_gated_block_forward(sd, x, hydra, local):
    """The authors' gated block at B = 1, even L (every interleaved slot valid), written from
    their forward with their key names; Hydra / the SnAG encoder are run as given."""
    _, d, length = x.shape
    rms = lambda v, w: w * (v * torch.rsqrt(v.pow(2).mean(-1, keepdim=True) + 1e-6))  # noqa: E731
    rows = []
    for k in range(length // 2):
        rows += [x[0, :, 2 * k:2 * k + 2].mean(-1), x[0, :, 2 * k], x[0, :, 2 * k + 1]]
    c = torch.stack(rows)[None]  # (1, T', D)
    g = sd["drop_path_global.scale"] * hydra(rms(c, sd["norm_global.weight"])) + c
    w1 = torch.sigmoid(torch.cat([c, g], -1) @ sd["gate1.0.weight"].T + sd["gate1.0.bias"])
    f1 = w1 * g + (1 - w1) * c
    mask = torch.ones(1, 1, c.shape[1], dtype=torch.bool)
    loc = local(rms(f1, sd["norm_local.weight"]).transpose(1, 2), mask)[0].transpose(1, 2)
    loc = sd["drop_path_local.scale"] * loc + f1
    w2 = torch.sigmoid(torch.cat([f1, loc], -1) @ sd["gate2.0.weight"].T + sd["gate2.0.bias"])
    fused = w2 * loc + (1 - w2) * f1
    ffn = F.gelu(rms(fused, sd["norm_ffn.weight"]) @ sd["ffn.0.weight"].T + sd["ffn.0.bias"])
    out = sd["drop_path_ffn.scale"] * ffn + fused  # (1, T', D)
    anchors = out[0, 0::3].T[None]
    tokens = torch.stack([out[0, i] for i in range(out.shape[1]) if i % 3]).T[None]
    return anchors, tokens


def test_gated_block_converts_and_matches_the_authors_forward():
    sd = random_state(authors_gated_block_shapes(), seed=1)
    block = our_block()
    load_authors_state_dict(block, sd, reference_precision=None)
    hydra = Hydra(D, d_state=N, headdim=P, expand=E, chunk_size=8).double().eval()
    hydra.load_state_dict({k[len("global_encoder."):]: v for k, v in sd.items() if k.startswith("global_encoder.")})
    local = block.local_mixer  # SnAG layer: same names, loaded from the local_encoder.* keys
    for k, v in sd.items():
        if k.startswith("local_encoder."):
            assert torch.equal(local.state_dict()[k[len("local_encoder."):]], v)
    torch.manual_seed(0)
    x = torch.randn(1, D, 10, dtype=torch.float64)
    with torch.no_grad():
        anchors, tokens, _, _ = block(x, torch.ones(1, 1, 10, dtype=torch.bool))
        ref_anchors, ref_tokens = authors_gated_block_forward(sd, x, hydra, local)
    assert torch.allclose(anchors, ref_anchors, atol=1e-10) and torch.allclose(tokens, ref_tokens, atol=1e-10)


@pytest.mark.parametrize("pool,extra", [
    ("attn", {"anchor_pooling.pooler.pool_q": (1, 1, D), "anchor_pooling.pooler.pool_attn.in_proj_weight": (3 * D, D),
              "anchor_pooling.pooler.pool_attn.in_proj_bias": (3 * D,),
              "anchor_pooling.pooler.pool_attn.out_proj.weight": (D, D),
              "anchor_pooling.pooler.pool_attn.out_proj.bias": (D,)}),
    ("gated", {"anchor_pooling.pooler.gate_proj.weight": (D, 2 * D, 1), "anchor_pooling.pooler.gate_proj.bias": (D,)}),
])
def test_pooling_parameters_convert(pool, extra):
    shapes = {**authors_gated_block_shapes(), **extra}
    sd = random_state(shapes, seed=2)
    block = our_block(pool=pool)
    load_authors_state_dict(block, sd)
    key = "pool.query" if pool == "attn" else "pool.gate.weight"
    src = "anchor_pooling.pooler.pool_q" if pool == "attn" else "anchor_pooling.pooler.gate_proj.weight"
    assert torch.equal(block.state_dict()[key], sd[src])


def test_swiglu_block_without_local_encoder_converts():
    shapes = {k: v for k, v in authors_gated_block_shapes().items()
              if not k.startswith(("local_encoder.", "gate2.", "norm_local", "drop_path_local", "ffn."))}
    hidden = int(2 * (4 * D) / 3)
    shapes.update({"ffn.w12.weight": (2 * hidden, D), "ffn.w2.weight": (D, hidden)})
    block = our_block(local_mixer="none")
    load_authors_state_dict(block, random_state(shapes))


def test_converter_rejects_unknown_missing_and_misshaped_keys():
    sd = random_state(authors_gated_block_shapes())
    block = our_block()
    bad = dict(sd, **{"global_encoder.init_states": torch.zeros(2)})
    with pytest.raises(StateDictMismatch, match=r"unknown key\(s\): global_encoder.init_states"):
        convert_authors_state_dict(bad, block)
    short = {k: v for k, v in sd.items() if k != "gate1.0.bias"}
    with pytest.raises(StateDictMismatch, match=r"missing key\(s\) \(ours\): gate_global.bias"):
        convert_authors_state_dict(short, block)
    wrong = dict(sd, **{"norm_ffn.weight": torch.zeros(D + 1)})
    with pytest.raises(StateDictMismatch, match="norm_ffn.weight: checkpoint"):
        convert_authors_state_dict(wrong, block)
    with pytest.raises(StateDictMismatch, match="gate=False"):
        convert_authors_state_dict(sd, our_block(gate=False))


def to_authors_layout(ours_sd):
    """Test-side inverse of the documented name table (ours -> authors)."""
    inverse = [("pool.query", "anchor_pooling.pooler.pool_q"), ("pool.attn.", "anchor_pooling.pooler.pool_attn."),
               ("pool.gate.", "anchor_pooling.pooler.gate_proj."), ("global_mixer.", "global_encoder."),
               ("scale_global.", "drop_path_global."), ("scale_local.", "drop_path_local."),
               ("scale_ffn.", "drop_path_ffn."), ("gate_global.", "gate1.0."), ("gate_local.", "gate2.0."),
               ("local_mixer.", "local_encoder."), ("ffn.fc.", "ffn.0.")]
    out = {}
    for key, value in ours_sd.items():
        if key.startswith("backbone."):
            key = "vid_net." + key[len("backbone."):]
            parts = key.split(".", 3)
            if parts[1] == "branch":
                inner = parts[3]
                for ours, theirs in inverse:
                    if inner.startswith(ours):
                        inner = theirs + inner[len(ours):]
                        break
                key = ".".join(parts[:3] + [inner])
        out[key] = value
    return out


@pytest.mark.parametrize("early", [False, True])
def test_whole_model_round_trip(early):
    def build():
        torch.manual_seed(0)
        text = dict(name="transformer", in_dim=6, embd_dim=8, max_seq_len=16, n_heads=2, n_layers=1)
        return GroundingModel(in_dim=5, embd_dim=D, text=text, early_fusion=early, max_seq_len=32,
                              backbone=dict(num_levels=3, d_state=N, headdim=P, chunk_size=8, global_heads=2),
                              fusion=dict(n_heads=2)).eval()

    source = build()
    with torch.no_grad():
        for p in source.parameters():
            p.add_(0.05 * torch.randn_like(p))
    theirs = to_authors_layout(source.state_dict())
    for name in ("vid_net.branch.0.gate1.0.weight", "vid_net.branch.2.global_encoder.A_log",
                 "vid_net.branch.1.local_encoder.attn.attn.query.weight", "vid_net.embd_convs.1.conv.weight",
                 "text_net.bkgd_token", "fusion.layers.1.xattn.xattn.key.weight", "reg_head.scales.2.scale",
                 "cls_head.cls_head.conv.bias"):
        assert name in theirs, name
    assert ("vid_proj.conv.weight" in theirs) == early
    target = build()
    load_authors_state_dict(target, {"model_ema": theirs, "model": {}}, reference_precision=None)
    vid, vid_mask = torch.randn(2, 5, 12), torch.ones(2, 1, 12, dtype=torch.bool)
    text, text_mask = torch.randn(3, 6, 4), torch.ones(3, 1, 4, dtype=torch.bool)
    sizes = torch.tensor([2, 1])
    a, b = source(vid, vid_mask, text, text_mask, sizes), target(vid, vid_mask, text, text_mask, sizes)
    for x, y in zip(a.logits + a.offsets, b.logits + b.offsets):
        assert torch.equal(x, y)


def test_extract_and_reference_precision_switch():
    sd = {"module.a": torch.zeros(1)}
    assert list(extract_state_dict({"model": sd})) == ["a"]
    block = our_block(global_mixer="hydra")
    set_reference_precision(block, True)
    assert block.norm_ffn.reference_precision and block.global_mixer.reference_precision
    from hieramamba.models.backbone import HieraMambaBackbone

    net = HieraMambaBackbone(4, 8, max_seq_len=16, num_levels=1, global_mixer="none")
    assert net.pe.dtype == torch.float64
    set_reference_precision(net, True)
    assert net.pe.dtype == torch.float32 and not math.isnan(float(net.pe.sum()))
