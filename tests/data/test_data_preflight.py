"""Empty splits and mixed feature widths: errors in `data check` and before a run (issue 12,
classes 3 and 6), naming files and records."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import yaml
from readers_fixtures import snag_config, snag_dir, tacos_config, tacos_dir  # noqa: F401

from hieramamba.data.check import check_dataset
from hieramamba.data.cli import main as data_main
from hieramamba.data.dataset import GroundingDataset
from hieramamba.errors import DataError

H5 = "features/tall_c3d_features.hdf5"


def _write_split(root, split: str, content: dict) -> None:
    (root / "annotations" / f"{split}.json").write_text(json.dumps(content))


def _cfg_file(root, cfg: dict) -> str:
    path = root / "dataset.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


@pytest.mark.parametrize("split,role", [("test", "evaluation"), ("train", "training")])
def test_empty_split_fails_data_check_and_the_run_preflight(tacos_dir, capsys, split, role):
    _write_split(tacos_dir, split, {})
    cfg = tacos_config(tacos_dir)
    ds = GroundingDataset.from_config(cfg)
    report = check_dataset(ds, check_features=False, check_text=False)
    assert not report["ok"] and report["errors"]["counts"] == {"empty_split": 1}
    item = report["errors"]["items"]["empty_split"][0]
    assert item["path"].endswith(f"{split}.json") and f"the {role} split {split!r} has no annotated query" in item["problem"]
    assert data_main(["check", _cfg_file(tacos_dir, cfg), "--no-features"]) == 1
    assert f"{split}.json: the {role} split" in capsys.readouterr().err
    from hieramamba.data.preflight import require_usable  # here: the checks above run on code without it

    with pytest.raises(DataError, match=f"{split}.json: the {role} split '{split}' has no annotated query"):
        require_usable(ds, "train", "test")


def test_a_split_emptied_by_the_reader_says_what_was_dropped(tacos_dir):
    _write_split(tacos_dir, "test", {"s31-d28.avi": {"timestamps": [[400, 30], [50, 50]], "sentences": ["a", "b"], "fps": 29.4, "num_frames": 1200}})
    ds = GroundingDataset.from_config(tacos_config(tacos_dir))
    assert not check_dataset(ds, check_features=False, check_text=False)["ok"]
    from hieramamba.data.preflight import require_usable

    with pytest.raises(DataError) as err:
        require_usable(ds, "train", "test")
    assert "reversed_dropped 1" in str(err.value) and "zero_length_dropped 1" in str(err.value)
    assert "video_without_queries 1" in str(err.value)


def test_val_split_may_be_empty_when_it_is_neither_trained_nor_evaluated(tacos_dir):
    _write_split(tacos_dir, "val", {})
    ds = GroundingDataset.from_config(tacos_config(tacos_dir))
    assert check_dataset(ds, check_features=False, check_text=False)["ok"]
    from hieramamba.data.preflight import require_usable

    require_usable(ds, "train", "test")


def _rewrite_h5_width(root, key: str, width: int) -> None:
    with h5py.File(root / H5, "a") as f:
        n = f[key].shape[0]
        del f[key]
        f.create_dataset(key, data=np.zeros((n, width), dtype=np.float32))


def _the_one_check_error(cfg: dict, width_key: str, kind: str):
    """(dataset, the report's only error item) with features.<width_key> null."""
    cfg["features"][width_key] = None
    ds = GroundingDataset.from_config(cfg)
    report = check_dataset(ds)
    assert report["errors"]["counts"] == {kind: 1}
    return ds, report["errors"]["items"][kind][0]


def test_mixed_video_widths_name_the_file_and_record(tacos_dir):
    _rewrite_h5_width(tacos_dir, "s27-d50.avi", 7)
    ds, item = _the_one_check_error(tacos_config(tacos_dir), "video_dim", "inconsistent_video_dim")
    assert item["path"] == str(tacos_dir / H5) and item["record"] == "s27-d50.avi"
    assert "are 7-d but 3 of 4 are 16-d" in item["problem"]
    from hieramamba.data.preflight import require_usable

    with pytest.raises(DataError, match=r"tall_c3d_features\.hdf5, record 's27-d50\.avi': video features are 7-d but 2 of 3 are 16-d"):
        require_usable(ds, "train", "test")  # the splits the run uses: 2 train videos + 1 test video


def test_mixed_text_widths_name_the_file_and_record(snag_dir):
    np.save(snag_dir / "text" / "vidA_s2.npy", np.zeros((3, 9), dtype=np.float32))
    ds, item = _the_one_check_error(snag_config(snag_dir), "text_dim", "inconsistent_text_dim")
    assert item["path"].endswith("vidA_s2.npy") and item["record"] == "vidA_s2"
    from hieramamba.data.preflight import require_usable

    with pytest.raises(DataError, match=r"vidA_s2\.npy, record 'vidA_s2': text features are 9-d"):
        require_usable(ds, "train", "test")


def test_width_outliers_majority_ties_and_listing():
    from hieramamba.data.preflight import width_outliers

    rows = [("a", "1", 4), ("b", "2", 5), ("c", "3", 5), ("d", "4", 4), ("e", "5", 6)]
    out = width_outliers(rows, "k", "things")
    assert [p.record for p in out] == ["2", "3", "5"]  # tie 4 vs 5: the width seen first wins
    assert width_outliers(rows[:1], "k", "things") == [] and width_outliers([], "k", "things") == []


def test_raise_first_names_up_to_five_records_and_counts_the_rest():
    from hieramamba.data.preflight import raise_first, width_outliers

    rows = [(f"f{i}.npy", f"q{i}", 4) for i in range(10)] + [(f"g{i}.npy", f"r{i}", 8) for i in range(7)]
    with pytest.raises(DataError) as err:
        raise_first(width_outliers(rows, "k", "text features"))
    msg = str(err.value)
    assert msg.startswith("g0.npy, record 'r0': text features are 8-d but 10 of 17 are 4-d (10 x 4-d, 7 x 8-d)")
    assert "also 'r1' (g1.npy), 'r2' (g2.npy), 'r3' (g3.npy), 'r4' (g4.npy) and 2 more" in msg
    raise_first([])  # nothing to raise
