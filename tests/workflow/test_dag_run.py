"""The DAG executed with a fake `hieramamba` (tests/workflow/fake_hieramamba.py) that honours the
CLI contract in milliseconds: every table, plot and the report are produced; a finished DAG has
nothing left to do; editing an ablation file reruns exactly its runs."""

from __future__ import annotations

import time

import pytest

from wfhelpers import configure_workflow as _configure
from wfhelpers import copy_workflow, fake_cli_env, job_counts
from wfhelpers import run_snakemake as _run

@pytest.mark.slow
def test_fake_cli_dag_produces_every_table_plot_and_report(tmp_path):
    workdir = copy_workflow(tmp_path / "wf", isolate_conf=True)
    _configure(workdir, ["synth_tacos", "synth_mad"], seeds=1)
    env = fake_cli_env(tmp_path, FAKE_CALLS=str(tmp_path / "calls.log"))
    result = _run(workdir, "--cores", "2", env=env)
    assert result.returncode == 0, result.stderr[-4000:]
    tables = {p.name for p in (workdir / "results" / "tables").iterdir()}
    for stem in ("main_synth_tacos", "main_synth_mad", "ablation_synth_tacos", "stride_synth_tacos",
                 "backbones_synth_tacos", "scaling_exponents", "convergence_synth_tacos", "convergence_synth_mad"):
        assert {f"{stem}.html", f"{stem}.csv", f"{stem}.md", f"{stem}.tex"} <= tables, stem
    plots = {p.name for p in (workdir / "results" / "plots").iterdir()}
    for stem in ("recall_by_length_synth_tacos", "recall_by_length_synth_mad", "training_curves_synth_tacos",
                 "training_curves_synth_mad", "ablation_synth_tacos", "scaling"):
        assert {f"{stem}.png", f"{stem}.pdf"} <= plots, stem
    assert "R50@0.5" in (workdir / "results" / "tables" / "main_synth_mad.csv").read_text(), "MAD layout"
    # checkpoints live outside the run folders, logs under logs/
    assert (workdir / "checkpoints" / "synth_tacos" / "full" / "seed0" / "last.ckpt").is_file()
    assert (workdir / "logs" / "train" / "synth_tacos" / "full" / "seed0.log").is_file()

    report = _run(workdir, "--report", "results/report.html", env=env)
    assert report.returncode == 0, report.stderr[-4000:]
    html = (workdir / "results" / "report.html").read_text(errors="replace")
    for category in ("Main results", "Ablations", "Anchor stride sweep", "Backbone comparison", "Scaling"):
        assert category in html, category

    again = _run(workdir, "-n", "--cores", "2", env=env)
    assert "Nothing to be done" in again.stdout + again.stderr

    # editing one ablation file reruns that variant's runs (and what reads them), nothing else
    time.sleep(1.1)
    ablation = workdir / "ablations" / "no_gate.yaml"
    ablation.write_text(ablation.read_text().replace("unconditional", "plain"))
    counts = job_counts(_run(workdir, "-n", "--cores", "2", env=env).stdout)
    assert counts["train"] == counts["evaluate_run"] == 1
    # ... and that run starts over (its old folder and checkpoint are of another config)
    calls = tmp_path / "calls.log"
    before = [line for line in calls.read_text().splitlines() if line.startswith("RUN train")]
    rerun = _run(workdir, "--cores", "2", "results/runs/synth_tacos/no_gate/seed0/metrics.json", env=env)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    after = [line for line in calls.read_text().splitlines() if line.startswith("RUN train")]
    assert after[len(before):] == ["RUN train synth_tacos no_gate 0 resumed=False"]

    # a lost metrics.json is re-scored from the run's checkpoint by its evaluation job, not retrained
    (workdir / "results" / "runs" / "synth_tacos" / "full" / "seed0" / "metrics.json").unlink()
    counts = job_counts(_run(workdir, "-n", "--cores", "2", env=env).stdout)
    assert counts["evaluate_run"] == 1 and "train" not in counts
    before = calls.read_text().splitlines()
    rescored = _run(workdir, "--cores", "2", env=env)
    assert rescored.returncode == 0, rescored.stderr[-3000:]
    new = [line for line in calls.read_text().splitlines()[len(before):] if line.startswith("RUN ")]
    assert new == ["RUN evaluate synth_tacos full 0"]
