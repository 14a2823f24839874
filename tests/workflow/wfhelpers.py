"""Helpers of the workflow tests: fixture run folders (metrics.json contract), a copy of the
workflow in a temporary folder, and a fake `hieramamba` CLI for the DAG-mechanics tests."""

from __future__ import annotations

import json
import os
from html.parser import HTMLParser
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from fake_hieramamba import planted_hits, write_hits_and_score

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "workflow" / "scripts"
GOLDEN = Path(__file__).resolve().parent / "golden"
FAKE_CLI = Path(__file__).resolve().parent / "fake_hieramamba.py"

BASE = {
    "synth_tacos": {"R1@0.3": 40.0, "R1@0.5": 30.0, "R5@0.3": 70.0, "R5@0.5": 55.0},
    "tacos": {"R1@0.3": 59.0, "R1@0.5": 48.0, "R5@0.3": 83.0, "R5@0.5": 74.0},
}
# variant -> (offset added to every metric, per-seed noise)
FIXTURE_RUNS = {
    "synth_tacos": {
        "full": (0.0, [0.0, 2.0, 4.0]),
        "no_gate": (-3.0, [1.0, 1.0, 4.0]),  # Δ per seed -2, -4, -3: mean -3, sd 1 -> t=-5.196, p=0.0351
        "pool_max": (-1.0, [0.5]),  # one seed: no test
        "stride_3": (-1.0, [0.0, 2.0, 4.0]),  # constant Δ: no test
        "stride_4": (-2.0, [0.0, 3.0, 3.0]),
        "reference_quirks": (-0.5, [0.0, 2.0, 5.0]),
        "snag": (-5.0, [0.0, 1.0]),
        # controls: 32 of 400 queries lost, the hardest ones (mostly long_range); an A/A twin
        "no_global": (-8.0, [1.0, 2.0, 4.0]),
        "full_aa": (0.0, [1.0, 1.0, 3.0]),
    },
    "tacos": {
        "full": (0.0, [0.0, 2.0]),
        "snag": (-3.0, [0.0]),
    },
}
BINS = ("short (<2 min)", "medium (2-5 min)", "long (>5 min)")
SEED_OFFSET = {"full_aa": 1000}  # as ablations/full_aa.yaml


FIXTURE_KINDS = ["plain"] * 300 + ["long_range"] * 100  # 400 queries per split
FIXTURE_BINS = [BINS[i % len(BINS)] for i in range(len(FIXTURE_KINDS))]
# laid out as the synthetic TACoS: 25 videos, each with 6 plain events and 2 long-range targets,
# 2 paraphrased sentences per event (16 queries per video); paraphrases share their event's difficulty
FIXTURE_VIDEOS = [f"v{i // 12:02d}" for i in range(300)] + [f"v{j // 4:02d}" for j in range(100)]
FIXTURE_EVENTS = [f"{video}/{kind}{i // 2}" for i, (video, kind) in enumerate(zip(FIXTURE_VIDEOS, FIXTURE_KINDS))]


def metrics_record(dataset, variant, seed, values, out: Path, **extra):
    """metrics.json of a fixture run whose hits.csv.gz (written into `out`) has exactly the recalls
    `values` (multiples of 0.25 % on 400 queries); the breakdowns follow from those hits."""
    n = len(FIXTURE_KINDS)
    hits = {}
    for m, value in values.items():
        count = value * n / 100.0
        assert count == round(count), f"fixture recall {value} of {m} is not a whole number of {n} queries"
        hits[m] = planted_hits(dataset, f"{variant}/{seed}", m, round(count), FIXTURE_KINDS, FIXTURE_EVENTS)
    record = {
        "dataset": dataset, "variant": variant, "seed": seed, "split": "test", "protocol": "snag",
        **write_hits_and_score(out, FIXTURE_KINDS, FIXTURE_BINS, FIXTURE_VIDEOS, hits, BINS), "n_dropped": 0,
        "train_time_s": 10.0 + seed, "eval_time_s": 1.0, "peak_mem_mb": 500.0 + 10 * seed,
        "versions": {"python": "3.11.7", "torch": "2.13.0", "cuda": None, "mamba_ssm": None, "hieramamba": "0.1.0"},
        "device": "cpu (fixture)", "git_commit": "fixture", "config_sha": "fixture",
    }
    record.update(extra)
    return record


