"""Unreadable or foreign checkpoints (empty, truncated, not a torch file, refused by weights_only,
lacking keys, weights of another model) are one CheckpointError naming the file, why, and what to
do, in `train` (resume), `evaluate` and `convert-checkpoint`; the temporary file a kill leaves
during a checkpoint write is removed (and logged) when the run starts again (issue 12, class 5)."""

from __future__ import annotations

import shutil
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hieramamba.engine.checkpoint import RESUME_KEYS, load_checkpoint
from hieramamba.engine.cli import convert_main, evaluate_main, train_main
from hieramamba.errors import CheckpointError

REPO = Path(__file__).resolve().parents[2]


class NotAllowed:
    """A class weights_only=True must refuse to unpickle (what a malicious pickle smuggles in)."""


def _broken(kind: str, path: Path, good: Path | None = None) -> Path:
    """Write a checkpoint file broken in the way `kind` names."""
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif kind == "text":
        path.write_text("not a checkpoint\n")
    elif kind == "pickle":
        torch.save({"model": NotAllowed()}, path)
    elif kind == "tensor":
        torch.save(torch.zeros(3), path)
    elif kind == "foreign":
        torch.save({"state_dict": {"encoder.weight": torch.zeros(2, 2)}, "step": 7}, path)
    return path


EXPECTED = {"empty": "is empty", "truncated": "cannot be read as a torch checkpoint",
            "text": "cannot be read as a torch checkpoint", "pickle": "NotAllowed object, which torch.load(weights_only=True) refuses",
            "tensor": "holds a Tensor", "foreign": "lacks the key(s)"}


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_load_checkpoint_names_file_reason_and_remedy(tmp_path, kind):
    good = tmp_path / "good.pth"
    torch.save({k: 0 for k in RESUME_KEYS}, good)
    path = _broken(kind, tmp_path / "last.pth", good)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path, required=RESUME_KEYS, remedy="Delete it to start over")
    msg = str(err.value)
    assert msg.startswith(f"{path}: ") and EXPECTED[kind] in msg and msg.endswith("Delete it to start over"), msg
    assert "\n" not in msg
    assert load_checkpoint(good, required=RESUME_KEYS)["epoch"] == 0


# ---------------------------------------------------------------- through the commands (smoke run)

@pytest.fixture(scope="module")
def data_root(synth_tacos_smoke) -> Path:
    return synth_tacos_smoke(0)


def args(data_root: Path, out: Path, *extra: str) -> list[str]:
    return ["dataset=synth_tacos", "scale=smoke", "seed=3", f"data_root={data_root}", f"out={out}", *extra]


@pytest.fixture(scope="module")
def finished_run(data_root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ckpt_runs") / "done"
    assert train_main(args(data_root, out)) == 0
    return out


@pytest.fixture
def run_copy(finished_run, tmp_path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    return out


LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (INFO|WARNING) ")


def _error_lines(stderr: str) -> list[str]:
    """stderr less the run's progress log lines (the train log's screen copy): the error itself."""
    assert "Traceback" not in stderr, stderr
    return [line for line in stderr.strip().splitlines() if not LOG_LINE.match(line)]


def _cli(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hieramamba", *argv], capture_output=True, text=True, cwd=REPO,
                          timeout=300)


@pytest.mark.slow
def test_resume_from_a_truncated_checkpoint_is_one_line_naming_file_and_remedy(data_root, run_copy):
    last = run_copy / "checkpoints" / "last.pth"
    last.write_bytes(last.read_bytes()[:4096])  # what a full disk or a non-atomic copy leaves
    res = _cli("train", *args(data_root, run_copy))
    assert res.returncode != 0
    lines = _error_lines(res.stderr)
    assert len(lines) == 1, res.stderr
    assert str(last) in lines[0] and "cannot be read" in lines[0] and "Delete it to train this run from scratch" in lines[0]
    log = (run_copy / "train.log").read_text()
    assert "Traceback" in log and "CheckpointError" in log  # the traceback went to the log file


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["empty", "pickle", "foreign"])
def test_resume_from_an_unusable_checkpoint_is_a_checkpoint_error(data_root, run_copy, kind, capsys):
    last = _broken(kind, run_copy / "checkpoints" / "last.pth")
    assert train_main(args(data_root, run_copy)) == 2
    err = capsys.readouterr().err
    assert f"{last}: " in err and EXPECTED[kind] in err and "Delete it" in err and "Traceback" not in err, err


@pytest.mark.slow
def test_resume_with_weights_of_another_model_names_the_file(data_root, run_copy, capsys):
    last = run_copy / "checkpoints" / "last.pth"
    state = torch.load(last, weights_only=True)
    state["model"] = {k: v[..., :1] if v.ndim else v for k, v in state["model"].items()}  # wrong shapes
    torch.save(state, last)
    assert train_main(args(data_root, run_copy)) == 2
    err = capsys.readouterr().err
    assert f"{last}: its 'model' states do not fit the model" in err and "Delete it" in err, err


@pytest.mark.slow
def test_evaluate_an_unusable_checkpoint_is_one_line(run_copy, tmp_path):
    refused = _broken("pickle", tmp_path / "evil.pth")
    res = _cli("evaluate", str(run_copy), "--checkpoint", str(refused))
    assert res.returncode != 0 and len(_error_lines(res.stderr)) == 1, res.stderr
    assert str(refused) in res.stderr and "NotAllowed object" in res.stderr and "refuses to unpickle" in res.stderr
    assert "--checkpoint" in res.stderr
    assert not (run_copy / "metrics.ckpt.json").exists()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["empty", "truncated", "foreign"])
def test_evaluate_the_runs_own_broken_checkpoint(run_copy, kind, capsys):
    last = run_copy / "checkpoints" / "last.pth"
    good = run_copy / "good.pth"
    shutil.copy(last, good)
    _broken(kind, last, good)
    before = (run_copy / "metrics.json").read_text()
    assert evaluate_main([str(run_copy)]) == 2
    err = capsys.readouterr().err
    expected = "holds neither 'ema' nor 'model'" if kind == "foreign" else EXPECTED[kind]
    assert f"{last}: " in err and expected in err and "Train the run again" in err, err
    assert (run_copy / "metrics.json").read_text() == before


@pytest.mark.slow
def test_convert_an_unusable_checkpoint_is_one_line(tmp_path, capsys):
    widths = ("model.in_dim=32", "model.text.in_dim=32")
    for kind in ("empty", "pickle"):
        src = _broken(kind, tmp_path / f"{kind}.pth")
        assert convert_main([str(src), str(tmp_path / "out.pth"), "dataset=synth_tacos", "scale=smoke", *widths]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"{src}: " in err and EXPECTED[kind] in err and "authors' checkpoint" in err, err
    assert not (tmp_path / "out.pth").exists()


@pytest.mark.slow
def test_stale_temp_files_of_a_killed_checkpoint_write_are_removed_and_logged(data_root, run_copy):
    stale = run_copy / "checkpoints" / ".last.pth.q8z_3kd0.tmp"
    stale.write_bytes(b"half a checkpoint")
    stale_metrics = run_copy / ".metrics.json.abcd1234.tmp"
    stale_metrics.write_text("{")
    assert train_main(args(data_root, run_copy)) == 0  # resumes at the end: evaluates only
    assert not stale.exists() and not stale_metrics.exists()
    log = (run_copy / "train.log").read_text()
    assert f"removed {stale}" in log and f"removed {stale_metrics}" in log
