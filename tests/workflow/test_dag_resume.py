"""A DAG killed midway (SIGKILL) and rerun (after `--unlock`) redoes only the unfinished run, which
resumes from the checkpoint the kill left behind; finished runs are not touched. Uses the fake
`hieramamba` (tests/workflow/fake_hieramamba.py) and the default workflow profile."""

import os
import signal
import subprocess
import time

import pytest

from wfhelpers import PROFILE, copy_workflow, fake_cli_env
from wfhelpers import configure_workflow as _configure
from wfhelpers import run_snakemake as _run
from wfhelpers import snakemake_cmd as _snakemake_cmd


@pytest.mark.slow
def test_killed_dag_reruns_only_unfinished_runs_and_resumes(tmp_path):
    workdir = copy_workflow(tmp_path / "wf", isolate_conf=True)
    _configure(workdir, ["synth_tacos"], seeds=1, tables=["stride"], bench=False)
    calls = tmp_path / "calls.log"
    env = fake_cli_env(tmp_path, FAKE_CALLS=str(calls), FAKE_SLOW_VARIANTS="stride_4",
                       FAKE_SLOW_SECONDS="120")
    run_dir = workdir / "results" / "runs" / "synth_tacos"
    proc = subprocess.Popen(_snakemake_cmd(workdir, "--cores", "2", profile=PROFILE), env=env, cwd=workdir,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            text = calls.read_text() if calls.exists() else ""
            finished = all((run_dir / f"{v}/seed0/metrics.json").exists() for v in ("full", "stride_3"))
            if "RUN train synth_tacos stride_4" in text and finished:
                # let Snakemake record the finished jobs (a kill in between leaves them "incomplete")
                time.sleep(3)
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"the DAG did not reach the slow run:\n{calls.read_text() if calls.exists() else ''}")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the whole DAG, its jobs included
        proc.wait()
    done = run_dir / "full/seed0/metrics.json"
    done_mtime = done.stat().st_mtime_ns
    assert not (run_dir / "stride_4/seed0/metrics.json").exists(), "a killed run leaves no metrics.json"
    assert (workdir / "checkpoints/synth_tacos/stride_4/seed0/last.ckpt").is_file(), "checkpoint survives"

    before = calls.read_text().count("RUN train")
    # a hard kill leaves Snakemake's lock behind: unlock (as its message says), then rerun as before
    assert _run(workdir, "--unlock", env=env).returncode == 0
    result = _run(workdir, "--cores", "2", env=env, profile=PROFILE)
    assert result.returncode == 0, result.stderr[-4000:]
    new_calls = [line for line in calls.read_text().splitlines() if line.startswith("RUN train")][before:]
    assert new_calls == ["RUN train synth_tacos stride_4 0 resumed=True"]
    assert done.stat().st_mtime_ns == done_mtime, "a finished run is not redone"
    assert (workdir / "results" / "tables" / "stride_synth_tacos.md").is_file()
