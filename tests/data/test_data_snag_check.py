"""SnAG processed format, dataset configs, samples for the engine, data check + CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from readers_fixtures import (  # noqa: F401
    SNAG_DIM,
    SNAG_TEXT_DIM,
    TACOS_DIM,
    snag_config,
    snag_dir,
    tacos_config,
    tacos_dir,
)

from hieramamba.data.cli import main
from hieramamba.data.dataset import CONF_DIR, GroundingDataset, load_dataset_config
from hieramamba.data.sampling import Sample
from hieramamba.errors import ConfigError, DataError


def test_snag_format_with_and_without_optional_fields(snag_dir):
    ds = GroundingDataset.from_config(snag_config(snag_dir))
    tr = ds.split("train")
    assert list(tr.videos) == ["vidA", "vidB"]  # vidC has no annotations: skipped, counted
    q = ds.records.quirks
    assert q.get("train", "video_without_queries") == 1
    assert q.get("train", "zero_length_dropped") == 1 and q.get("train", "end_past_video_clamped") == 1
    a, b = tr.videos["vidA"], tr.videos["vidB"]
    assert a.num_clips == 371 and a.num_frames == 3000 and [x.query_id for x in a.queries] == ["vidA_s0", "vidA_s2"]
    assert a.queries[0].sentence == "first thing" and a.queries[1].segment == (90.0, 100.0)
    assert b.duration == 50.0 and b.num_clips is None and b.queries[0].query_id == "vidB_0000"
    # .npy and .pt video features; down-sampled by 2
    fa = ds.load_video_features("vidA")
    assert fa.shape == ((int(100 * 30 / 8) + 1) // 2, SNAG_DIM)
    assert ds.load_video_features("vidB").shape == ((int(50 * 30 / 8) + 1) // 2, SNAG_DIM)
    assert ds.load_text_features(b.queries[0]).shape == (3, SNAG_TEXT_DIM)
    # g = t * 30 / 16 - 1
    np.testing.assert_allclose(ds.targets("vidA"), [[1 * 30 / 16 - 1, 10 * 30 / 16 - 1], [90 * 30 / 16 - 1, 100 * 30 / 16 - 1]])


def test_snag_concatenated_feature_dirs(snag_dir, tmp_path):
    d2 = tmp_path / "second"
    d2.mkdir()
    for p in (snag_dir / "video").glob("*.npy"):
        arr = np.load(p)
        np.save(d2 / p.name, arr[:-1, :2])  # one row shorter: padded by repeating the last row
    import torch

    arr = torch.load(snag_dir / "video" / "vidB.pt").numpy()
    np.save(d2 / "vidB.npy", arr[:, :2])
    cfg = snag_config(snag_dir, video_features=[str(snag_dir / "video"), str(d2)])
    cfg["features"]["video_dim"] = SNAG_DIM + 2
    ds = GroundingDataset.from_config(cfg)
    assert ds.load_video_features("vidA").shape[1] == SNAG_DIM + 2
    full = ds.video("vidA").feature.load()  # before down-sampling
    first = np.load(snag_dir / "video" / "vidA.npy")
    np.testing.assert_array_equal(full[:, :SNAG_DIM], first)
    np.testing.assert_array_equal(full[-1, SNAG_DIM:], full[-2, SNAG_DIM:])  # the shorter part was padded
    np.save(d2 / "vidA.npy", first[:-3, :2])  # more than one row apart: an error naming both files
    with pytest.raises(DataError) as exc:
        ds.load_video_features("vidA")
    assert "vidA.npy" in str(exc.value) and "'vidA'" in str(exc.value) and "misaligned" in str(exc.value)


def test_load_sample_train_and_eval(tacos_dir):
    ds = GroundingDataset.from_config(tacos_config(tacos_dir))
    rng = np.random.default_rng(0)
    samples = ds.train_samples(rng, max_vid_len=2304, max_num_text=2, crop_ratio=(0.9, 1.0))
    covered = sorted((s.video_id, i) for s in samples for i in s.query_indices)
    assert covered == sorted((v, i) for v, vid in ds.split("train").videos.items() for i in range(len(vid.queries)))
    for s in samples:
        vs = ds.load_sample(s, train=True, rng=rng, max_vid_len=2304, crop_ratio=(0.9, 1.0), max_text_len=2)
        ws, we = vs.crop
        assert vs.video.shape == (we - ws, TACOS_DIM)
        assert len(vs.texts) == len(s.query_indices) and all(len(t) <= 2 for t in vs.texts)
        full = ds.targets(s.video_id, s.query_indices, split=s.split)
        np.testing.assert_allclose(vs.targets, np.clip(full - ws, -ds.grid.offset, we - ws + ds.grid.offset))
    ev = ds.eval_samples()
    assert [s.video_id for s in ev] == ["s31-d28.avi"]
    vs = ds.load_sample(ev[0])
    assert vs.crop == (0, len(vs.video)) and vs.query_ids == ["s31-d28.avi_0000", "s31-d28.avi_0001"]
    assert vs.kinds == ["plain", "plain"]
    np.testing.assert_allclose(vs.segments, [[30 / 29.4, 400 / 29.4], [500 / 29.4, 800 / 29.4]])
    # the same seed gives the same grouping and crops
    a = ds.train_samples(np.random.default_rng(5), 20, 1, (0.9, 1.0))
    b = ds.train_samples(np.random.default_rng(5), 20, 1, (0.9, 1.0))
    assert a == b and isinstance(a[0], Sample)


def test_query_kinds_sidecar(tacos_dir):
    (tacos_dir / "query_kinds.json").write_text(json.dumps({"s31-d28.avi_0001": "long_range", "s13-d21_0000": "long_range"}))
    ds = GroundingDataset.from_config(tacos_config(tacos_dir, query_kinds="${.root}/query_kinds.json"))
    assert [q.kind for q in ds.split("test").queries()] == ["plain", "long_range"]
    assert ds.split("train").videos["s13-d21.avi"].queries[0].kind == "long_range"  # id without ".avi" accepted
    (tacos_dir / "query_kinds.json").write_text("[1, 2]")
    with pytest.raises(DataError) as exc:
        GroundingDataset.from_config(tacos_config(tacos_dir, query_kinds="${.root}/query_kinds.json"))
    assert "query_kinds.json" in str(exc.value)


def test_shipped_dataset_configs():
    names = sorted(p.stem for p in CONF_DIR.glob("*.yaml"))
    assert names == ["ego4d_nlq", "mad", "madv2", "synth_ego4d_nlq", "synth_mad", "synth_tacos", "tacos"]
    expect = {"ego4d_nlq": (32, 8, 2, "val"), "mad": (1, 1, 1, "test"), "madv2": (1, 1, 1, "test"), "tacos": (16, 4, 4, "test")}
    for name, (size, stride, ds_rate, ev) in expect.items():
        cfg = load_dataset_config(name)
        f = cfg["features"]
        assert (f["clip_size"], f["clip_stride"], f["downsample_rate"], cfg["eval_split"]) == (size, stride, ds_rate, ev)
        assert cfg["root"] is None and cfg["annotations"] is None  # the user fills them
    assert load_dataset_config("madv2")["features"]["video_dim"] == 768
    cfg = load_dataset_config("synth_tacos", data_root="/d")
    assert cfg["annotations"] == "/d/synth/synth_tacos/annotations"
    cfg = load_dataset_config("synth_mad", overrides={"root": "/x"})
    assert cfg["video_features"] == "/x/features/CLIP_B32_frames_features_5fps.h5"
    with pytest.raises(ConfigError, match="root"):
        GroundingDataset.from_config("tacos")
    with pytest.raises(ConfigError, match="nope"):
        load_dataset_config("nope")


def test_composed_config_node_resolves_against_its_root(tacos_dir):
    from omegaconf import OmegaConf

    node = tacos_config(tacos_dir)
    node["root"] = "${data_root}"
    run = OmegaConf.create({"data_root": str(tacos_dir), "dataset": node})
    ds = GroundingDataset.from_config(run.dataset)
    assert ds.split("test").num_queries == 2


def test_check_cli_writes_reports_and_fails_on_structural_error(tacos_dir, tmp_path, capsys):
    yaml_path = tmp_path / "fixture.yaml"
    import yaml

    yaml_path.write_text(yaml.safe_dump(tacos_config(tacos_dir)))
    out = tmp_path / "rep"
    assert main(["check", str(yaml_path), "--out", str(out)]) == 0
    report = json.loads((out / "data_report.json").read_text())
    assert report["ok"] and report["features"]["video"]["checked"] == 4
    assert report["features"]["text"]["glove_unknown_words"] == 2  # "leek", "an"
    assert report["quirks"]["train"] == {"end_past_video_clamped": 1, "exact_duplicate_kept": 1, "whitespace_stripped": 1}
    md = (out / "data_report.md").read_text()
    assert "Result: OK" in md and "exact_duplicate_kept" in md
    # workflow style: dataset=FILE dataset.KEY=VALUE --report-json --report-md; strict fails on quirks
    rj, rm = tmp_path / "r.json", tmp_path / "r.md"
    assert main(["check", f"dataset={yaml_path}", f"dataset.root={tacos_dir}", "--report-json", str(rj), "--report-md", str(rm), "--strict"]) == 1
    assert json.loads(rj.read_text())["errors"]["counts"]["strict:exact_duplicate_kept"] == 1 and rm.is_file()
    # a missing feature file: listed in the report, the check fails naming file and record
    import h5py

    with h5py.File(tacos_dir / "features" / "tall_c3d_features.hdf5", "a") as f:
        del f["s30-d52.avi"]
    capsys.readouterr()
    assert main(["check", str(yaml_path), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "tall_c3d_features.hdf5" in err and "'s30-d52.avi'" in err
    assert json.loads((out / "data_report.json").read_text())["errors"]["counts"] == {"missing_video_feature": 1}
    # a malformed annotation file: one clear error, no traceback
    (tacos_dir / "annotations" / "val.json").write_text("{")
    assert main(["check", str(yaml_path)]) == 1
    assert "val.json" in capsys.readouterr().err


def test_bad_snag_missing_segment(snag_dir):
    path = snag_dir / "snag.json"
    data = json.loads(path.read_text())
    del data["test"]["vidD"]["annotations"][0]["segment"]
    path.write_text(json.dumps(data))
    with pytest.raises(DataError) as exc:
        GroundingDataset.from_config(snag_config(snag_dir))
    assert str(path) in str(exc.value) and "vidD annotations[0]" in str(exc.value) and "segment" in str(exc.value)


def test_bad_duplicate_query_id(snag_dir):
    path = snag_dir / "snag.json"
    data = json.loads(path.read_text())
    data["train"]["vidB"]["annotations"][0]["sentence_id"] = "vidA_s0"
    path.write_text(json.dumps(data))
    with pytest.raises(DataError) as exc:
        GroundingDataset.from_config(snag_config(snag_dir))
    assert "snag.json" in str(exc.value) and "'vidA_s0'" in str(exc.value)


def test_bad_empty_query_is_a_counted_quirk_and_strict_error(snag_dir):
    from hieramamba.data.check import check_dataset

    path = snag_dir / "snag.json"
    data = json.loads(path.read_text())
    data["test"]["vidD"]["annotations"].append({"segment": [1.0, 2.0], "sentence": "   ", "sentence_id": "vidD_empty"})
    path.write_text(json.dumps(data))
    ds = GroundingDataset.from_config(snag_config(snag_dir))
    assert ds.records.quirks.get("test", "empty_query_dropped") == 1
    report = check_dataset(ds, strict=True)
    assert not report["ok"]
    item = report["errors"]["items"]["strict:empty_query_dropped"][0]
    assert "snag.json" in item["path"] and item["record"] == "vidD_empty"


def test_data_cli_usage_and_unknown():
    assert main([]) == 0
    assert main(["nope"]) == 2


@pytest.mark.parametrize("like", ["tacos", "ego4d_nlq", "mad"])
def test_synthetic_layouts_read_and_check_clean(like, tmp_path):
    """The generator's output (smoke scale) reads with the real readers and checks clean."""
    synth = pytest.importorskip("hieramamba.data.synth")
    if not hasattr(synth, "generate"):
        pytest.skip("hieramamba.data.synth.generate not available yet")
    root = tmp_path / f"synth_{like}"
    synth.generate(like, "smoke", 0, root)
    from hieramamba.data.check import check_dataset

    ds = GroundingDataset.from_config(f"synth_{like}", overrides={"root": str(root)})
    report = check_dataset(ds)
    assert report["ok"], report["errors"]
    assert report["warnings"]["counts"] == {}  # feature lengths agree with the durations
    kinds = {k for s in report["splits"].values() for k in s["queries_by_kind"]}
    assert kinds == {"plain", "long_range"}
    sample = ds.load_sample(ds.eval_samples()[0])
    assert sample.targets.shape == (len(sample.query_ids), 2) and (sample.targets[:, 1] > sample.targets[:, 0]).all()


def test_data_synth_is_delegated(tmp_path):
    synth = pytest.importorskip("hieramamba.data.synth")
    if not hasattr(synth, "main"):
        pytest.skip("hieramamba.data.synth.main not available yet")
    out = tmp_path / "s"
    assert main(["synth", "--like", "tacos", "--scale", "smoke", "--seed", "1", "--out", str(out)]) == 0
    assert (out / "annotations" / "test.json").is_file()
    assert main(["check", "synth_tacos", f"dataset.root={out}"]) == 0
