"""Fixtures of the engine tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def synth_tacos_smoke(tmp_path_factory):
    """``root(seed)``: a folder holding ``synth/synth_tacos``, the smoke TACoS-like synthetic data of
    that seed, written once per session through the CLI (``data_root=`` of the dataset config)."""
    roots: dict[int, Path] = {}

    def root(seed: int = 0) -> Path:
        if seed not in roots:
            folder = tmp_path_factory.mktemp(f"synth_tacos_seed{seed}")
            res = subprocess.run([sys.executable, "-m", "hieramamba", "data", "synth", "--like", "tacos", "--scale",
                                  "smoke", "--seed", str(seed), "--out", str(folder / "synth" / "synth_tacos")],
                                 capture_output=True, text=True)
            assert res.returncode == 0, res.stderr
            roots[seed] = folder
        return roots[seed]

    return root


@pytest.fixture(scope="session")
def synth_tacos_run(synth_tacos_smoke, tmp_path_factory) -> tuple[Path, Path]:
    """``(data_root, run_dir)``: one smoke-scale training run on the seed-0 synthetic TACoS data
    (its predictions.json and EMA checkpoint), trained once per session through the CLI handler."""
    from hieramamba.engine.cli import train_main

    data_root = synth_tacos_smoke(0)
    run_dir = tmp_path_factory.mktemp("predict_runs") / "smoke"
    assert train_main(["dataset=synth_tacos", "scale=smoke", "seed=3", f"data_root={data_root}", f"out={run_dir}"]) == 0
    return data_root, run_dir
