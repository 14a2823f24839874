"""Each seed backbone (SnAG, MS-Temba, VideoMamba) trains on the smoke synthetic data through the
same CLI, head, losses and data as HieraMamba, selected by its ablation file."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from hieramamba.engine.cli import train_main

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def data_root(synth_tacos_smoke) -> Path:
    return synth_tacos_smoke(0)


@pytest.mark.parametrize("backbone", ["snag", "mstemba", "videomamba"])
def test_seed_backbone_trains_on_smoke_data(backbone, data_root, tmp_path):
    out = tmp_path / backbone
    rc = train_main(["dataset=synth_tacos", "scale=smoke", "seed=0", f"ablation={REPO / 'ablations' / f'{backbone}.yaml'}",
                     f"data_root={data_root}", f"out={out}"])
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["variant"] == backbone and metrics["n_queries"] > 0
    assert metrics["n_params_backbone"] > 0 and metrics["n_params"] > metrics["n_params_backbone"]
    summary = (out / "config.yaml").read_text()
    assert f"name: {backbone}" in summary
    with open(out / "train_curve.csv", newline="") as fh:
        losses = [float(r["loss"]) for r in csv.DictReader(fh)]
    assert losses and all(math.isfinite(v) for v in losses)
    assert min(losses[len(losses) // 2:]) < losses[0], f"{backbone}: the loss did not fall: {losses}"
