"""The plateau table (workflow/scripts/convergence.py) on planted training curves: a flat noisy
curve is `flat` with an interval around 0, a curve still falling is resolved as `falling`, the
pooled row is narrower than each run's, and a missing curve is one error naming the file."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pandas as pd
import pytest

from wfhelpers import SCRIPTS, run_script

sys.path.insert(0, str(SCRIPTS))
import convergence  # noqa: E402  (workflow/scripts/convergence.py)

HEADER = "epoch,iteration,lr,loss,cls,reg,acc,spc,loss_norm,num_pos,grad_norm\n"


def _run(root, variant, seed, loss, dataset="synth_tacos"):
    run = root / variant / f"seed{seed}"
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps({"dataset": dataset, "variant": variant, "seed": seed}))
    rows = [f"1,{i + 1},0.001,{v:.6f},{v:.6f},0,0,0,10,4,1.0" for i, v in enumerate(loss)]
    (run / "train_curve.csv").write_text(HEADER + "\n".join(rows) + "\n")
    return str(run / "metrics.json")


def _noisy(level_fn, n=600, sd=0.08, seed=0):
    rng = np.random.default_rng(seed)
    return np.array([level_fn(i) for i in range(n)]) + rng.normal(0.0, sd, n)


def test_window_change_measures_the_planted_slope():
    # a straight line from 1.0 to 0.9 over the last fifth (120 of 600 points), no noise
    loss = np.concatenate([np.full(480, 1.0), np.linspace(1.0, 0.9, 121)[1:]])
    change = convergence.window_change(loss)
    assert change["window"] == 120
    mean = loss[-120:].mean()  # slope -0.1 / 120 per iteration over 120 iterations: -0.1 in all
    assert change["change_pct"] == pytest.approx(-0.1 / mean * 100, rel=1e-9)
    assert change["lo_pct"] == pytest.approx(change["hi_pct"])  # no noise: a zero-width interval


def test_flat_falling_and_pooled_verdicts(tmp_path):
    metrics = []
    for seed in range(3):  # flat at 0.5 with noise of the size measured (sd 0.08 per iteration)
        metrics.append(_run(tmp_path, "full", seed, _noisy(lambda i: 0.5, seed=seed)))
    for seed in range(3):  # falling 20 % over the last fifth (0.5 -> 0.4 from iteration 480 on)
        metrics.append(_run(tmp_path, "constant_lr", seed,
                            _noisy(lambda i: 0.5 - 0.1 * max(0, i - 480) / 120, seed=10 + seed)))
    table = convergence.build(metrics, "synth_tacos", ["full"])
    assert list(table["variant"]) == ["full"] * 4 + ["constant_lr"] * 4  # the given order first
    pooled = table[table["seed"] == convergence.POOLED].set_index("variant")
    runs = table[table["seed"] != convergence.POOLED]
    assert pooled.loc["full", "verdict"] == "flat"
    assert pooled.loc["full", "lo_pct"] < 0 < pooled.loc["full", "hi_pct"]
    assert pooled.loc["constant_lr", "verdict"] == "falling"
    assert pooled.loc["constant_lr", "hi_pct"] < 0
    assert -30 < pooled.loc["constant_lr", "change_pct"] < -15  # planted: -0.1 / 0.45 = -22 %
    # pooling three runs narrows the interval by about sqrt(3)
    run_width = (runs["hi_pct"] - runs["lo_pct"])[runs["variant"] == "full"].mean()
    pooled_width = pooled.loc["full", "hi_pct"] - pooled.loc["full", "lo_pct"]
    assert pooled_width < run_width / 1.5
    assert pooled.loc["full", "iterations"] == 1800


def test_a_single_run_has_no_pooled_row_and_other_datasets_are_left_out(tmp_path):
    one = _run(tmp_path, "full", 0, _noisy(lambda i: 0.5))
    other = _run(tmp_path / "mad", "full", 0, _noisy(lambda i: 0.5), dataset="synth_mad")
    table = convergence.build([one, other], "synth_tacos", [])
    assert list(table["seed"]) == ["0"]


def test_the_script_writes_every_format_and_counts_the_verdicts(tmp_path):
    zigzag = 0.5 + 0.05 * (-1.0) ** np.arange(600)  # flat: no trend, an interval around 0
    metrics = [_run(tmp_path, "full", s, zigzag) for s in range(2)]
    out = tmp_path / "convergence_synth_tacos"
    run_script("convergence.py", "--dataset", "synth_tacos", "--metrics", *metrics, "--variants", "full",
               "--out", str(out))
    md = out.with_suffix(".md").read_text()
    assert "Variants (pooled over seeds): 1 flat." in md
    assert "| full | pooled | 1,200 | 240 |" in md
    numbers = pd.read_csv(out.with_suffix(".csv"))
    assert set(numbers["verdict"]) == {"flat"}
    assert out.with_suffix(".html").is_file() and out.with_suffix(".tex").is_file()


def test_a_run_without_its_curve_is_one_error_naming_the_file(tmp_path):
    path = _run(tmp_path, "full", 0, _noisy(lambda i: 0.5))
    curve = tmp_path / "full" / "seed0" / "train_curve.csv"
    curve.unlink()
    with pytest.raises(FileNotFoundError, match=str(curve)):
        convergence.build([path], "synth_tacos", [])
    curve.write_text("epoch,iteration\n1,1\n")
    with pytest.raises(ValueError, match="no 'loss' column"):
        convergence.build([path], "synth_tacos", [])


def test_a_curve_too_short_for_a_window_gives_no_verdict():
    change = convergence.window_change(np.array([1.0, 0.9]))
    assert math.isnan(change["change_pct"])
    assert convergence.verdict(change["lo_pct"], change["hi_pct"]) == "—"
