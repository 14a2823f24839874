"""Config composition: every dataset x scale composes, `paper` equals the released table, ablations
apply by name and by path, unknown keys are rejected by name, run-config comparison."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from hieramamba.engine.config import (
    available_options,
    compose_config,
    config_diff,
    config_sha,
    dataset_family,
)
from hieramamba.errors import ConfigError

DATASETS = ["ego4d_nlq", "mad", "madv2", "tacos", "synth_ego4d_nlq", "synth_mad", "synth_tacos"]
SCALES = ["smoke", "default", "paper"]

# The authors' released settings (reference §1.9 / paper-numbers §4.2), written out literally.
# columns: embd, max_seq_len, vid_stride, levels, abs_pe, text net, text width, max tokens, early
# fusion, xattn, batch, micro, queries, crop, epochs, warm-up, lr, loss_norm, reg, ACC (on, w,
# neg, gap), SPC (on, w, neg), split, ranks, IoUs, pre-NMS top-k, max segs.
RELEASED = {
    "ego4d_nlq": (384, 2304, 1, 8, True, "identity", 768, 24, True, "adaln", 1, None, 2, None, 2, 5, 1e-4, 10.0,
                  "iou", (True, 100.0, 8.0, 0.2), (True, 10.0, 1.0), "val", [1, 5], [0.3, 0.5], 2000, 5),
    "mad": (512, 4096, 2, 9, True, "identity", 512, 75, True, "adaln", 2, 1, 16, [0.9, 1.0], 3, 5, 1e-4, 250.0,
            "diou", (False, 1.0, 8.0, 0.2), (False, 150.0, 1.0), "test", [1, 5, 10, 50], [0.1, 0.3, 0.5], 200, 50),
    "madv2": (768, 4096, 2, 9, False, "identity", 768, 75, True, "adaln", 2, 1, 16, [0.9, 1.0], 3, 5, 1e-4, 250.0,
              "diou", (False, 125.0, 8.0, 0.2), (False, 150.0, 1.0), "test", [1, 5, 10, 50], [0.1, 0.3, 0.5], 200, 50),
    "tacos": (256, 2304, 1, 8, True, "transformer", 128, 48, False, "affine", 4, None, 4, [0.9, 1.0], 10, 5, 1e-3,
              100.0, "diou", (True, 10.0, 4.0, 0.3), (True, 1.0, 1.0), "test", [1, 5], [0.3, 0.5], 2000, 5),
}
SHARED = {  # every released config
    "train.ema_beta": 0.999, "train.clip_grad_norm": 1.0, "train.center_sampling_radius": 1.5,
    "train.weight_decay": 0.05, "train.loss_weight": 1.0, "train.label_smoothing": 0.2,
    "train.focal_alpha": 0.5, "train.focal_gamma": 2.0, "train.acc.temperature": 0.07,
    "train.spc.temperature": 0.07, "train.projector_dim": 256, "eval.nms_sigma": 0.9,
    "eval.min_score": 0.001, "eval.voting_thresh": 0.95, "eval.seg_len_thresh": 0.1,
    "eval.pre_nms_thresh": 0.001, "model.points.regression_range": 4, "model.points.sigma": 0.5,
    "model.backbone.stride": 2, "model.backbone.pool": "mean", "model.backbone.window_size": 5,
    "model.backbone.d_state": 64, "model.backbone.expand": 2, "model.backbone.headdim": 64,
    "model.backbone.d_conv": 7,
}


MODELS = ["hieramamba", "snag", "mstemba", "videomamba"]


@pytest.fixture(scope="module")
def composed():
    return {(d, s): compose_config([f"dataset={d}", f"scale={s}"]) for d in DATASETS for s in SCALES}


@pytest.mark.parametrize("model", [m for m in MODELS if m != "hieramamba"])
def test_every_model_composes_at_every_scale(model):
    if model not in available_options("model"):
        pytest.skip(f"conf/model/{model}.yaml not there yet")
    for d in ("ego4d_nlq", "madv2", "synth_tacos"):  # one per scale-table family (+ the synthetic path)
        for s in SCALES:
            cfg = compose_config([f"dataset={d}", f"scale={s}", f"model={model}"])
            assert cfg.model.backbone.name == model


def test_groups_have_the_expected_options():
    assert set(DATASETS) <= set(available_options("dataset"))
    assert set(SCALES) <= set(available_options("scale"))
    assert "hieramamba" in available_options("model")


def test_every_dataset_and_scale_composes(composed):
    for (d, s), cfg in composed.items():
        assert cfg.scale.name == s and cfg.variant == "full"
        assert set(cfg.keys()) >= {"dataset", "model", "train", "eval", "scale", "seed", "out", "variant"}
        assert cfg.eval.protocol in ("snag", "official")
        assert OmegaConf.is_struct(cfg)


@pytest.mark.parametrize("dataset", DATASETS)
def test_paper_scale_equals_the_released_table(composed, dataset):
    cfg = composed[(dataset, "paper")]
    (embd, msl, vstride, levels, pe, tnet, twidth, tlen, early, xattn, bs, micro, nq, crop, ep, wu, lr, ln, reg,
     acc, spc, split, ranks, ious, topk, segs) = RELEASED[dataset_family(dataset)]
    sel = lambda k: OmegaConf.select(cfg, k)  # noqa: E731
    got = {
        "model.embd_dim": embd, "model.max_seq_len": msl, "model.backbone.input_stride": vstride,
        "model.backbone.num_levels": levels, "model.backbone.use_abs_pe": pe, "model.text.name": tnet,
        "model.text.embd_dim": twidth, "model.max_text_len": tlen, "model.early_fusion": early,
        "model.fusion.xattn_mode": xattn, "train.batch_size": bs, "train.microbatch_size": micro,
        "train.max_queries": nq, "train.crop_ratio": crop, "train.epochs": ep, "train.warmup_epochs": wu,
        "train.lr": lr, "train.loss_norm": ln, "train.reg_loss": reg, "train.acc.enable": acc[0],
        "train.acc.weight": acc[1], "train.acc.neg_ratio": acc[2], "train.acc.gap_ratio": acc[3],
        "train.spc.enable": spc[0], "train.spc.weight": spc[1], "train.spc.neg_ratio": spc[2],
        "eval.split": split, "eval.ranks": ranks, "eval.iou_thresholds": ious, "eval.pre_nms_topk": topk,
        "eval.max_num_segs": segs, **SHARED,
    }
    wrong = {k: (sel(k), v) for k, v in got.items()
             if (OmegaConf.to_container(sel(k)) if OmegaConf.is_config(sel(k)) else sel(k)) != v}
    assert not wrong, f"{dataset}: config value != released value: {wrong}"
    if dataset_family(dataset) == "tacos":
        assert cfg.model.text.num_layers == 5
    # batchify_text_queries: all of a video's queries at once (Ego4D; TACoS fuses them as one
    # batch), one at a time (MAD)
    assert cfg.eval.query_chunk == (1 if dataset_family(dataset) in ("mad", "madv2") else None)
    assert cfg.train.max_iters_per_epoch is None


# What a scale may shrink (sizes, schedule) and what it must keep: the family's protocol, loss
# recipe and architecture recipe, so that a smoke or default run exercises the released design.
RECIPE_KEYS = ["model.backbone.input_stride", "model.early_fusion", "model.fusion.xattn_mode", "model.text.name",
               "train.reg_loss", "train.acc.enable", "train.acc.weight", "train.acc.neg_ratio",
               "train.acc.gap_ratio", "train.spc.enable", "train.spc.weight", "train.spc.neg_ratio",
               "eval.ranks", "eval.iou_thresholds", "eval.pre_nms_topk", "eval.max_num_segs", "eval.protocol"]


@pytest.mark.parametrize("scale", ["smoke", "default"])
def test_small_scales_keep_the_family_recipe(composed, scale):
    for d in DATASETS:
        small, paper = composed[(d, scale)], composed[(d, "paper")]
        wrong = {k: (OmegaConf.select(small, k), OmegaConf.select(paper, k)) for k in RECIPE_KEYS
                 if OmegaConf.select(small, k) != OmegaConf.select(paper, k)}
        assert not wrong, f"{d} at scale={scale}: (value, released value) {wrong}"


def test_smoke_scale_is_tiny(composed):
    for d in DATASETS:
        cfg = composed[(d, "smoke")]
        assert cfg.model.embd_dim <= 32 and cfg.train.max_iters_per_epoch <= 5
        assert cfg.train.epochs + cfg.train.warmup_epochs <= 3


def test_ablation_by_name_and_by_path(tmp_path):
    base = compose_config(["dataset=synth_tacos", "scale=smoke"])
    by_name = compose_config(["dataset=synth_tacos", "scale=smoke", "ablation=no_gate"])
    assert by_name.model.backbone.gate is False and base.model.backbone.gate is True
    assert by_name.variant == "no_gate"
    assert config_diff(base, by_name) == ["model.backbone.gate", "variant"]
    f = tmp_path / "my_variant.yaml"
    f.write_text("description: test\ntables: [ablation]\noverrides:\n  train.acc.weight: 3.5\n  train.spc.enable: false\n")
    by_path = compose_config(["dataset=synth_tacos", "scale=smoke", f"ablation={f}"])
    assert by_path.train.acc.weight == 3.5 and by_path.train.spc.enable is False and by_path.variant == "my_variant"


def test_reference_quirks_turns_on_every_switch_reproducing_the_authors_code():
    base = compose_config(["dataset=synth_tacos", "scale=smoke"])
    quirks = compose_config(["dataset=synth_tacos", "scale=smoke", "ablation=reference_quirks"])
    switches = ["model.backbone.reference_mask_quirk", "model.backbone.reference_padding_leak",
                "model.reference_precision", "train.frozen_projectors"]
    fixes = ["eval.truncate_text"]  # our fix on by default; the authors feed whole queries
    assert config_diff(base, quirks) == sorted(switches + fixes + ["variant"])
    assert all(OmegaConf.select(base, k) is False and OmegaConf.select(quirks, k) is True for k in switches)
    assert all(OmegaConf.select(base, k) is True and OmegaConf.select(quirks, k) is False for k in fixes)


def test_unknown_keys_are_rejected_by_name(tmp_path):
    with pytest.raises(ConfigError, match="train.lrr"):
        compose_config(["scale=smoke", "train.lrr=0.1"])
    with pytest.raises(ConfigError, match="model.backbone.gates"):
        compose_config(["model.backbone.gates=false"])
    f = tmp_path / "typo.yaml"
    f.write_text("description: typo\ntables: [ablation]\noverrides:\n  train.acc.wieght: 3\n")
    with pytest.raises(ConfigError, match="train.acc.wieght"):
        compose_config([f"ablation={f}"])
    with pytest.raises(ConfigError, match="no_such_ablation"):
        compose_config(["ablation=no_such_ablation"])
    with pytest.raises(ConfigError, match="train.reg_loss"):
        compose_config(["train.reg_loss=giou"])
    with pytest.raises(ConfigError):
        compose_config(["dataset=no_such_dataset"])


def test_an_anneal_longer_than_the_constant_epochs_is_one_clear_error():
    cfg = compose_config(["train.epochs=4", "train.anneal_epochs=4"])
    assert cfg.train.anneal_epochs == 4
    with pytest.raises(ConfigError, match=r"train.anneal_epochs=5: .* <= train.epochs \(4\)"):
        compose_config(["train.epochs=4", "train.anneal_epochs=5"])
    with pytest.raises(ConfigError, match="train.anneal_epochs"):
        compose_config(["train.anneal_epochs=-1"])


def test_precedence_scale_then_ablation_then_command_line(tmp_path):
    f = tmp_path / "lr.yaml"
    f.write_text("description: lr\ntables: [ablation]\noverrides:\n  train.lr: 0.5\n")
    assert compose_config(["scale=paper", "dataset=tacos"]).train.lr == 1e-3  # scale over train/default
    assert compose_config(["scale=paper", "dataset=tacos", f"ablation={f}"]).train.lr == 0.5
    assert compose_config(["scale=paper", "dataset=tacos", f"ablation={f}", "train.lr=0.25"]).train.lr == 0.25


def test_sha_ignores_locations_only():
    a = compose_config(["scale=smoke", "out=/tmp/a"])
    b = compose_config(["scale=smoke", "out=/tmp/b", "checkpoint_dir=/tmp/c"])
    c = compose_config(["scale=smoke", "out=/tmp/a", "seed=7"])
    assert config_sha(a) == config_sha(b) != config_sha(c)
    assert config_diff(a, c) == ["seed"]


def test_open_mappings_take_new_leaves_but_nothing_else():
    """`model.backbone.<seed backbone>: {}` is an open keyword set; everywhere else keys must exist."""
    cfg = compose_config(["model.backbone.snag.window_size=7"])
    assert cfg.model.backbone.snag.window_size == 7
    with pytest.raises(ConfigError, match="model.backbone.snagg"):
        compose_config(["model.backbone.snagg.window_size=7"])
    with pytest.raises(ConfigError, match="model.backbone.d_statee"):
        compose_config(["model.backbone.d_statee=7"])
    paper_mad = compose_config(["scale=paper", "dataset=mad"])
    assert paper_mad.model.backbone.snag.window_size == 17  # SnAG's released MAD window
    assert compose_config(["scale=paper", "dataset=tacos"]).model.backbone.snag.window_size == 19
