"""Compose one run's config: hydra-core groups, then the scale table, the ablation, the overrides.

Precedence (later wins): the group defaults (`conf/config.yaml`) < the chosen scale's table for
the dataset (`conf/scale/<scale>.yaml`: `all` then `per_dataset[<family>]`) < the ablation's
`overrides` < the command line's `key=value` overrides. Every dotted key must already exist in the
composed config: an unknown key is a `ConfigError` that names it (a typo never creates a new,
silently unused option).

hydra-core is used only through its compose API inside a context manager (repeatable, no output
directory, no working-directory change), so the package never runs a `@hydra.main` app.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf

from hieramamba.engine.config_schema import check_run_config
from hieramamba.errors import ConfigError

GROUPS = ("dataset", "model", "train", "eval", "scale")
# Top-level keys that say where a run lives, not what it computes: they never take part in the
# config comparison on resume nor in the config hash.
PATH_KEYS = ("out", "checkpoint_dir")
NO_ABLATION = ("full", "none", "null")
# control and seed_offset are the workflow's (which row of the ablation table, which seeds to run);
# a run reads only its overrides and gets its seed from `seed=`
ABLATION_KEYS = {"description", "tables", "overrides", "control", "seed_offset"}
SCALE_KEYS = {"name", "description", "all", "per_dataset", "per_model"}
SCALE_MODEL_KEYS = {"all", "per_dataset"}

REPO_ROOT = Path(__file__).resolve().parents[2]


def dataset_family(dataset_choice: str) -> str:
    """The released dataset a (possibly synthetic) dataset config imitates: synth_tacos -> tacos."""
    return dataset_choice[len("synth_"):] if dataset_choice.startswith("synth_") else dataset_choice


# --------------------------------------------------------------------------------------------
# command-line overrides


def _parse_overrides(overrides: Iterable[str]) -> list[tuple[str, Any]]:
    """hydra override strings -> [(key, python value)]; only plain `key=value` is accepted."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    overrides = list(overrides)
    if not overrides:
        return []
    parser = OverridesParser.create()
    try:
        parsed = parser.parse_overrides(overrides=overrides)
    except Exception as exc:  # hydra's OverrideParseException
        raise ConfigError(f"cannot parse overrides {overrides}: {exc}") from None
    out = []
    for text, ov in zip(overrides, parsed):
        if ov.is_delete() or ov.is_add() or ov.is_force_add():
            raise ConfigError(
                f"override {text!r}: only key=value is supported (no '~', '+', '++'); "
                "every key must exist in the composed config"
            )
        if ov.is_sweep_override():
            raise ConfigError(f"override {text!r}: sweeps belong to the DAG, not to one run")
        out.append((ov.key_or_group, ov.value()))
    return out


def _plain(value: Any) -> Any:
    """Hydra/OmegaConf values -> plain python containers."""
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value


def set_key(cfg: DictConfig, key: str, value: Any, source: str, open_mappings: frozenset[str] = frozenset(),
            sources: dict[str, str] | None = None) -> None:
    """Set dotted `key` to `value`; the key must exist (error names the key and the source).

    One exception: a leaf under a mapping the config declares empty (`{}`, an open set of keyword
    arguments such as `model.backbone.snag`) may be added; the module it configures rejects
    unknown names when it is built. `sources`, when given, records which source set `key` (the
    schema check's messages say where a bad value came from).
    """
    parts = key.split(".")
    node: Any = cfg
    for i, part in enumerate(parts):
        prefix = ".".join(parts[:i]) or "<root>"
        open_leaf = i == len(parts) - 1 and isinstance(node, DictConfig) and ".".join(parts[:i]) in open_mappings
        if open_leaf:
            break
        if not isinstance(node, DictConfig) or part not in node:
            known = sorted(node.keys()) if isinstance(node, DictConfig) else []
            raise ConfigError(
                f"{source}: unknown config key {key!r} (no {part!r} under {prefix}; "
                f"known keys there: {', '.join(map(str, known)) or 'none'})"
            )
        if i < len(parts) - 1:
            node = node[part]
    with _writable(cfg):
        OmegaConf.update(cfg, key, _plain(value), merge=False)
    if sources is not None:  # a mapping set as a whole replaces what set its leaves before
        for older in [k for k in sources if k.startswith(key + ".")]:
            del sources[older]
        sources[key] = source


def empty_mappings(cfg: DictConfig) -> frozenset[str]:
    """Dotted paths of the mappings declared empty (`{}`) in a composed config."""
    empty: set[str] = set()

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            if not node and prefix:
                empty.add(prefix)
            for k, v in node.items():
                walk(v, f"{prefix}.{k}" if prefix else str(k))

    walk(OmegaConf.to_container(cfg, resolve=False), "")
    return frozenset(empty)