def write_fixture_runs(root: Path) -> dict[str, list[str]]:
    """Run folders under root/runs/{dataset}/{variant}/seed{seed}/; returns metrics paths per dataset."""
    paths: dict[str, list[str]] = {}
    for dataset, variants in FIXTURE_RUNS.items():
        for variant, (offset, noise) in variants.items():
            for index, n in enumerate(noise):
                seed = index + SEED_OFFSET.get(variant, 0)
                values = {k: v + offset + n for k, v in BASE[dataset].items()}
                extra = {"n_params": 1234567, "n_params_backbone": 234567} if variant == "snag" else {}
                run = root / "runs" / dataset / variant / f"seed{seed}"
                run.mkdir(parents=True, exist_ok=True)
                (run / "metrics.json").write_text(json.dumps(metrics_record(dataset, variant, seed, values, run, **extra)))
                (run / "train_curve.csv").write_text(
                    "epoch,step,loss,loss_cls,loss_reg,lr\n"
                    + "".join(f"{e},{10 * (e + 1)},{3.0 / (e + 1) + 0.1 * seed:.4f},{2.0 / (e + 1):.4f},"
                              f"{1.0 / (e + 1):.4f},0.001\n" for e in range(5)))
                if variant == "stride_3":
                    (run / "config.yaml").write_text("model:\n  backbone:\n    stride: 3\n")
                if variant == "snag":
                    (run / "config.yaml").write_text("model:\n  backbone:\n    name: snag\n")
                paths.setdefault(dataset, []).append(str(run / "metrics.json"))
    prior_dir = root / "runs" / "synth_tacos" / "full" / "seed0" / "prior"
    prior_dir.mkdir(parents=True, exist_ok=True)
    prior = root / "runs" / "synth_tacos" / "full" / "seed0" / "metrics.prior.json"
    prior.write_text(json.dumps(metrics_record("synth_tacos", "prior", 0,
                                               {"R1@0.3": 5.0, "R1@0.5": 2.5, "R5@0.3": 20.0, "R5@0.5": 10.0},
                                               prior_dir)))
    return paths


def write_variant_files(root: Path) -> list[str]:
    """The repo's ablation files plus a `snag` backbone variant (issue 6 adds the real one)."""
    folder = root / "ablations"
    folder.mkdir(parents=True, exist_ok=True)
    for path in (REPO / "ablations").glob("*.yaml"):
        shutil.copy(path, folder / path.name)
    if not (folder / "snag.yaml").exists():
        (folder / "snag.yaml").write_text(
            'description: "SnAG windowed-attention backbone"\ntables: [backbones]\n'
            "overrides:\n  model.backbone.name: snag\n")
    return sorted(str(p) for p in folder.glob("*.yaml"))


def run_script(script: str, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, str(SCRIPTS / script), *args], capture_output=True, text=True)
    assert result.returncode == 0, f"{script} failed:\n{result.stdout}\n{result.stderr}"
    return result


