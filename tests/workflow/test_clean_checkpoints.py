"""`make clean-checkpoints` (workflow/scripts/clean_checkpoints.py): checkpoints of finished runs
go, those of unfinished runs stay (they resume), and --dry-run removes nothing."""

from __future__ import annotations

import subprocess
import sys

from wfhelpers import SCRIPTS


def _layout(root):
    """Two finished runs (metrics.json) and one unfinished, each with a 1 MiB checkpoint."""
    for variant, seed, finished in (("full", 0, True), ("no_gate", 1, True), ("no_gate", 2, False)):
        ckpt = root / "checkpoints" / "synth_tacos" / variant / f"seed{seed}"
        ckpt.mkdir(parents=True)
        (ckpt / "last.pth").write_bytes(b"\0" * 2**20)
        run = root / "results" / "runs" / "synth_tacos" / variant / f"seed{seed}"
        run.mkdir(parents=True)
        (run / "train_curve.csv").write_text("epoch,iteration,loss\n")
        if finished:
            (run / "metrics.json").write_text("{}")
    (root / "checkpoints" / "README").write_text("not a run folder\n")


def _clean(root, *args):
    return subprocess.run([sys.executable, str(SCRIPTS / "clean_checkpoints.py"), *args], cwd=root,
                          capture_output=True, text=True, check=True).stdout


def test_finished_runs_lose_their_checkpoints_unfinished_keep_them(tmp_path):
    _layout(tmp_path)
    ckpts = tmp_path / "checkpoints" / "synth_tacos"
    out = _clean(tmp_path, "--dry-run")
    assert "would remove 2 finished runs' checkpoints, 2.0 MiB; kept 1 unfinished" in out
    assert (ckpts / "full" / "seed0" / "last.pth").is_file(), "--dry-run removes nothing"
    out = _clean(tmp_path)
    assert "removed 2 finished runs' checkpoints, 2.0 MiB; kept 1 unfinished" in out
    assert not (ckpts / "full" / "seed0").exists() and not (ckpts / "no_gate" / "seed1").exists()
    assert (ckpts / "no_gate" / "seed2" / "last.pth").is_file(), "the unfinished run can still resume"
    assert (tmp_path / "checkpoints" / "README").is_file()
    assert (tmp_path / "results" / "runs" / "synth_tacos" / "full" / "seed0" / "metrics.json").is_file()
    assert "removed 0 finished runs' checkpoints, 0.0 MiB; kept 1 unfinished" in _clean(tmp_path)


def test_no_checkpoint_folder(tmp_path):
    assert "nothing to do" in _clean(tmp_path)
