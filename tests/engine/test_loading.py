"""`load_model`: a run directory, our checkpoint file, an authors' last.pth converted on the fly
and our bare state_dict load the same weights (same answers); feature widths are read off the
weights when the config leaves them null; unknown layouts and unusable sources are one clear error."""

from __future__ import annotations

import pytest
import torch

from hieramamba.engine.loading import PROBE_TEXT_DIM, PROBE_VIDEO_DIM, feature_dims_of, load_model
from hieramamba.engine.predict import predict
from hieramamba.errors import CheckpointError, ConfigError, DataError

pytestmark = pytest.mark.slow

# the smoke synthetic features' widths, for composing the config of a checkpoint that carries none
WIDTHS = ("model.in_dim=32", "model.text.in_dim=32")


@pytest.fixture(scope="module")
def run(synth_tacos_run):
    data_root, run_dir = synth_tacos_run
    state = torch.load(run_dir / "checkpoints" / "last.pth", weights_only=True)
    h5 = data_root / "synth" / "synth_tacos" / "features" / "tall_c3d_features.hdf5"
    overrides = ["dataset=synth_tacos", "scale=smoke", "seed=3", f"data_root={data_root}"]
    return {"dir": run_dir, "state": state, "h5": h5, "overrides": overrides}


def moments(source, run, overrides=None):
    got = predict(source, run["h5"], ["He moved the bread", "She opened the book"], video_key="s22-d53.avi",
                  overrides=overrides)
    return [q.moments for q in got.queries]


def test_every_layout_loads_the_same_ema_weights(run, tmp_path):
    from test_run import _authors_layout  # the test-side inverse of models.compat's name table

    reference = moments(run["dir"], run)
    assert load_model(run["dir"]).layout == "run directory"
    ours = load_model(run["dir"] / "checkpoints" / "last.pth")
    assert ours.layout == "checkpoint" and moments(run["dir"] / "checkpoints" / "last.pth", run) == reference
    ema = run["state"]["ema"]
    assert all(torch.equal(ours.parts.model.state_dict()[k], v) for k, v in ema.items())

    authors = tmp_path / "authors_last.pth"
    # the raw model differs from the EMA: the EMA must be the one chosen
    torch.save({"epoch": 1, "model": _authors_layout(run["state"]["model"]), "model_ema": _authors_layout(ema)}, authors)
    overrides = run["overrides"] + list(WIDTHS)
    assert load_model(authors, overrides).layout == "authors' checkpoint"
    assert moments(authors, run, overrides) == reference

    bare = tmp_path / "bare.pth"
    torch.save(dict(ema), bare)
    assert load_model(bare, run["overrides"]).layout == "state_dict"  # widths read off the weights
    assert moments(bare, run, run["overrides"]) == reference


def test_feature_widths_read_off_the_weights(run):
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(run["dir"] / "config.yaml")
    assert cfg.model.in_dim is None and cfg.dataset.features.video_dim is None
    assert feature_dims_of(cfg, run["state"]["ema"], "x") == (32, 32)
    assert {PROBE_VIDEO_DIM, PROBE_TEXT_DIM}.isdisjoint({32, int(cfg.model.embd_dim), int(cfg.model.text.embd_dim)})
    with pytest.raises(ConfigError, match="cannot read the video feature width"):
        feature_dims_of(cfg, {}, "x")


def test_unknown_layouts_and_bad_sources(run, tmp_path):
    cases = {
        "other.pth": ({"epoch": 3, "notes": "hi"}, r"unknown checkpoint layout \(top-level keys \['epoch', 'notes'\]\)"),
        "names.pth": ({"state_dict": {"encoder.weight": torch.zeros(2)}}, r"unknown checkpoint layout \(parameter names"),
    }
    for name, (content, problem) in cases.items():
        torch.save(content, tmp_path / name)
        with pytest.raises(DataError, match=rf"{name}: {problem}"):
            load_model(tmp_path / name, run["overrides"])
    torch.save([torch.zeros(2)], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match=r"list\.pth: holds a list, not a checkpoint mapping"):
        load_model(tmp_path / "list.pth")
    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"garbage\.pth: .*Pass a run directory"):
        load_model(tmp_path / "garbage.pth")
    torch.save({"model": {"vid_net.embd_fc.weight": torch.zeros(1)}}, tmp_path / "authors.pth")
    with pytest.raises(ConfigError, match=r"authors\.pth holds no config: name the model"):
        load_model(tmp_path / "authors.pth")
    with pytest.raises(ValueError, match="does not fit"):  # the converter lists unknown/missing keys
        load_model(tmp_path / "authors.pth", run["overrides"] + list(WIDTHS))
    with pytest.raises(ConfigError, match="carries its own config"):
        load_model(run["dir"] / "checkpoints" / "last.pth", ["seed=1"])
    with pytest.raises(ConfigError, match="run directory with its own config.yaml"):
        load_model(run["dir"], ["seed=1"])
    empty_run = tmp_path / "empty_run"
    empty_run.mkdir()
    (empty_run / "config.yaml").write_text((run["dir"] / "config.yaml").read_text().replace(str(run["dir"]), str(empty_run)))
    with pytest.raises(DataError, match=r"checkpoints/last\.pth: no checkpoint: train the run first"):
        load_model(empty_run)


def test_fps_comes_from_the_dataset_config_or_the_caller(run, tmp_path):
    """A model whose dataset config leaves features.fps null needs fps= (--fps) for seconds."""
    bare = tmp_path / "bare.pth"
    torch.save(dict(run["state"]["ema"]), bare)
    model = load_model(bare, run["overrides"] + ["dataset.features.fps=null"])
    assert model.grid.fps is None
    with pytest.raises(ConfigError, match=r"features\.fps is null; pass --fps"):
        moments(model, run)
    got = predict(model, run["h5"], ["He moved the bread", "She opened the book"], video_key="s22-d53.avi", fps=29.4)
    assert [q.moments for q in got.queries] == moments(run["dir"], run)
