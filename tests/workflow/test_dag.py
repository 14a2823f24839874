"""The DAG without running it: dry-run job counts for the default config, lint, config and
ablation validation (a bad key or value stops with a message naming it), dropping in a variant."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import jsonschema
import pytest
import yaml

from wfhelpers import REPO, copy_workflow, fake_cli_env, job_counts, run_snakemake, snakemake

TABLES = ("main", "ablation", "stride", "backbones")


def expected_jobs(config: dict, ablations: dict[str, dict]) -> dict[str, int]:
    """Job counts derived by hand from config.yaml and ablations/*.yaml `tables`."""
    enabled = [n for n, d in config["datasets"].items() if d["enabled"]]
    seeds = config["seeds"] if isinstance(config["seeds"], int) else len(config["seeds"])
    runs = set()
    per_table_datasets = {}
    for table in TABLES:
        table_cfg = config["tables"][table]
        chosen, excluded = table_cfg.get("variants"), table_cfg.get("exclude") or []
        variants = [v for v, spec in ablations.items() if table in spec["tables"]
                    and (chosen is None or v in chosen) and v not in excluded]
        if not table_cfg.get("enabled", True):
            variants = []
        if table != "main" and variants:
            variants = sorted(set(variants) | {"full"})
        datasets = [d for d in (table_cfg["datasets"] or enabled) if d in enabled]
        per_table_datasets[table] = datasets if variants else []
        limit = config["tables"][table].get("max_seeds")
        table_seeds = seeds if limit is None else min(seeds, limit)
        runs |= {(d, v, s) for d in datasets for v in variants for s in range(table_seeds)}
    counts = {
        "synth_data": len([n for n in enabled if "synthetic" in config["datasets"][n]]),
        "check_data": len(enabled),
        "train": len(runs),
        "evaluate_run": len(runs),
        "evaluate_prior": len(per_table_datasets["main"]),
        "collect_metrics": 1,
        "table_main": len(per_table_datasets["main"]),
        "table_ablation": len(per_table_datasets["ablation"]),
        "table_stride": len(per_table_datasets["stride"]),
        "table_backbones": len(per_table_datasets["backbones"]),
        "plot_recall_by_length": len(enabled),
        "plot_training_curves": len(enabled),
        "table_convergence": len(enabled),
        "plot_ablation": len(per_table_datasets["ablation"]),
        "bench_scaling": 1,
        "plot_scaling": 1,
        "all": 1,
    }
    return {job: n for job, n in counts.items() if n}  # Snakemake lists no job with a count of 0


def _ablations(folder):
    return {p.stem: yaml.safe_load(p.read_text()) for p in sorted(folder.glob("*.yaml"))}


@pytest.fixture(scope="module")
def dry_run():
    result = snakemake(REPO, "-n", "--forceall", "--cores", "2")  # independent of outputs already in results/
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def test_default_dry_run_lists_expected_jobs(dry_run):
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    ablations = _ablations(REPO / "ablations")
    assert job_counts(dry_run) == expected_jobs(config, ablations)


def test_default_dry_run_is_the_controls_on_synth_tacos_with_three_seeds(dry_run):
    """The default (issue 11's 30-minute budget): synth_tacos only, `full` and its two controls
    (no_global, full_aa) x 3 seeds; the other shipped variants are excluded, the stride and backbone
    tables off. An ablation file dropped into ablations/ (not shipped) adds its 3 runs."""
    counts = job_counts(dry_run)
    extra = [v for v, spec in _ablations(REPO / "ablations").items()
             if v not in SHIPPED_VARIANTS and "ablation" in spec["tables"]]
    assert counts["train"] == counts["evaluate_run"] == 3 * 3 + 3 * len(extra)
    assert sum(counts.values()) == 31 + 6 * len(extra)
    for table in ("table_stride", "table_backbones"):
        assert table not in counts
    assert "synth_mad" not in dry_run and "synth_ego4d_nlq" not in dry_run


SHIPPED_VARIANTS = {"full", "full_aa", "no_global", "no_gate", "no_acc", "no_spc", "no_contrast", "pure_mamba",
                    "pure_transformer", "unidirectional", "stride_3", "stride_4", "pool_max", "pool_attn",
                    "reference_quirks", "snag", "mstemba", "videomamba"}


def test_dry_run_shell_commands(dry_run):
    """The train command passes the ablation by path, the checkpoint folder outside the outputs,
    and logs under logs/; it stops after training and the run's evaluation is a job of its own."""
    result = snakemake(REPO, "-n", "--forceall", "--cores", "2", "-p", "results/runs/synth_tacos/no_gate/seed1/metrics.json")
    text = result.stdout + result.stderr
    assert "workflow/scripts/prepare_run.py results/runs/synth_tacos/no_gate/seed1 " \
           "checkpoints/synth_tacos/no_gate/seed1 --files ablations/no_gate.yaml hieramamba/conf/config.yaml" in text
    assert "hieramamba train --no-eval dataset=synth_tacos dataset.root=results/data/synth_tacos scale=default seed=1 " \
           "ablation=ablations/no_gate.yaml train.device=cpu out=results/runs/synth_tacos/no_gate/seed1 " \
           "checkpoint_dir=checkpoints/synth_tacos/no_gate/seed1 >> logs/train/synth_tacos/no_gate/seed1.log" in text
    assert "hieramamba data synth --like tacos --scale default --seed 0 --out results/data/synth_tacos" in text
    assert "hieramamba evaluate results/runs/synth_tacos/no_gate/seed1 > logs/evaluate/synth_tacos/no_gate/seed1.log" in text


def test_lint_is_clean():
    result = snakemake(REPO, "--lint")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Lints for" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    "override, named",
    [
        ("colour=blue", "'colour' was unexpected"),
        ("scale=huge", "'huge'"),
        ("seeds=0", "seeds"),
        ("seeds=[0,x]", "'x'"),
        ("seeds=[1,1]", "seeds"),
        ("cuda=maybe", "'maybe'"),
    ],
)
def test_bad_config_stops_with_its_name(override, named):
    result = snakemake(REPO, "-n", "--config", override)
    assert result.returncode != 0
    assert named in result.stdout + result.stderr


def test_seed_list_from_the_command_line():
    """`--config seeds=[0,7,42]` (the README's syntax): Snakemake hands the items over as strings;
    the DAG takes them as seeds 0, 7, 42 (A/A control: 1000, 1007, 1042)."""
    # replace_results: a checkout whose results/ holds the default DAG's results (covers.json) would
    # otherwise stop this other seed list at parse time, as it should for a real run
    result = snakemake(REPO, "-n", "--forceall", "--cores", "2", "--config", "seeds=[0,7,42]", "replace_results=true")
    text = result.stdout + result.stderr
    assert result.returncode == 0, text
    for run in ("synth_tacos/full/seed42", "synth_tacos/full/seed7", "synth_tacos/no_global/seed7",
                "synth_tacos/full_aa/seed1042"):
        assert f"results/runs/{run}/metrics.json" in text, run
    assert "/seed1/" not in text and "/seed2/" not in text
    assert job_counts(text)["train"] == 3 * 3


def test_boolean_switches_from_the_command_line():
    """`--config cuda=true` (the README's spelling; Snakemake itself reads only `True`) asks train
    jobs for a GPU and runs them on cuda."""
    result = snakemake(REPO, "-n", "--forceall", "--cores", "2", "-p",
                       "results/runs/synth_tacos/no_gate/seed1/metrics.json", "--config", "cuda=true")
    text = result.stdout + result.stderr
    assert result.returncode == 0, text
    assert "train.device=cuda" in text and "train.device=cpu" not in text


def test_other_seeds_do_not_silently_replace_the_results(tmp_path):
    """A run records the scale and seeds it covers (results/covers.json); a later config with other
    seeds stops naming both and the way out, unless replace_results=true; the same config passes."""
    workdir = copy_workflow(tmp_path / "wf")
    env = fake_cli_env(tmp_path)
    done = run_snakemake(workdir, "--cores", "1", "results/data/synth_tacos.report.md", env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    covers = json.loads((workdir / "results" / "covers.json").read_text())
    assert covers["scale"] == "default" and covers["seeds"]["main"] == [0, 1, 2] and covers["seeds"]["ablation"] == [0, 1, 2]
    same = snakemake(workdir, "-n", "--cores", "1")
    assert same.returncode == 0, same.stdout + same.stderr
    other = snakemake(workdir, "-n", "--cores", "1", "--config", "seeds=[0,7,42]")
    text = other.stdout + other.stderr
    assert other.returncode != 0
    assert "results/covers.json" in text and "main: 0, 1, 2" in text and "main: 0, 7, 42" in text
    assert "replace_results=true" in text
    smoke = snakemake(workdir, "-n", "--cores", "1", "--config", "scale=smoke")
    assert smoke.returncode != 0 and "scale=smoke" in smoke.stdout + smoke.stderr
    forced = snakemake(workdir, "-n", "--cores", "1", "--config", "seeds=[0,7,42]", "replace_results=true")
    assert forced.returncode == 0, forced.stdout + forced.stderr


def _edit_config(workdir, edit):
    path = workdir / "config.yaml"
    config = yaml.safe_load(path.read_text())
    edit(config)
    path.write_text(yaml.safe_dump(config, sort_keys=False))


@pytest.mark.parametrize(
    "edit, named",
    [
        (lambda c: c["datasets"]["tacos"].update(enabled=True), "datasets.tacos.paths.root"),
        (lambda c: c["tables"]["ablation"].update(datasets=["nope"]), "'nope'"),
        (lambda c: c["tables"]["ablation"].update(variants=["stride_3"]), "'stride_3'"),
        (lambda c: c["datasets"]["synth_mad"].update(paper="charades"), "'charades'"),
        (lambda c: c["tables"]["stride"].update(max_seeds=0), "max_seeds"),
        (lambda c: c["tables"]["ablation"].update(exclude=["nope"]), "tables.ablation.exclude names 'nope'"),
        (lambda c: c["tables"]["ablation"].update(exclude=["full"]), "tables.ablation.exclude names 'full'"),
    ],
    ids=["enabled-without-path", "unknown-dataset", "variant-not-in-table", "bad-enum", "max-seeds-zero",
         "exclude-unknown", "exclude-full"],
)
def test_bad_config_file_stops_with_its_name(tmp_path, edit, named):
    workdir = copy_workflow(tmp_path / "wf")
    _edit_config(workdir, edit)
    result = snakemake(workdir, "-n")
    assert result.returncode != 0
    assert named in result.stdout + result.stderr


def test_bad_ablation_file_is_named(tmp_path):
    workdir = copy_workflow(tmp_path / "wf")
    (workdir / "ablations" / "typo.yaml").write_text(
        'description: "x"\ntables: [ablation]\noverides:\n  model.backbone.gate: false\n')
    result = snakemake(workdir, "-n")
    text = result.stdout + result.stderr
    assert result.returncode != 0
    assert "ablations/typo.yaml" in text and "overides" in text


def test_dropped_in_ablation_joins_the_dag_and_its_table(tmp_path):
    """A new YAML in ablations/ is the only edit: 3 new runs (one per seed), and the ablation table
    and plot read them (the default's `exclude` names only the shipped variants)."""
    workdir = copy_workflow(tmp_path / "wf")
    (workdir / "ablations" / "window_3.yaml").write_text(
        'description: "Local attention window 3"\ntables: [ablation]\n'
        "overrides:\n  model.backbone.window_size: 3\n")
    result = snakemake(workdir, "-n", "--cores", "2", "results/tables/ablation_synth_tacos.csv")
    text = result.stdout + result.stderr
    assert result.returncode == 0, text
    for seed in range(3):
        assert f"results/runs/synth_tacos/window_3/seed{seed}/metrics.json" in text
    assert "results/runs/synth_tacos/window_3/seed3/metrics.json" not in text
    assert re.search(r"ablation=ablations/window_3\.yaml", text) or "window_3" in text
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    counts = job_counts(snakemake(workdir, "-n", "--cores", "2").stdout)
    assert counts == expected_jobs(config, _ablations(workdir / "ablations"))


def test_each_table_reads_only_its_own_variants(tmp_path):
    """A dropped-in ablation-only variant is an input of the ablation table and plot only: the main,
    stride and backbone tables do not depend on its file or its runs (they are not rebuilt)."""
    workdir = copy_workflow(tmp_path / "wf")
    (workdir / "ablations" / "window_3.yaml").write_text(
        'description: "Local attention window 3"\ntables: [ablation]\n'
        "overrides:\n  model.backbone.window_size: 3\n")
    for table in ("main", "stride", "backbones"):
        result = snakemake(workdir, "-n", "--forceall", "--cores", "2", f"results/tables/{table}_synth_tacos.csv")
        text = result.stdout + result.stderr
        assert result.returncode == 0, text
        assert "window_3" not in text, table
        assert f"ablations/{'snag' if table == 'backbones' else 'full'}.yaml" in text, table
    result = snakemake(workdir, "-n", "--forceall", "--cores", "2", "results/tables/ablation_synth_tacos.csv")
    assert "ablations/window_3.yaml" in result.stdout and "ablations/stride_3.yaml" not in result.stdout


def test_max_seeds_limits_a_tables_runs_and_inputs(tmp_path):
    """`tables.ablation.max_seeds: 1`: the ablation table reads seed 0 only, `full` included (its
    other seeds belong to the main table), and its variants train one seed."""
    workdir = copy_workflow(tmp_path / "wf")
    _edit_config(workdir, lambda c: c["tables"]["ablation"].update(max_seeds=1))
    result = snakemake(workdir, "-n", "--forceall", "--cores", "2", "results/tables/ablation_synth_tacos.csv")
    text = result.stdout + result.stderr
    assert result.returncode == 0, text
    assert "results/runs/synth_tacos/no_global/seed0/metrics.json" in text
    assert "results/runs/synth_tacos/full/seed0/metrics.json" in text
    assert "no_global/seed1" not in text and "full/seed1" not in text
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    counts = job_counts(snakemake(workdir, "-n", "--forceall", "--cores", "2").stdout)
    assert counts == expected_jobs(config, _ablations(workdir / "ablations"))


def test_paper_numbers_file_is_valid_and_sourced():
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "paper_numbers.schema.yaml").read_text())
    numbers = yaml.safe_load((REPO / "workflow" / "paper_numbers.yaml").read_text())
    jsonschema.validate(numbers, schema)
    for dataset, spec in numbers["datasets"].items():
        for method in spec["methods"]:
            assert set(method["values"]) == set(spec["metrics"]), f"{dataset}/{method['name']}: every column present"
            has_number = any(v is not None for v in method["values"].values())
            assert method["source"] in numbers["sources"] or (method["source"] is None and not has_number), \
                f"{dataset}/{method['name']}: a number needs a known source tag"
    # the published HieraMamba row and its source
    tacos = {m["name"]: m for m in numbers["datasets"]["tacos"]["methods"]}
    assert tacos["HieraMamba"]["values"]["R1@0.3"] == 59.59 and tacos["HieraMamba"]["source"] == "3R"
    mad = {m["name"]: m for m in numbers["datasets"]["mad"]["methods"]}
    assert all(v is None for v in mad["HieraMamba"]["values"].values()), "MAD numbers are not published"


def test_paper_numbers_match_the_reference_document():
    """Every number in paper_numbers.yaml appears in ../shared/docs/paper-numbers.md."""
    doc = REPO.parent / "shared" / "docs" / "paper-numbers.md"
    if not doc.is_file():
        pytest.skip(f"{doc} not found (reference documents are beside the repo)")
    text = doc.read_text()
    numbers = yaml.safe_load((REPO / "workflow" / "paper_numbers.yaml").read_text())
    missing = []
    for dataset, spec in numbers["datasets"].items():
        for method in spec["methods"]:
            cells = list(method["values"].values()) + [method.get("avg")]
            for cell in cells:
                value = cell["value"] if isinstance(cell, dict) else cell
                if value is not None and f"{value:.2f}" not in text:
                    missing.append((dataset, method["name"], value))
    assert not missing


def test_schema_rejects_bad_values():
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "ablation.schema.yaml").read_text())
    good = {"description": "x", "tables": ["ablation"], "overrides": {"model.backbone.gate": False}}
    jsonschema.validate(good, schema)
    for bad in ({**good, "tables": ["main", "nonsense"]}, {**good, "overrides": {"gate": False}},
                {**good, "overrides": {"hydra.run.dir": "x"}}, {k: v for k, v in good.items() if k != "description"}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)


def test_every_shipped_ablation_composes_with_the_cli():
    """Each ablations/*.yaml composes into a run config (the CLI owns the key vocabulary)."""
    code = ("import sys, glob\n"
            "from hieramamba.engine.config import compose_config\n"
            "for p in sorted(glob.glob('ablations/*.yaml')):\n"
            "    cfg = compose_config(['dataset=synth_tacos', 'scale=smoke', f'ablation={p}', 'out=/tmp/x'])\n"
            "    assert cfg.variant == p.split('/')[-1][:-5], p\n")
    base = ("from hieramamba.engine.config import compose_config\n"
            "compose_config(['dataset=synth_tacos', 'scale=smoke', 'out=/tmp/x'])\n")
    probe = subprocess.run([sys.executable, "-c", base], capture_output=True, text=True, cwd=REPO)
    if probe.returncode != 0:
        pytest.skip("the CLI cannot compose a base run config yet (no ablation involved): "
                    f"{probe.stderr.strip().splitlines()[-1:]}")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr


def test_controls_are_in_the_default_job_list(dry_run):
    """no_global (positive control) and full_aa (A/A) train with the ablation table's seeds; full_aa
    under its disjoint seeds 1000 + i (ablations/full_aa.yaml seed_offset)."""
    for seed in (0, 1, 2):
        assert f"results/runs/synth_tacos/no_global/seed{seed}/metrics.json" in dry_run
        assert f"results/runs/synth_tacos/full_aa/seed{1000 + seed}/metrics.json" in dry_run
        assert f"results/runs/synth_tacos/full_aa/seed{1000 + seed}/hits.csv.gz" in dry_run
    assert "full_aa/seed0/" not in dry_run and "full_aa/seed1/" not in dry_run
    assert "full_aa/seed1003" not in dry_run


def test_full_grid_preset_runs_every_variant_everywhere():
    """`--configfile workflow/presets/full_grid.yaml`: every ablations/*.yaml on the three
    synthetic datasets with 3 seeds, and the tables read all of them."""
    preset = REPO / "workflow" / "presets" / "full_grid.yaml"
    result = snakemake(REPO, "-n", "--forceall", "--cores", "2", "--configfile", str(preset),
                       "--config", "replace_results=true")  # as above: results/ may hold the default DAG's
    text = result.stdout + result.stderr
    assert result.returncode == 0, text
    variants = _ablations(REPO / "ablations")
    counts = job_counts(text)
    synthetic = ("synth_tacos", "synth_ego4d_nlq", "synth_mad")
    assert counts["train"] >= 3 * len(variants) * 3
    assert counts["train"] == len(synthetic) * len(variants) * 3
    for table in ("table_ablation", "table_stride", "table_backbones", "table_main"):
        assert counts[table] == len(synthetic), table
    offset = {v: spec.get("seed_offset", 0) for v, spec in variants.items()}
    for dataset in synthetic:
        for variant in variants:
            for seed in range(3):
                assert f"results/runs/{dataset}/{variant}/seed{seed + offset[variant]}/metrics.json" in text
