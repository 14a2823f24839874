"""SIGKILL a training run mid-epoch, rerun the same command: it resumes from the last epoch's
checkpoint and ends with the uninterrupted run's metrics.json (timing fields aside), weights and
training curve, bit for bit (CPU)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from hieramamba.engine.cli import train_main
from hieramamba.engine.run import TIMING_FIELDS

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data_root(synth_tacos_smoke):
    return synth_tacos_smoke(0)


def args(data_root, out, *extra):
    return ["dataset=synth_tacos", "scale=smoke", "seed=3", f"data_root={data_root}", f"out={out}", *extra]


def without_timing(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k not in TIMING_FIELDS}


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(data_root, tmp_path):
    extra = ("train.max_iters_per_epoch=8", "train.epochs=2")
    full = tmp_path / "full"
    assert train_main(args(data_root, full, *extra)) == 0

    killed = tmp_path / "killed"
    cmd = [sys.executable, "-m", "hieramamba", "train", *args(data_root, killed, *extra)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    log = killed / "train.log"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if log.is_file() and "epoch 2 it 10 " in log.read_text():  # 2nd iteration of epoch 2
            break
        time.sleep(0.02)
    assert proc.poll() is None, f"run ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (killed / "metrics.json").exists()
    assert torch.load(killed / "checkpoints" / "last.pth", weights_only=True)["epoch"] == 1

    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "resumed from" in (killed / "train.log").read_text()
    a = json.loads((full / "metrics.json").read_text())
    b = json.loads((killed / "metrics.json").read_text())
    assert without_timing(a) == without_timing(b)
    sa = torch.load(full / "checkpoints" / "last.pth", weights_only=True)
    sb = torch.load(killed / "checkpoints" / "last.pth", weights_only=True)
    assert all(torch.equal(sa["ema"][k], sb["ema"][k]) for k in sa["ema"])
    assert (full / "train_curve.csv").read_text() == (killed / "train_curve.csv").read_text()