def copy_workflow(dest: Path, isolate_conf: bool = False) -> Path:
    """The workflow's own files (Snakefile, config, workflow/, ablations/) in a fresh folder.

    isolate_conf: the copy reads a private copy of hieramamba/conf (an input of every train job),
    so edits others make to the package's conf files while a test runs do not rerun its jobs."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "Snakefile", dest / "Snakefile")
    shutil.copy(REPO / "config.yaml", dest / "config.yaml")
    shutil.copytree(REPO / "workflow", dest / "workflow", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "ablations", dest / "ablations")
    if isolate_conf:
        shutil.copytree(REPO / "hieramamba" / "conf", dest / "pkgconf", ignore=shutil.ignore_patterns("__pycache__"))
        common = dest / "workflow" / "rules" / "common.smk"
        text = common.read_text()
        assert "CONF_DIR = _conf_dir()" in text
        common.write_text(text.replace("CONF_DIR = _conf_dir()", f"CONF_DIR = Path({str(dest / 'pkgconf')!r})"))
    return dest


def snakemake(workdir: Path, *args: str, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(workdir / "Snakefile"),
           "--directory", str(workdir), "--workflow-profile", "none", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=workdir)


def job_counts(output: str) -> dict[str, int]:
    """The 'Job stats' table of a snakemake dry run, as {rule: count}."""
    counts, in_table = {}, False
    for line in output.splitlines():
        if line.startswith("Job stats"):
            in_table, counts = True, {}
            continue
        if in_table:
            parts = line.split()
            if parts and parts[0] == "total":
                in_table = False
            elif len(parts) == 2 and parts[1].isdigit():
                counts[parts[0]] = int(parts[1])
    return counts


def fake_cli_env(tmp_path: Path, **extra: str) -> dict:
    """PATH with a fake `hieramamba` first: fast stand-in outputs that honour the CLI contract."""
    bindir = tmp_path / "fakebin"
    bindir.mkdir(exist_ok=True)
    exe = bindir / "hieramamba"
    exe.write_text(f"#!{sys.executable}\nimport runpy, sys\nsys.argv[0] = 'hieramamba'\n"
                   f"runpy.run_path({str(FAKE_CLI)!r}, run_name='__main__')\n")
    exe.chmod(0o755)
    env = dict(os.environ)
    env["PATH"] = f"{bindir}{os.pathsep}{env['PATH']}"
    env.update(extra)
    return env


PROFILE = "workflow/profiles/default"


def snakemake_cmd(workdir, *args, profile="none"):
    return [sys.executable, "-m", "snakemake", "--snakefile", str(workdir / "Snakefile"), "--directory",
            str(workdir), "--workflow-profile", profile, *args]


def run_snakemake(workdir, *args, env, profile="none", timeout=300):
    result = subprocess.run(snakemake_cmd(workdir, *args, profile=profile), capture_output=True, text=True,
                            env=env, cwd=workdir, timeout=timeout)
    return result


def configure_workflow(workdir, datasets, seeds, tables=None, bench=True):
    """Enable `datasets` and `tables` (None: every table with every variant: the config's
    `exclude` lists are cleared) in a copied workflow's config.yaml."""
    path = workdir / "config.yaml"
    config = yaml.safe_load(path.read_text())
    for name, spec in config["datasets"].items():
        spec["enabled"] = name in datasets
    config["seeds"] = seeds
    config["bench"]["enabled"] = bench
    for table, spec in config["tables"].items():
        spec["enabled"] = tables is None or table in tables
        if tables is None:
            spec["exclude"] = []
        if spec.get("datasets"):
            spec["datasets"] = [d for d in spec["datasets"] if d in datasets] or None
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def dry_run_jobs(output: str) -> list[dict]:
    """The jobs of a `snakemake -n -p` listing: [{rule, wildcards: {}, resources: {}, shell}]."""
    jobs, job = [], None
    for line in output.splitlines():
        if line.startswith(("rule ", "localrule ")) and line.endswith(":"):
            job = {"rule": line.split()[1].rstrip(":"), "wildcards": {}, "resources": {}, "shell": None}
            jobs.append(job)
        elif job is not None and line.startswith("    ") and ": " in line:
            key, value = line.strip().split(": ", 1)
            if key in ("wildcards", "resources"):
                job[key] = dict(item.split("=", 1) for item in value.split(", "))
        elif job is not None and line.startswith("Shell command: "):
            job["shell"] = line[len("Shell command: "):]
    return jobs
class _TablePage(HTMLParser):
    """Text of a table page's caption, rows (th/td cells), `p.note` footnotes and legend `dt` tags."""

    def __init__(self):
        super().__init__()
        self.caption, self.rows, self.notes, self.tags = "", [], [], []
        self._into = None  # the list/str being filled

    def handle_starttag(self, tag, attrs):
        classes = (dict(attrs).get("class") or "").split()
        if tag == "tr":
            self.rows.append([])
        elif tag in ("th", "td"):
            self.rows[-1].append("")
            self._into = "cell"
        elif tag == "caption":
            self._into = "caption"
        elif tag == "p" and "note" in classes:
            self.notes.append("")
            self._into = "note"
        elif tag == "dt":
            self.tags.append("")
            self._into = "tag"

    def handle_endtag(self, tag):
        if tag in ("th", "td", "caption", "p", "dt"):
            self._into = None

    def handle_data(self, data):
        if self._into == "cell":
            self.rows[-1][-1] += data
        elif self._into == "caption":
            self.caption += data
        elif self._into == "note":
            self.notes[-1] += data
        elif self._into == "tag":
            self.tags[-1] += data


def parse_table_page(text: str) -> _TablePage:
    page = _TablePage()
    page.feed(text)
    return page
