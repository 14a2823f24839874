# Helpers shared by all .smk files (config validation, variant discovery, and the functions that
# turn config.yaml + ablations/*.yaml into the targets). Only functions and constants live
# here (no rules), as the Snakemake best-practices page asks.

import glob
import importlib.util
import os
import re
import shlex
import sys
from pathlib import Path

import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate


# ---- config --------------------------------------------------------------------------------


# Top-level switches a user may give as `--config key=true`.
BOOLEAN_KEYS = ("cuda", "replace_results")


def _typed_command_line_values(config):
    """Snakemake's `--config` parser leaves list items strings (`seeds=[0,7,42]` arrives as
    ['0', '7', '42']) and reads only `True`/`False` as booleans (`cuda=true` arrives as 'true').
    Give the README's spellings their types so the schema checks the values themselves; anything
    else is left as it is, for the schema to reject with its value."""
    seeds = config.get("seeds")
    if isinstance(seeds, list):
        config["seeds"] = [int(s) if isinstance(s, str) and s.strip().isdigit() else s for s in seeds]
    for key in BOOLEAN_KEYS:
        value = config.get(key)
        if isinstance(value, str) and value.lower() in ("true", "false"):
            config[key] = value.lower() == "true"


_typed_command_line_values(config)
validate(config, "../schemas/config.schema.yaml")

TABLES = ("main", "ablation", "stride", "backbones")
ABLATIONS_DIR = "ablations"
# Synthetic data is generated once per dataset with a fixed seed: training seeds vary the model,
# not the benchmark, so paired tests over seeds compare variants on identical data.
DATA_SEED = 0
# The synthetic generator knows only smoke and default; paper-scale runs on synthetic data use the
# default-size benchmark.
SYNTH_SCALE = {"smoke": "smoke", "default": "default", "paper": "default"}
# The config key of a dataset's data folder in hieramamba/conf/dataset/*.yaml.
DATA_ROOT_KEY = "root"

SCALE = config["scale"]
SEEDS = (
    list(range(config["seeds"])) if isinstance(config["seeds"], int) else list(config["seeds"])
)
CUDA = bool(config.get("cuda", False))
DEVICE = "cuda" if CUDA else "cpu"  # train.device of every run


def _fail(message):
    raise WorkflowError(f"config.yaml: {message}")


DATASETS = {name: spec for name, spec in config["datasets"].items() if spec["enabled"]}
if not DATASETS:
    _fail("no dataset is enabled (set `enabled: true` on at least one entry of `datasets`)")
for _name, _spec in DATASETS.items():
    for _key, _value in (_spec.get("paths") or {}).items():
        if not _value:
            _fail(
                f"dataset {_name!r} is enabled but datasets.{_name}.paths.{_key} is not set "
                "(set the path or `enabled: false`)"
            )
        # a plain path must exist here (so a preset's placeholder stops the run at once); values
        # written `${.root}/...` are resolved by the package's config and checked by `data check`
        if "${" not in str(_value) and not os.path.exists(_value):
            _fail(f"dataset {_name!r}: datasets.{_name}.paths.{_key} is {_value!r}, which does not exist")


# ---- variants (ablations/*.yaml) -----------------------------------------------------------


def load_variants(directory=ABLATIONS_DIR):
    """Every ablations/<variant>.yaml, validated; a bad file stops with its name in the message."""
    variants = {}
    for path in sorted(glob.glob(os.path.join(directory, "*.yaml"))):
        name = Path(path).stem
        if not re.fullmatch(r"[a-z0-9][a-z0-9_]*", name):
            raise WorkflowError(
                f"{path}: variant name {name!r} must match [a-z0-9][a-z0-9_]* (it becomes a path)"
            )
        with open(path) as handle:
            spec = yaml.safe_load(handle)
        try:
            validate(spec, "../schemas/ablation.schema.yaml", set_default=False)
        except WorkflowError as err:
            raise WorkflowError(f"{path}: invalid ablation file\n{err}") from None
        variants[name] = spec
    if "full" not in variants:
        raise WorkflowError(f"{directory}/full.yaml is missing: every table compares against it")
    return variants


VARIANTS = load_variants()


def _check_paper_numbers(path):
    with open(path) as handle:
        numbers = yaml.safe_load(handle)
    try:
        validate(numbers, "../schemas/paper_numbers.schema.yaml", set_default=False)
    except WorkflowError as err:
        raise WorkflowError(f"{path}: invalid paper numbers file\n{err}") from None
    for name, spec in config["datasets"].items():
        if spec["paper"] not in numbers["datasets"]:
            _fail(f"datasets.{name}.paper is {spec['paper']!r}, which {path} does not describe")


_check_paper_numbers(config["paper_numbers"])


def _table_cfg(table):
    return (config.get("tables") or {}).get(table) or {}


def table_enabled(table):
    return _table_cfg(table).get("enabled", True)


def table_datasets(table):
    """Enabled datasets a table is built for (config `tables.<table>.datasets`, null = all)."""
    if not table_enabled(table):
        return []
    chosen = _table_cfg(table).get("datasets")
    if chosen is None:
        return list(DATASETS)
    for name in chosen:
        if name not in config["datasets"]:
            _fail(f"tables.{table}.datasets names unknown dataset {name!r}")
    return [name for name in chosen if name in DATASETS]