class _writable:
    def __init__(self, cfg: DictConfig):
        self.cfg = cfg

    def __enter__(self):
        self.struct = OmegaConf.is_struct(self.cfg)
        self.readonly = OmegaConf.is_readonly(self.cfg)
        OmegaConf.set_struct(self.cfg, False)
        OmegaConf.set_readonly(self.cfg, False)

    def __exit__(self, *exc):
        OmegaConf.set_struct(self.cfg, self.struct)
        OmegaConf.set_readonly(self.cfg, self.readonly)


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mapping -> {dotted key: leaf}; dotted keys in the input are kept as they are."""
    flat: dict[str, Any] = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            flat.update(flatten(v, key + "."))
        else:
            flat[key] = v
    return flat


# --------------------------------------------------------------------------------------------
# ablations


def find_ablation(name_or_path: str | os.PathLike) -> Path:
    """An ablation YAML by path, or by name in ./ablations/, $HIERAMAMBA_ABLATIONS, <repo>/ablations/."""
    text = str(name_or_path)
    direct = Path(text)
    if direct.suffix in (".yaml", ".yml") or os.sep in text:
        if direct.is_file():
            return direct
        raise ConfigError(f"ablation file {text!r} not found")
    dirs = [Path.cwd() / "ablations"]
    if os.environ.get("HIERAMAMBA_ABLATIONS"):
        dirs.insert(0, Path(os.environ["HIERAMAMBA_ABLATIONS"]))
    dirs.append(REPO_ROOT / "ablations")
    for d in dirs:
        for ext in (".yaml", ".yml"):
            if (d / f"{text}{ext}").is_file():
                return d / f"{text}{ext}"
    raise ConfigError(f"ablation {text!r} not found; looked in {', '.join(str(d) for d in dirs)}")


def load_ablation(path: Path) -> dict[str, Any]:
    """Read and check an ablation file: {description, tables, overrides: {dotted key: value}}."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"ablation {path}: unreadable YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"ablation {path}: must be a mapping with 'overrides'")
    extra = set(data) - ABLATION_KEYS
    if extra:
        raise ConfigError(f"ablation {path}: unknown top-level key(s) {sorted(extra)}; allowed {sorted(ABLATION_KEYS)}")
    overrides = data.get("overrides") or {}
    if not isinstance(overrides, dict):
        raise ConfigError(f"ablation {path}: 'overrides' must be a mapping of dotted keys to values")
    return {"description": data.get("description", ""), "tables": data.get("tables", []), "overrides": flatten(overrides)}


# --------------------------------------------------------------------------------------------
# composition


def _compose_groups(choices: Mapping[str, str]) -> tuple[DictConfig, dict[str, str]]:
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    group_overrides = [f"{g}={v}" for g, v in choices.items()]
    if GlobalHydra.instance().is_initialized():  # someone else's initialize(); ours is scoped
        GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module="hieramamba.conf", version_base="1.3"):
            cfg = compose(config_name="config", overrides=group_overrides, return_hydra_config=True)
    except Exception as exc:  # hydra's MissingConfigException / ConfigCompositionException
        raise ConfigError(f"cannot compose config groups {group_overrides}: {exc}") from None
    picked = {g: str(cfg.hydra.runtime.choices[g]) for g in GROUPS}
    with _writable(cfg):
        del cfg["hydra"]
    return cfg, picked


def available_options(group: str) -> list[str]:
    """The options of one config group (file stems under conf/<group>/)."""
    d = Path(__file__).resolve().parents[1] / "conf" / group
    return sorted(p.stem for p in d.glob("*.yaml"))


