"""workflow/presets/paper.yaml: the real datasets at paper scale on a GPU, dry-run against tiny
exact-format fixture datasets (tests/data/readers_fixtures.py) laid out as the preset documents.

A user edits only the three `root:` lines marked EDIT; the test does exactly that and checks the
job list: every variant x dataset x seed, every train job on CUDA asking for gpu=1, and the
dataset paths resolving to the fixture files. The unedited preset stops with the path named."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import pytest
import yaml

from wfhelpers import REPO, copy_workflow, dry_run_jobs, job_counts, snakemake

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from readers_fixtures import ego4d_dir, mad_dir, tacos_dir  # noqa: E402,F401  (pytest fixtures)

PRESET = REPO / "workflow" / "presets" / "paper.yaml"
REAL = ("tacos", "ego4d_nlq", "mad")
PLACEHOLDER = {"tacos": "/path/to/tacos", "ego4d_nlq": "/path/to/ego4d_nlq", "mad": "/path/to/mad"}


def _edited_preset(workdir: Path, roots: dict[str, Path]) -> Path:
    """The preset with the three EDIT lines pointed at `roots` (and nothing else changed)."""
    lines = PRESET.read_text().splitlines(keepends=True)
    edited = [ln for ln in lines if "# EDIT" in ln]
    assert len(edited) == 3, "the preset has exactly three lines a user edits"
    out = []
    for line in lines:
        for name, placeholder in PLACEHOLDER.items():
            if "# EDIT" in line and placeholder in line:
                line = line.replace(placeholder, str(roots[name]))
        out.append(line)
    path = workdir / "my_paper.yaml"
    path.write_text("".join(out))
    return path


@pytest.fixture
def preset_dry_run(tmp_path, tacos_dir, ego4d_dir, mad_dir):
    workdir = copy_workflow(tmp_path / "wf")
    roots = {"tacos": tacos_dir, "ego4d_nlq": ego4d_dir, "mad": mad_dir}
    preset = _edited_preset(workdir, roots)
    result = snakemake(workdir, "-n", "-p", "--forceall", "--cores", "2", "--configfile", str(preset))
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr, roots


def _variants() -> list[str]:
    return sorted(p.stem for p in (REPO / "ablations").glob("*.yaml"))


def _seed_offset(variant: str) -> int:
    """The A/A control runs its seed index i as seed offset + i (ablations/full_aa.yaml)."""
    return int(yaml.safe_load((REPO / "ablations" / f"{variant}.yaml").read_text()).get("seed_offset", 0))


def test_preset_settings():
    preset = yaml.safe_load(PRESET.read_text())
    assert preset["scale"] == "paper" and preset["cuda"] is True and preset["seeds"] == 3
    assert {n for n, d in preset["datasets"].items() if d["enabled"]} == set(REAL)
    assert all(not preset["datasets"][f"synth_{n}"]["enabled"] for n in REAL)
    # every table on, every variant, every dataset and seed (config.yaml's default restricts them)
    for table in ("main", "ablation", "stride", "backbones"):
        settings = preset["tables"][table]
        assert settings.get("enabled", True) is True, table
        assert not settings.get("exclude"), table
        assert {k: settings[k] for k in ("datasets", "variants", "max_seeds")} == \
            {"datasets": None, "variants": None, "max_seeds": None}, table


def test_every_variant_dataset_seed_is_a_gpu_train_job(preset_dry_run):
    output, roots = preset_dry_run
    jobs = dry_run_jobs(output)
    train = [j for j in jobs if j["rule"] == "train"]
    runs = {(j["wildcards"]["dataset"], j["wildcards"]["variant"], int(j["wildcards"]["seed"])) for j in train}
    expected = {(d, v, _seed_offset(v) + i) for d in REAL for v in _variants() for i in range(3)}
    assert runs == expected and len(train) == len(expected) == 3 * len(_variants()) * 3
    for job in train:
        assert job["resources"].get("gpu") == "1", job
        assert "train.device=cuda" in job["shell"] and "scale=paper" in job["shell"], job["shell"]
    bench = [j for j in jobs if j["rule"] == "bench_scaling"]
    assert len(bench) == 1 and bench[0]["resources"].get("gpu") == "1" and "--device cuda" in bench[0]["shell"]
    counts = job_counts(output)
    assert "synth_data" not in counts  # the synthetic datasets are off
    assert counts["check_data"] == 3
    for table in ("main", "ablation", "stride", "backbones"):
        assert counts[f"table_{table}"] == 3, table  # every table on every real dataset


def test_dataset_paths_resolve_to_the_fixture_files(preset_dry_run):
    """The `${.root}/...` lines give the documented layout: each path composes to a fixture file."""
    from hieramamba.engine.config import compose_config

    output, roots = preset_dry_run
    checks = {j["wildcards"].get("dataset"): j["shell"] for j in dry_run_jobs(output) if j["rule"] == "check_data"}
    assert set(checks) == set(REAL)
    for name, shell in checks.items():
        words = shlex.split(shell.split(">", 1)[0])  # hieramamba data check ARGS > log
        args = [w for w in words if w.startswith("dataset")]
        assert f"dataset.root={roots[name]}" in args, args
        cfg = compose_config([*args, "scale=paper", "out=unused"])
        keys = [k for k in ("annotations", "video_features", "text_features", "glove") if cfg.dataset.get(k)]
        assert len(keys) >= 3, (name, keys)
        for key in keys:
            assert Path(cfg.dataset[key]).exists(), (name, key, cfg.dataset[key])


def test_unedited_preset_stops_naming_the_root(tmp_path):
    workdir = copy_workflow(tmp_path / "wf")
    result = snakemake(workdir, "-n", "--cores", "2", "--configfile", str(PRESET))
    assert result.returncode != 0
    text = result.stdout + result.stderr
    assert "datasets.tacos.paths.root is '/path/to/tacos', which does not exist" in text, text[-3000:]