def table_variants(table):
    """Variants whose ablation file lists `table`, restricted by config `tables.<table>.variants`
    and without those in `tables.<table>.exclude` (so a dropped-in file still joins)."""
    listed = [name for name, spec in VARIANTS.items() if table in spec["tables"]]
    chosen = _table_cfg(table).get("variants")
    excluded = _table_cfg(table).get("exclude") or []
    for key, names in (("variants", chosen or []), ("exclude", excluded)):
        for name in names:
            if name not in VARIANTS:
                _fail(f"tables.{table}.{key} names {name!r}, but there is no {ABLATIONS_DIR}/{name}.yaml")
            if name not in listed:
                _fail(f"tables.{table}.{key} names {name!r}, whose {ABLATIONS_DIR}/{name}.yaml does not list {table!r}")
    if "full" in excluded:
        _fail(f"tables.{table}.exclude names 'full', the reference of every comparison")
    return [name for name in listed if (chosen is None or name in chosen) and name not in excluded]


def table_seeds(table):
    """The first `tables.<table>.max_seeds` of the global seeds (all of them when null)."""
    limit = _table_cfg(table).get("max_seeds")
    return SEEDS if limit is None else SEEDS[:limit]


def seed_offset(variant):
    """ablations/<variant>.yaml `seed_offset`: its seed index i runs as seed offset + i (the A/A
    control gets seeds disjoint from full's; the tables pair it with full's seed i)."""
    return int(VARIANTS[variant].get("seed_offset", 0))


def _runs():
    runs = set()
    for table in TABLES:
        variants = table_variants(table)
        if table != "main" and variants and "full" not in variants:
            variants = ["full"] + variants  # Δ columns are relative to `full`
        seeds = table_seeds(table)
        for dataset in table_datasets(table):
            runs.update((dataset, v, seed + seed_offset(v)) for v in variants for seed in seeds)
    return sorted(runs)


RUNS = _runs()


# ---- paths -----------------------------------------------------------------------------------


def metrics_path(dataset, variant, seed):
    return f"results/runs/{dataset}/{variant}/seed{seed}/metrics.json"


def hits_path(dataset, variant, seed):
    """Per-query hits beside metrics.json (DEVELOPING.md, run directory)."""
    return f"results/runs/{dataset}/{variant}/seed{seed}/hits.csv.gz"


def run_metrics(dataset=None, variants=None, seeds=None, path=metrics_path):
    """metrics.json (or another file of `path`) of every run of the DAG, optionally of one dataset /
    some variants / some seed indices (seed - the variant's seed_offset)."""
    return [
        path(d, v, s)
        for d, v, s in RUNS
        if (dataset is None or d == dataset)
        and (variants is None or v in variants)
        and (seeds is None or s - seed_offset(v) in seeds)
    ]


def _table_run_variants(table):
    """The variants whose runs a table reads: its own, plus `full` (the reference of Δ columns)."""
    return set(table_variants(table)) | ({"full"} if table != "main" else set())


def table_metrics(table, path=metrics_path):
    """Input function: metrics.json (or the hits, path=hits_path) of the runs a table is built
    from, for one dataset."""

    def inputs(wildcards):
        # only the table's seeds, so that `full` is averaged over the same seeds as the variants
        return run_metrics(wildcards.dataset, _table_run_variants(table), table_seeds(table), path)

    return inputs


def dataset_metrics(wildcards):
    return run_metrics(wildcards.dataset)


def table_variant_files(table):
    """Input function: the ablation files of the variants a table shows, and no other, so that
    adding an ablation-only variant does not rebuild the main, stride or backbone tables."""

    def files(wildcards):
        return sorted(f"{ABLATIONS_DIR}/{v}.yaml" for v in _table_run_variants(table))

    return files


def run_dir(wildcards, output):
    """The run folder of a job's first output (trained.json, metrics.json, metrics.prior.json)."""
    return os.path.dirname(output[0])


# ---- the package's run-config files ------------------------------------------------------


def _conf_dir():
    spec = importlib.util.find_spec("hieramamba.conf")
    if spec is None or not spec.submodule_search_locations:
        raise WorkflowError("the hieramamba package is not installed (pip install -e .)")
    return Path(list(spec.submodule_search_locations)[0])


def _short(path):
    """A path relative to the working directory when it lies below it, else absolute."""
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


CONF_DIR = _conf_dir()
SCRIPTS_DIR = _short(os.path.join(workflow.basedir, "workflow", "scripts"))


def _default_groups():
    """group -> option of the package's defaults list (hieramamba/conf/config.yaml)."""
    with open(CONF_DIR / "config.yaml") as handle:
        defaults = (yaml.safe_load(handle) or {}).get("defaults", [])
    return {k: v for item in defaults if isinstance(item, dict) for k, v in item.items()}


