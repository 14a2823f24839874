"""GroundingModel: shapes, early/late fusion, gradients, config building, summary."""

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from hieramamba.errors import ConfigError
from hieramamba.models.model import GroundingModel, ModelOutput, build_model

CONF = Path(__file__).resolve().parents[2] / "hieramamba" / "conf" / "model" / "hieramamba.yaml"
BACKBONE = dict(name="hieramamba", num_levels=3, d_state=8, headdim=8, chunk_size=8, global_heads=2, dropout=0.0)


def tiny_model(early: bool, text_name: str = "identity", **backbone):
    text = dict(name=text_name, in_dim=6, embd_dim=8, max_seq_len=16, n_heads=2)
    if text_name == "transformer":
        text.update(n_layers=1, proj_pdrop=0.0, path_pdrop=0.0)
    return GroundingModel(in_dim=5, embd_dim=16, text=text, backbone={**BACKBONE, **backbone}, max_seq_len=32,
                          early_fusion=early, fusion=dict(mode="adaln" if early else "affine", n_heads=2,
                                                          proj_pdrop=0.0, path_pdrop=0.0))


def inputs():
    torch.manual_seed(0)
    vid = torch.randn(2, 5, 13)
    vid_mask = torch.ones(2, 1, 13, dtype=torch.bool)
    vid_mask[1, :, 10:] = False
    text = torch.randn(3, 6, 4)
    text_mask = torch.ones(3, 1, 4, dtype=torch.bool)
    text_mask[2, :, 3:] = False
    return vid, vid_mask, text, text_mask, torch.tensor([1, 2])


@pytest.mark.parametrize("early,text_name", [(False, "transformer"), (True, "identity")])
def test_forward_shapes_and_every_parameter_gets_a_gradient(early, text_name):
    torch.manual_seed(0)
    model = tiny_model(early, text_name)
    out = model(*inputs())
    assert isinstance(out, ModelOutput)
    lengths = [13, 7, 4]
    assert [lg.shape for lg in out.logits] == [(3, n) for n in lengths]
    assert [o.shape for o in out.offsets] == [(3, n, 2) for n in lengths]
    assert [m.shape for m in out.masks] == [(3, n) for n in lengths] and out.masks[0].dtype == torch.bool
    rows = 3 if early else 2  # backbone rows: queries (early) or videos (late)
    assert [f.shape for f in out.fpn] == [(rows, 16, n) for n in lengths]
    assert [a.shape[-1] for a in out.anchors] == [7, 4, 2]
    assert bool((out.masks[0][1:] == out.masks[0][1:2]).all())  # queries of video 1 share its mask
    loss = sum(lg.sigmoid().sum() for lg in out.logits) + sum(o.sum() for o in out.offsets)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert not missing, missing


def test_late_fusion_query_rows_match_single_query_runs():
    torch.manual_seed(0)
    model = tiny_model(False).eval()
    vid, vid_mask, text, text_mask, sizes = inputs()
    out = model(vid, vid_mask, text, text_mask, sizes)
    single = model(vid[1:, :, :10], vid_mask[1:, :, :10], text[2:], text_mask[2:], torch.tensor([1]))
    n = 10
    assert torch.allclose(out.logits[0][2, :n], single.logits[0][0, :n], atol=1e-5)


def test_query_count_is_checked():
    model = tiny_model(False)
    vid, vid_mask, text, text_mask, _ = inputs()
    with pytest.raises(ValueError):
        model(vid, vid_mask, text, text_mask, torch.tensor([1, 1]))


@pytest.mark.parametrize("mixer", ["hydra", "attention"])
def test_summary_names_backbone_mixers_and_backend(mixer):
    model = tiny_model(False, global_mixer=mixer)
    text = model.summary()
    assert "hieramamba" in text and f"global_mixer={mixer}" in text and "local_mixer=window_attention" in text
    if mixer == "hydra":
        assert "ssm backend: torch" in text
    else:
        assert "no SSM module" in text


def test_build_model_from_the_yaml():
    cfg = OmegaConf.load(CONF)
    cfg.embd_dim = 16
    cfg.max_seq_len = 32
    cfg.backbone.num_levels = 3
    cfg.backbone.d_state = 8
    cfg.backbone.headdim = 8
    cfg.text.embd_dim = 8
    cfg.text.num_layers = 1
    with pytest.raises(ConfigError, match="in_dim"):
        build_model(cfg)
    model = build_model(cfg, video_dim=5, text_dim=6).eval()
    assert model.num_levels == 3 and model.level_strides == [1, 2, 4]
    assert type(model.text_net).__name__ == "TextTransformer" and model.fusion.xattn_mode == "affine"
    out = model(*inputs())
    assert len(out.logits) == 3
    cfg.backbone.global_mixer = "attention"
    cfg.backbone.gate = False
    cfg.early_fusion = True
    cfg.text.name = "identity"
    model = build_model(cfg, video_dim=5, text_dim=6)
    assert model.early_fusion and not model.backbone.branch[0].gated
    assert type(model.text_net).__name__ == "TextIdentity"


def test_seed_backbone_gets_generic_keys_and_its_own_mapping():
    cfg = OmegaConf.load(CONF)
    cfg.embd_dim = 16
    cfg.max_seq_len = 32
    cfg.backbone.name = "snag"
    cfg.backbone.num_levels = 3
    cfg.backbone.snag = {"window_size": 3, "n_heads": 2}
    cfg.text.embd_dim = 8
    cfg.text.num_layers = 1
    model = build_model(cfg, video_dim=5, text_dim=6)
    assert type(model.backbone).__name__ == "SnAGBackbone" and model.num_levels == 3
    cfg.backbone.snag = {"gate": True}
    with pytest.raises(ConfigError, match="gate"):
        build_model(cfg, video_dim=5, text_dim=6)
    cfg.backbone.name = "hieramamba"
    cfg.backbone.snag = {}
    cfg.backbone.bogus = 1
    with pytest.raises(ConfigError, match="bogus"):
        build_model(cfg, video_dim=5, text_dim=6)


def test_reference_padding_leak_reaches_every_block_from_the_yaml():
    cfg = OmegaConf.load(CONF)
    cfg.embd_dim = 16
    cfg.max_seq_len = 32
    cfg.backbone.update(num_levels=3, d_state=8, headdim=8)
    cfg.text.update(embd_dim=8, num_layers=1)
    assert cfg.backbone.reference_padding_leak is False  # the fix is the default
    assert not any(b.reference_padding_leak for b in build_model(cfg, video_dim=5, text_dim=6).backbone.branch)
    cfg.backbone.reference_padding_leak = True
    model = build_model(cfg, video_dim=5, text_dim=6).eval()
    assert all(b.reference_padding_leak for b in model.backbone.branch)
    assert len(model(*inputs()).logits) == 3
    cfg.backbone.global_mixer = "attention"  # no unmasked counterpart in the authors' code
    with pytest.raises(ConfigError, match="reference_padding_leak"):
        build_model(cfg, video_dim=5, text_dim=6)
    cfg.backbone.name = "snag"  # a seed backbone never receives the AMP-only key
    cfg.backbone.snag = {"window_size": 3, "n_heads": 2}
    assert type(build_model(cfg, video_dim=5, text_dim=6).backbone).__name__ == "SnAGBackbone"
