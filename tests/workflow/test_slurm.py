"""A DAG through the SLURM profile on a real one-node SLURM cluster on localhost.

Part of the default test command: as root on Debian/Ubuntu it installs slurmctld, slurmd,
slurm-client and munge with apt-get when they are missing, writes a slurm.conf without
accounting (so jobs are followed with squeue) to /etc/slurm/slurm.conf (srun inside a job reads
the default location; an existing file is moved aside and put back), starts munged, slurmctld and
slurmd in the foreground, runs a DAG with `--profile workflow/profiles/slurm`, and stops the
three daemons by their pids. It skips, saying why, without root or apt-get (and SLURM absent).

HIERAMAMBA_TEST_SLURM selects what runs: unset or `tiny` (default): the smallest DAG that still
goes through every stage (synth_tacos, one seed, the main table, its plots, the scaling bench)
with the real CLI at smoke scale; `full`: the whole smoke DAG (all three synthetic datasets,
every table; ~13 minutes on the shared 2-core machine); `0`: skip.
HIERAMAMBA_TEST_SLURM_FAKE=1 uses the fake `hieramamba` (seconds) instead of the real CLI.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from wfhelpers import configure_workflow, copy_workflow, fake_cli_env, snakemake_cmd

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

PACKAGES = ["slurmctld", "slurmd", "slurm-client", "munge"]


DAEMONS = ("slurmctld", "slurmd", "sbatch", "squeue", "munged")


def _mode() -> str:
    """tiny (default) | full | skip, from HIERAMAMBA_TEST_SLURM (`1` is the old opt-in: tiny)."""
    value = os.environ.get("HIERAMAMBA_TEST_SLURM", "tiny").strip().lower()
    if value in ("0", "no", "off", "skip"):
        pytest.skip("HIERAMAMBA_TEST_SLURM=0: the SLURM profile test is switched off")
    if value not in ("tiny", "full", "1", ""):
        raise ValueError(f"HIERAMAMBA_TEST_SLURM={value!r}: expected tiny, full or 0")
    if os.geteuid() != 0:
        pytest.skip("needs root (apt-get, and the daemons run as root)")
    if shutil.which("apt-get") is None and any(shutil.which(p) is None for p in DAEMONS):
        pytest.skip("needs apt-get (Debian/Ubuntu) to install slurmctld, slurmd and munge")
    return "full" if value == "full" else "tiny"


def _install():
    missing = [p for p in DAEMONS if shutil.which(p) is None]
    if not missing:
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=600)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES], check=True, env=env,
                   timeout=900)


def _slurm_conf(folder: Path, host: str, cpus: int, mem_mb: int) -> Path:
    for sub in ("state", "spool", "log"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    conf = folder / "slurm.conf"
    conf.write_text(f"""ClusterName=hmtest
SlurmctldHost={host}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldLogFile={folder}/log/slurmctld.log
SlurmdLogFile={folder}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
# no accounting: sacct cannot answer, the profile follows jobs with squeue
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
# squeue forgets finished jobs after MinJobAge seconds: keep it above the plugin's threshold
MinJobAge=600
NodeName={host} CPUs={cpus} RealMemory={mem_mb} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
""")
    return conf


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")


def _node_idle(env) -> bool:
    out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, env=env)
    return out.returncode == 0 and "idle" in out.stdout


def test_dag_through_the_slurm_profile(tmp_path):
    mode = _mode()
    _install()
    host = socket.gethostname().split(".")[0]
    cpus = os.cpu_count() or 1
    mem_mb = 4000 * max(1, cpus)
    written = _slurm_conf(tmp_path / "slurm", host, cpus, mem_mb)
    conf = Path("/etc/slurm/slurm.conf")
    backup = conf.with_name("slurm.conf.hieramamba-test-backup")
    conf.parent.mkdir(parents=True, exist_ok=True)
    if conf.exists():
        conf.rename(backup)
    shutil.copy(written, conf)
    env = dict(os.environ, SLURM_CONF=str(conf))
    if os.environ.get("HIERAMAMBA_TEST_SLURM_FAKE") == "1":
        env = fake_cli_env(tmp_path, SLURM_CONF=str(conf))

    Path("/run/munge").mkdir(parents=True, exist_ok=True)
    daemons = []
    try:
        daemons.append(subprocess.Popen(["munged", "--foreground", "--force"], env=env,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(1)
        daemons.append(subprocess.Popen(["slurmctld", "-D", "-i", "-f", str(conf)], env=env,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(2)
        daemons.append(subprocess.Popen(["slurmd", "-D", "-f", str(conf)], env=env,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        _wait_for(lambda: _node_idle(env), 60, "the node to be idle")

        workdir = copy_workflow(tmp_path / "wf")
        # per-job resources scaled down to the one small node; status checks every 2 s (the
        # profile's 10 s suit a real queue; here they would be most of the wall time)
        if mode == "full":
            datasets, tables = ["synth_tacos", "synth_ego4d_nlq", "synth_mad"], None
        else:
            datasets, tables = ["synth_tacos"], ["main"]
        configure_workflow(workdir, datasets, seeds=1, tables=tables)
        args = ["--profile", "workflow/profiles/slurm", "--config", "scale=smoke", "seeds=1",
                "--set-resources", f"train:mem_mb={mem_mb // 2}", f"bench_scaling:mem_mb={mem_mb // 2}",
                f"check_data:mem_mb={mem_mb // 2}", f"evaluate_run:mem_mb={mem_mb // 2}", "train:cpus_per_task=1",
                "evaluate_run:cpus_per_task=1", "bench_scaling:cpus_per_task=1",
                "--set-threads", "train=1", "evaluate_run=1", "bench_scaling=1",
                "--default-resources", "mem_mb=1000", "runtime=30", "cpus_per_task=1", "--jobs", str(cpus),
                "--slurm-init-seconds-before-status-checks", "2", "--seconds-between-status-checks", "2",
                "--slurm-keep-successful-logs"]
        started = time.time()
        result = subprocess.run(snakemake_cmd(workdir, *args), capture_output=True, text=True, env=env,
                                cwd=workdir, timeout=3600)
        wall = time.time() - started
        assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
        text = result.stdout + result.stderr
        # every job but the local `all` went through sbatch: synth, check, train, prior, collect,
        # table, 2 plots, bench, scaling plot (tiny); many more (full)
        assert text.count("has been submitted with SLURM jobid") >= (10 if mode == "tiny" else 30), text[-3000:]
        built = ["main_synth_tacos"] if mode == "tiny" else [
            "main_synth_tacos", "ablation_synth_tacos", "stride_synth_tacos", "backbones_synth_tacos"]
        for table in built:
            assert (workdir / "results" / "tables" / f"{table}.md").is_file(), table
        assert (workdir / "results" / "runs" / "synth_tacos" / "full" / "seed0" / "metrics.json").is_file()
        assert (workdir / "results" / "plots" / "scaling.png").is_file()
        assert list((workdir / "logs" / "slurm").rglob("*.log")), "jobs ran through SLURM (their logs)"
        print(f"{mode} DAG through SLURM: {wall:.0f} s")
    finally:
        for proc in reversed(daemons):  # slurmd, slurmctld, munged: by pid
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        conf.unlink(missing_ok=True)
        if backup.exists():
            backup.rename(conf)