def compose_config(overrides: Iterable[str] = (), ablation: str | os.PathLike | None = None) -> DictConfig:
    """The resolved run config for hydra-style `overrides` (`dataset=tacos`, `train.lr=1e-4`, ...).

    `ablation` (or an `ablation=NAME|PATH` override) names an ablation YAML whose `overrides` are
    applied after the scale table and before the command-line values.
    """
    parsed = _parse_overrides(overrides)
    choices: dict[str, str] = {}
    values: list[tuple[str, Any]] = []
    for key, value in parsed:
        if key in GROUPS:
            choices[key] = str(value)
        elif key == "ablation":
            ablation = None if value is None else str(value)
        else:
            values.append((key, value))

    cfg, picked = _compose_groups(choices)
    family = dataset_family(picked["dataset"])
    open_maps = empty_mappings(cfg)
    sources: dict[str, str] = {}  # dotted key -> what set it last (for the schema check's message)

    # 1. the scale's table (a description of the run size, then dropped from the config):
    #    all < per_dataset[family] < per_model[model].all < per_model[model].per_dataset[family]
    scale = OmegaConf.to_container(cfg.scale, resolve=False)
    where = f"scale {picked['scale']}"
    extra = set(scale) - SCALE_KEYS
    if extra:
        raise ConfigError(f"{where}: unknown top-level key(s) {sorted(extra)}; allowed {sorted(SCALE_KEYS)}")
    per_dataset = scale.get("per_dataset") or {}
    if per_dataset and family not in per_dataset:
        raise ConfigError(f"{where}: no settings for dataset family {family!r} (dataset={picked['dataset']}); "
                          f"has {sorted(per_dataset)}")
    per_model = (scale.get("per_model") or {}).get(picked["model"]) or {}
    extra = set(per_model) - SCALE_MODEL_KEYS
    if extra:
        raise ConfigError(f"{where}: per_model.{picked['model']} has unknown key(s) {sorted(extra)}; "
                          f"allowed {sorted(SCALE_MODEL_KEYS)}")
    applied = flatten(scale.get("all") or {})
    applied.update(flatten(per_dataset.get(family) or {}))
    applied.update(flatten(per_model.get("all") or {}))
    applied.update(flatten((per_model.get("per_dataset") or {}).get(family) or {}))
    with _writable(cfg):
        cfg.scale = OmegaConf.create({"name": picked["scale"]})
    for key, value in applied.items():
        set_key(cfg, key, value, f"{where} ({family}, model {picked['model']})", open_maps, sources)

    # 2. the ablation
    variant = "full"
    if ablation is not None and str(ablation) not in NO_ABLATION:
        path = find_ablation(ablation)
        ab = load_ablation(path)
        variant = path.stem
        for key, value in ab["overrides"].items():
            if key.split(".")[0] not in GROUPS[:-1]:
                raise ConfigError(f"ablation {path}: key {key!r} is outside the groups {list(GROUPS[:-1])}")
            set_key(cfg, key, value, f"ablation {path}", open_maps, sources)
    set_key(cfg, "variant", variant, "ablation")

    # 3. the command line's values
    for key, value in values:
        set_key(cfg, key, value, "command line", open_maps, sources)

    try:
        plain = OmegaConf.to_container(cfg, resolve=True)
    except Exception as exc:  # omegaconf's InterpolationResolutionError and friends
        raise ConfigError(f"cannot resolve the config: {exc}") from None
    check_run_config(plain, "run config", sources)  # types, ranges, allowed values: before anything is built
    resolved = OmegaConf.create(plain)
    validate(resolved)
    OmegaConf.set_struct(resolved, True)
    return resolved


# --------------------------------------------------------------------------------------------
# checks, comparison, hashing

def validate(cfg: DictConfig) -> None:
    """Rules across keys, after the schema has checked each key on its own (types, ranges, values)."""
    t = cfg.train
    if t.microbatch_size is not None and t.microbatch_size > t.batch_size:
        raise ConfigError(f"train.microbatch_size={t.microbatch_size!r}: must be in 1..train.batch_size ({t.batch_size})")
    if t.epochs + t.warmup_epochs < 1:
        raise ConfigError(f"train.epochs={t.epochs}, train.warmup_epochs={t.warmup_epochs}: need >= 1 epoch in total")
    if t.anneal_epochs > t.epochs:
        raise ConfigError(f"train.anneal_epochs={t.anneal_epochs}: the anneal runs within the epochs after the "
                          f"warm-up, so it must be <= train.epochs ({t.epochs})")
    if t.crop_ratio is not None and not t.crop_ratio[0] <= t.crop_ratio[1]:
        raise ConfigError(f"train.crop_ratio={list(t.crop_ratio)}: must be null or [lo, hi] with 0 < lo <= hi <= 1")
    edges = list(cfg.eval.length_bins)
    if any(b <= a for a, b in zip(edges, edges[1:])):
        raise ConfigError(f"eval.length_bins={edges}: bin edges must increase")


def comparable(cfg: DictConfig | Mapping) -> dict[str, Any]:
    """The config as plain data without the location keys (what a resume must match)."""
    data = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else copy.deepcopy(dict(cfg))
    for key in PATH_KEYS:
        data.pop(key, None)
    return data


def config_sha(cfg: DictConfig | Mapping) -> str:
    """sha256 of the canonical JSON of the comparable config."""
    text = json.dumps(comparable(cfg), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def config_diff(old: DictConfig | Mapping, new: DictConfig | Mapping) -> list[str]:
    """Dotted keys whose values differ (present in only one counts), location keys ignored."""
    a, b = flatten(comparable(old)), flatten(comparable(new))
    return sorted(k for k in set(a) | set(b) if a.get(k, "<absent>") != b.get(k, "<absent>"))


def to_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg, resolve=True)


def load_yaml_config(path: str | os.PathLike) -> DictConfig:
    """A run directory's config.yaml, checked against the schema (a hand edit is named, not built)."""
    try:
        cfg = OmegaConf.load(path)
        plain = OmegaConf.to_container(cfg, resolve=True)
    except Exception as exc:  # noqa: BLE001 - YAML / omegaconf errors: one message naming the file
        raise ConfigError(f"{path}: unreadable run config: {exc}") from None
    if not isinstance(plain, dict):
        raise ConfigError(f"{path}: a run config must be a mapping")
    check_run_config(plain, str(path))
    validate(cfg)
    OmegaConf.set_struct(cfg, True)
    return cfg
