"""`hieramamba gpu-check`: its CPU mode end to end (tiny sizes), and the report's arithmetic and
install logic on hand-made inputs. The GPU figures themselves need a GPU (`make gpu-check`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hieramamba.bench import gpu_check, gpu_report

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cpu_check(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "hieramamba", "gpu-check", "--device", "cpu", "--out-dir", str(out),
           "--wheels", str(out / "no-wheels"), "--pytest-paths", "tests/models/test_selective_scan.py",
           "--datasets", "tacos"]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
    return out, result


@pytest.mark.slow
def test_cpu_mode_runs_every_step(cpu_check):
    out, result = cpu_check
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((out / "gpu_check.json").read_text())
    steps = {s["name"]: s for s in report["steps"]}
    ran = {"pytest", "scaling_hieramamba_torch", "scaling_global_attention", "throughput_tacos",
           "train_eval_synth", "train_eval_train", "train_eval_evaluate"}
    assert ran <= set(steps)
    for name in ran:
        assert steps[name]["status"] == "ok" and steps[name]["command"], steps[name]
    # what cannot run on CPU is recorded as skipped with its reason, never as passed
    parity = steps["parity"]
    assert parity["status"] in ("ok", "skipped") and (parity["status"] == "ok" or parity["reason"])
    assert "train.device=cpu" in steps["train_eval_train"]["command"]
    fig = report["figures"]
    assert fig["pytest"].get("skipped", 0) >= 1 and not fig["pytest"].get("failed")  # the cuda tests skip here
    for series in ("hieramamba_torch", "global_attention"):
        (row,) = fig["scaling"][series]
        assert row["L"] == 128 and row["fwd_ms"] > 0 and row["fwd_bwd_ms"] > 0 and not row["error"]
    assert fig["scaling_derived"]["assessed"] is False
    tacos = fig["throughput"]["tacos"]
    assert tacos["tiny"] and tacos["iterations_per_s"] > 0 and tacos["timed_iterations"] >= 1
    assert tacos["samples_per_epoch"] == 2475 and tacos["projected_run_h"] > 0
    assert set(fig["train_eval"]["metrics"]) == {"R1@0.3", "R1@0.5", "R5@0.3", "R5@0.5"}
    md = (out / "gpu_check.md").read_text()
    assert "No GPU figure here is measured" in md and "| scaling_hieramamba_torch | ok |" in md
    assert report["env"]["torch"] and report["env"]["card"] is None


def _scaling_json(path: Path, points: list[tuple[int, float | None, str | None]]) -> None:
    data = {"backbone": {"points": [{"spec": {"L": L, "d_model": 384}, "fwd_s": t, "fwd_bwd_s": None if t is None else 3 * t,
                                     "error": err} for L, t, err in points]}}
    path.write_text(json.dumps(data))


def test_summary_ratios_and_out_of_memory(tmp_path):
    _scaling_json(tmp_path / "scaling_hieramamba_torch.json", [(2048, 0.010, None), (16384, 0.080, None)])
    _scaling_json(tmp_path / "scaling_hieramamba_mamba_ssm.json", [(2048, 0.002, None), (16384, 0.010, None)])
    _scaling_json(tmp_path / "scaling_global_attention.json",
                  [(2048, 0.004, None), (16384, 0.200, None), (32768, None, "OutOfMemoryError: CUDA out of memory")])
    fig = gpu_report.summarise(tmp_path, [], "cuda")
    derived = fig["scaling_derived"]
    assert derived["assessed"] is True
    assert [r["fwd"] for r in derived["mamba_ssm_over_torch"]] == pytest.approx([5.0, 8.0])
    assert derived["hieramamba_over_attention_at_16k"]["fwd"] == pytest.approx(20.0)
    assert derived["hieramamba_over_attention_at_16k"]["fwd_bwd"] == pytest.approx(20.0)
    oom = fig["scaling"]["global_attention"][-1]
    assert oom["oom"] and oom["fwd_ms"] is None
    assert "out of memory" in gpu_report.markdown({"device_mode": "cuda", "env": {}, "steps": [],
                                                   "total_wall_s": 0, "figures": fig})


def test_pytest_counts_from_the_summary_line():
    steps = [{"name": "pytest", "tail": ["", "3 passed, 12 skipped, 400 deselected in 9.1s"]}]
    assert gpu_report._pytest_counts(steps) == {"passed": 3, "skipped": 12, "deselected": 400}


def test_install_without_wheels_fails_naming_make_gpu_wheels(tmp_path, monkeypatch):
    monkeypatch.setitem(gpu_check.NEEDED, "no_such_module_hm", "no-such-dist")
    (step,) = gpu_check.install_step(tmp_path / "absent", 10, tmp_path, with_mamba_ssm=False)
    assert step["status"] == "failed" and "no_such_module_hm" in step["reason"] and "make gpu-wheels" in step["reason"]


def test_install_runs_pip_no_index_for_the_missing(tmp_path, monkeypatch):
    monkeypatch.setitem(gpu_check.NEEDED, "no_such_module_hm", "no-such-dist")
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    calls = []
    monkeypatch.setattr(gpu_check, "run_step", lambda name, cmd, *a, **k: calls.append(cmd) or {"name": name, "status": "ok"})
    gpu_check.install_step(wheels, 10, tmp_path, with_mamba_ssm=False)
    (cmd,) = calls
    assert cmd[-4:] == ["--no-index", "--find-links", str(wheels), "no-such-dist"]