def run_conf_files(wildcards):
    """The conf files a run's config is composed from: editing one reruns the runs using it."""
    groups = _default_groups()
    groups.update(dataset=dataset_conf(wildcards.dataset), scale=SCALE)
    files = [CONF_DIR / "config.yaml"] + [CONF_DIR / group / f"{option}.yaml" for group, option in groups.items()]
    return sorted(_short(str(f)) for f in files if f.is_file())


# ---- datasets --------------------------------------------------------------------------------


def dataset_conf(name):
    return config["datasets"][name].get("conf", name)


def dataset_args(wildcards):
    """Hydra overrides selecting a dataset and its data (`dataset=... dataset.root=...`)."""
    name = wildcards.dataset
    spec = config["datasets"][name]
    args = [f"dataset={dataset_conf(name)}"]
    if "synthetic" in spec:
        args.append(f"dataset.{DATA_ROOT_KEY}=results/data/{name}")
    else:
        args += [f"dataset.{key}={value}" for key, value in spec["paths"].items()]
    return " ".join(shlex.quote(a) for a in args)


def synth_like(wildcards):
    return config["datasets"][wildcards.dataset]["synthetic"]


def data_inputs(wildcards):
    """What a dataset's check needs: the generated folder for synthetic data, nothing otherwise."""
    if "synthetic" in config["datasets"][wildcards.dataset]:
        return {"data": f"results/data/{wildcards.dataset}"}
    return {}


def train_data_inputs(wildcards):
    inputs = {"report": f"results/data/{wildcards.dataset}.report.json"}
    inputs.update(data_inputs(wildcards))
    return inputs


def synthetic_datasets():
    return [name for name, spec in DATASETS.items() if "synthetic" in spec]


def bench_args(wildcards):
    args = list((config.get("bench") or {}).get("args", {}).get(SCALE, []))
    if CUDA:
        args += ["--device", "cuda"]
    return " ".join(shlex.quote(a) for a in args)


def bench_enabled():
    return bool((config.get("bench") or {}).get("enabled", False))


# ---- final targets -----------------------------------------------------------------------------

# html first: the report shows it inline (the others are downloads there)
TABLE_EXTS = ("html", "csv", "md", "tex")
PLOT_EXTS = ("png", "pdf")


def get_final_output():
    targets = [f"results/data/{name}.report.md" for name in DATASETS]
    targets += [metrics_path(*run) for run in RUNS]
    targets.append("results/metrics/runs.csv")
    for table in TABLES:
        if not table_variants(table):
            continue
        for dataset in table_datasets(table):
            targets += [f"results/tables/{table}_{dataset}.{ext}" for ext in TABLE_EXTS]
    for dataset in DATASETS:
        if run_metrics(dataset):
            targets += [f"results/plots/recall_by_length_{dataset}.{ext}" for ext in PLOT_EXTS]
            targets += [f"results/plots/training_curves_{dataset}.{ext}" for ext in PLOT_EXTS]
            targets += [f"results/tables/convergence_{dataset}.{ext}" for ext in TABLE_EXTS]
    if table_variants("ablation"):
        for dataset in table_datasets("ablation"):
            targets += [f"results/plots/ablation_{dataset}.{ext}" for ext in PLOT_EXTS]
    if bench_enabled():
        targets += [f"results/plots/scaling.{ext}" for ext in PLOT_EXTS]
    return targets


# ---- per-dataset parameters of the table and plot scripts -------------------------------------

# Report categories follow the paper's tables and figures.
CATEGORY = {
    "main": "1. Main results (paper Table 1 layout)",
    "ablation": "2. Ablations",
    "stride": "3. Anchor stride sweep",
    "backbones": "4. Backbone comparison",
    "scaling": "5. Scaling with video length",
    "recall_by_length": "6. Recall by video length",
    "training_curves": "7. Training curves",
    "convergence": "7. Training curves",
}


def paper_dataset(wildcards):
    return config["datasets"][wildcards.dataset]["paper"]


def is_synthetic(wildcards):
    return "synthetic" in config["datasets"][wildcards.dataset]


def variants_of(table):
    def variants(wildcards):
        return table_variants(table)

    return variants


def dataset_variants(wildcards):
    return sorted({v for d, v, _ in RUNS if d == wildcards.dataset})


def table_outputs(table):
    """html/csv/md/tex of a table, each in the report under the paper table it reproduces."""
    return {
        ext: report(
            f"results/tables/{table}_{{dataset}}.{ext}",
            caption=f"../report/table_{table}.rst",
            category=CATEGORY[table],
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "table": table, "format": ext},
        )
        for ext in TABLE_EXTS
    }


def plot_outputs(plot, pattern):
    return {
        ext: report(
            pattern.format(ext=ext),
            caption=f"../report/plot_{plot}.rst",
            category=CATEGORY[plot],
            subcategory="{dataset}" if "{dataset}" in pattern else "all",
            labels={"dataset": "{dataset}" if "{dataset}" in pattern else "all", "plot": plot, "format": ext},
        )
        for ext in PLOT_EXTS
    }


def prior_metrics(wildcards):
    """The trivial baseline of a dataset, scored beside the first seed's `full` run."""
    return f"results/runs/{wildcards.dataset}/full/seed{SEEDS[0]}/metrics.prior.json"
