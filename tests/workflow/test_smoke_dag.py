"""The real smoke DAG end to end (`--config scale=smoke seeds=1`): the real `hieramamba` CLI
synthesizes, checks, trains, evaluates and benchmarks; every table, plot and the report appear.
Skips with the reason when the CLI cannot run a smoke training yet."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest

from wfhelpers import PROFILE, REPO, configure_workflow, copy_workflow, run_snakemake

PROBE = """
from hieramamba.engine.config import compose_config
import hieramamba.engine.run, hieramamba.data.synth, hieramamba.bench.scaling
compose_config(['dataset=synth_tacos', 'scale=smoke', 'ablation=ablations/full.yaml', 'out=/tmp/probe'])
"""


def _cli_usable() -> str | None:
    if shutil.which("hieramamba") is None:
        return "the `hieramamba` command is not on PATH (pip install -e .)"
    probe = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, cwd=REPO)
    if probe.returncode != 0:
        return "`hieramamba train` is not usable yet: " + (probe.stderr.strip().splitlines() or ["?"])[-1]
    return None


@pytest.mark.slow
def test_smoke_dag_end_to_end(tmp_path):
    reason = _cli_usable()
    if reason:
        pytest.skip(reason)
    workdir = copy_workflow(tmp_path / "wf")
    # every table and variant on the three synthetic datasets (the default DAG holds a subset)
    configure_workflow(workdir, ["synth_tacos", "synth_ego4d_nlq", "synth_mad"], seeds=1)
    started = time.time()
    result = run_snakemake(workdir, "--cores", "2", "--config", "scale=smoke", "seeds=1", env=dict(os.environ),
                           profile=PROFILE, timeout=1800)
    wall = time.time() - started
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
    tables = workdir / "results" / "tables"
    plots = workdir / "results" / "plots"
    for dataset in ("synth_tacos", "synth_ego4d_nlq", "synth_mad"):
        for ext in ("html", "csv", "md", "tex"):
            assert (tables / f"main_{dataset}.{ext}").is_file()
            assert (tables / f"convergence_{dataset}.{ext}").is_file()
        for ext in ("png", "pdf"):
            assert (plots / f"recall_by_length_{dataset}.{ext}").is_file()
            assert (plots / f"training_curves_{dataset}.{ext}").is_file()
    for table in ("ablation_synth_tacos", "stride_synth_tacos", "backbones_synth_tacos", "scaling_exponents"):
        for ext in ("html", "csv", "md", "tex"):
            assert (tables / f"{table}.{ext}").is_file(), table
    for plot in ("ablation_synth_tacos", "scaling"):
        assert (plots / f"{plot}.png").is_file() and (plots / f"{plot}.pdf").is_file(), plot
    # the report of the same config (another one stops: results/covers.json holds the smoke run's)
    report = run_snakemake(workdir, "--report", "results/report.html", "--config", "scale=smoke", "seeds=1",
                           env=dict(os.environ))
    assert report.returncode == 0, report.stderr[-3000:]
    assert (workdir / "results" / "report.html").stat().st_size > 10_000
    print(f"smoke DAG wall time: {wall:.0f} s")
