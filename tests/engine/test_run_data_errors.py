"""`hieramamba train` on bad synthetic data (issue 12, classes 3, 6, 7 and 9): empty splits and mixed
feature widths stop the run before training with one message naming the file and record; what the
readers dropped, clamped or cut is counted in metrics.json (`data_quirks`, `n_dropped`) and train.log."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from hieramamba.engine.cli import train_main

pytestmark = pytest.mark.slow


@pytest.fixture
def data_root(synth_tacos_smoke, tmp_path) -> Path:
    """A private copy of the smoke synthetic TACoS (each test corrupts its own)."""
    root = tmp_path / "data"
    shutil.copytree(synth_tacos_smoke(0), root)
    return root


def _tacos(root: Path) -> Path:
    return root / "synth" / "synth_tacos"


def _edit(root: Path, split: str, fn) -> None:
    path = _tacos(root) / "annotations" / f"{split}.json"
    data = json.loads(path.read_text())
    path.write_text(json.dumps(fn(data)))


def _train(root: Path, out: Path, *extra: str) -> int:
    return train_main(["dataset=synth_tacos", "scale=smoke", "seed=3", f"data_root={root}", f"out={out}", *extra])


def _assert_stopped_before_training(out: Path) -> None:
    assert not (out / "metrics.json").exists() and not (out / "predictions.json").exists()
    assert not list(out.rglob("*.pth")), "a checkpoint was written: training started"
    log = (out / "train.log").read_text() if (out / "train.log").exists() else ""
    assert " it " not in log and "epoch 1/" not in log


@pytest.mark.parametrize("split,role", [("test", "evaluation"), ("train", "training")])
def test_empty_split_stops_train_before_training(data_root, tmp_path, capsys, split, role):
    _edit(data_root, split, lambda d: {})
    out = tmp_path / "run"
    assert _train(data_root, out) != 0
    err = capsys.readouterr().err
    assert f"{split}.json: the {role} split '{split}' has no annotated query" in err
    _assert_stopped_before_training(out)


def test_mixed_video_widths_stop_train_naming_the_file_and_record(data_root, tmp_path, capsys):
    h5 = _tacos(data_root) / "features" / "tall_c3d_features.hdf5"
    key = next(iter(json.loads((_tacos(data_root) / "annotations" / "train.json").read_text())))
    with h5py.File(h5, "a") as f:
        n, width = f[key].shape
        del f[key]
        f.create_dataset(key, data=np.zeros((n, width + 3), dtype=np.float32))
    out = tmp_path / "run"
    assert _train(data_root, out) != 0
    err = capsys.readouterr().err
    assert f"{h5}, record '{key}': video features are {width + 3}-d but" in err and f"are {width}-d" in err
    assert "RuntimeError" not in err and "stack expects" not in err
    _assert_stopped_before_training(out)


def test_reader_quirks_and_truncations_reach_metrics_json_and_the_log(data_root, tmp_path):
    def corrupt_test(d):
        key = sorted(d)[0]
        s, e = d[key]["timestamps"][0]
        d[key]["timestamps"][0] = [e, s]  # reversed: the reader drops it
        d[key]["sentences"][1] = " ".join([d[key]["sentences"][1]] * 10)  # longer than max_text_len (16)
        return d

    _edit(data_root, "test", corrupt_test)
    out = tmp_path / "run"
    assert _train(data_root, out) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    test = metrics["data_quirks"]["test"]
    assert test["reversed_dropped"] == 1 and test["text_truncated"] >= 1
    assert metrics["n_dropped"] == 1  # the reversed window; the scorer found no zero-length window
    assert "train" in metrics["data_quirks"]
    log = (out / "train.log").read_text()
    assert "data quirks" in log and "reversed_dropped 1" in log and "text_truncated" in log


def test_evaluate_refuses_an_empty_split(data_root, tmp_path, capsys):
    from hieramamba.engine.cli import evaluate_main

    out = tmp_path / "run"
    assert _train(data_root, out) == 0
    _edit(data_root, "val", lambda d: {})
    assert evaluate_main([str(out), "--split", "val"]) != 0
    assert "val.json: the evaluation split 'val' has no annotated query" in capsys.readouterr().err
    assert not (out / "metrics.val.json").exists()
