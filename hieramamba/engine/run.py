"""The run directory: its layout, environment facts, and atomic JSON outputs.

Layout (DEVELOPING.md, "run directory"): DIR/config.yaml, DIR/train.log, DIR/train_curve.csv,
DIR/checkpoints/ (or the `checkpoint_dir` the DAG gives), DIR/trained.json, DIR/predictions.json,
DIR/hits.csv.gz, DIR/metrics.json. trained.json is written atomically once training is done (the
DAG's training job ends there and its evaluation job starts from it); predictions, hits and
metrics are written last and atomically (metrics.json last of all), so a crashed run leaves no
metrics.json.
"""

from __future__ import annotations

import importlib.metadata
import logging
import platform
import resource
import subprocess
import sys
from pathlib import Path

import torch

from hieramamba.atomic import atomic_write_json, atomic_write_text, remove_stale_temp_files  # noqa: F401 (re-exported)

CONFIG = "config.yaml"
TRAIN_LOG = "train.log"
TRAIN_CURVE = "train_curve.csv"
PREDICTIONS = "predictions.json"
METRICS = "metrics.json"
HITS = "hits.csv.gz"  # per-query hits behind metrics.json (hieramamba.evaluation.hits_file)
TRAINED = "trained.json"  # training's record: written once training is done, before evaluation
CHECKPOINTS = "checkpoints"
# Fields of metrics.json that measure this execution rather than the result.
TIMING_FIELDS = ("train_time_s", "eval_time_s", "peak_mem_mb")
TRAINED_KEYS = ("dataset", "variant", "seed", "epochs", "iterations", "train_time_s", "peak_mem_mb", "versions",
                "device", "git_commit", "config_sha")
METRICS_KEYS = (
    "dataset", "variant", "seed", "split", "protocol", "metrics", "n_queries", "n_dropped", "data_quirks",
    "by_length_bin", "by_query_kind", "n_params", "n_params_backbone", "train_time_s", "eval_time_s",
    "peak_mem_mb", "versions", "device", "git_commit", "config_sha",
)

REPO_ROOT = Path(__file__).resolve().parents[2]
FILE_ONLY = "file_only"  # logging `extra` key: the record goes to train.log, not to the screen


# ---------------------------------------------------------------- environment facts


def dist_version(name: str) -> str | None:
    """An installed distribution's version from its metadata (nothing imported), or None."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def versions() -> dict[str, str | None]:
    """Library versions; mamba_ssm is looked up in the installed metadata, never imported."""
    from hieramamba import __version__

    return {
        "python": platform.python_version(),
        "torch": torch.__version__.split("+")[0],
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "mamba_ssm": dist_version("mamba_ssm") or dist_version("mamba-ssm"),
        "hieramamba": __version__,
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return f"cuda ({props.name}, {props.total_memory / 2**30:.0f} GiB, sm_{props.major}{props.minor})"
    return f"cpu ({_cpu_model()}, {torch.get_num_threads()} threads)"


def git_commit(root: Path = REPO_ROOT) -> str | None:
    """HEAD of the checkout the package runs from; None outside git or before the first commit."""
    try:
        res = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip() if res.returncode == 0 and res.stdout.strip() else None


def peak_memory_mb(device: torch.device) -> float:
    """Peak accelerator memory on CUDA; the process's peak resident set size on CPU."""
    if device.type == "cuda":
        return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return round(rss / (2**20 if sys.platform == "darwin" else 2**10), 1)


# ---------------------------------------------------------------- logging


def file_logger(run_dir: Path, name: str = "hieramamba.train") -> logging.Logger:
    """A logger appending to DIR/train.log and echoing to stderr (one handler each per run directory).

    The stderr echo is what a user at a terminal, and a Snakemake rule's `log:`, sees of a run.
    Records logged with `extra={FILE_ONLY: True}` (a failed run's traceback) go to the file only:
    the command line shows the error as one line (hieramamba.errors.report_error).
    """
    logger = logging.getLogger(f"{name}.{run_dir.resolve()}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    path = str((run_dir / TRAIN_LOG).resolve())
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(message)s")
    if not any(getattr(h, "baseFilename", None) == path for h in logger.handlers):
        handler = logging.FileHandler(path)
        handler.setFormatter(formatter)
        logger.addHandler(handler)
    if not any(type(h) is logging.StreamHandler for h in logger.handlers):
        echo = logging.StreamHandler(sys.stderr)
        echo.setFormatter(formatter)
        echo.addFilter(lambda record: not getattr(record, FILE_ONLY, False))
        logger.addHandler(echo)
    return logger


def close_logger(logger: logging.Logger) -> None:
    for h in list(logger.handlers):
        h.close()
        logger.removeHandler(h)


# ---------------------------------------------------------------- train -> evaluate


def checkpoint_dir_of(cfg, run_dir: Path) -> Path:
    """Where a run's checkpoints are: the config's `checkpoint_dir` (the DAG's), else DIR/checkpoints."""
    return Path(cfg.checkpoint_dir) if cfg.get("checkpoint_dir") else Path(run_dir) / CHECKPOINTS


def _run_paths(cfg) -> tuple[Path, Path]:
    run_dir = Path(cfg.out)
    return run_dir, checkpoint_dir_of(cfg, run_dir)


def prepare_run_dir(cfg) -> Path:
    """Create DIR and write DIR/config.yaml; an existing DIR must hold the same config."""
    from hieramamba.engine.config import to_yaml
    from hieramamba.engine.trainer import check_same_config

    run_dir, _ = _run_paths(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / CONFIG
    if path.is_file():
        check_same_config(path.read_text(), cfg, f"run directory {run_dir}")
    else:
        atomic_write_text(path, to_yaml(cfg))
    return run_dir


def build_data(cfg):
    from hieramamba.data.dataset import GroundingDataset

    return GroundingDataset.from_config(cfg.dataset)


def _parameter_counts(model) -> tuple[int | None, int | None]:
    """(whole model, backbone) parameter counts for the backbone table; None for a baseline."""
    if model is None:
        return None, None
    total = sum(p.numel() for p in model.parameters())
    backbone = getattr(model, "backbone", None)
    return total, (sum(p.numel() for p in backbone.parameters()) if backbone is not None else None)


def _provenance(cfg, device: torch.device) -> dict:
    """What produced a record (metrics.json, trained.json): package versions, device, commit, config."""
    from hieramamba.engine.config import config_sha

    return {"versions": versions(), "device": describe_device(device), "git_commit": git_commit(),
            "config_sha": config_sha(cfg)}


def _metrics_record(cfg, split: str, protocol: str, scored: dict, *, data_quirks: dict, train_time: float,
                    eval_time: float, device: torch.device, variant: str | None = None, model=None,
                    train_peak_mem_mb: float | None = None) -> dict:
    """metrics.json; `n_dropped` = the evaluated split's queries the reader dropped (data_quirks)
    plus the zero-length ground truth the scorer dropped. `peak_mem_mb` is the run's peak: this
    process's, or training's (`train_peak_mem_mb`, from trained.json) when that ran in another
    process and was higher."""
    from hieramamba.data.run_quirks import dropped_queries

    n_params, n_params_backbone = _parameter_counts(model)
    record = {
        "dataset": str(cfg.dataset.name),
        "variant": variant or str(cfg.variant),
        "seed": int(cfg.seed),
        "split": split,
        "protocol": protocol,
        **scored,
        "n_dropped": int(scored["n_dropped"]) + dropped_queries(data_quirks.get(split, {})),
        "data_quirks": data_quirks,
        "n_params": n_params,
        "n_params_backbone": n_params_backbone,
        "train_time_s": round(float(train_time), 3),
        "eval_time_s": round(float(eval_time), 3),
        "peak_mem_mb": max(peak_memory_mb(device), float(train_peak_mem_mb or 0.0)),
        **_provenance(cfg, device),
    }
    return {k: record[k] for k in METRICS_KEYS}


def _evaluate_model(cfg, data, parts, weights_module, split: str, device: torch.device):
    from hieramamba.engine.inference import eval_truncates_text, predict_split

    return predict_split(
        weights_module, data, split, points_for=parts.points_for, pad_multiple=parts.pad_multiple,
        vid_stride=parts.vid_stride, eval_cfg=cfg.eval, device=device,
        autocast=bool(cfg.train.bf16) and device.type == "cuda", progress=bool(cfg.train.progress),
        max_text_len=parts.max_text_len if eval_truncates_text(cfg) else None,
    )


def _trained_record(cfg, result, device: torch.device) -> dict:
    """trained.json: what training did and cost (the evaluation job copies its peak memory)."""
    record = {
        "dataset": str(cfg.dataset.name),
        "variant": str(cfg.variant),
        "seed": int(cfg.seed),
        "epochs": int(result.epochs_done),
        "iterations": int(result.iteration),
        "train_time_s": round(float(result.train_time_s), 3),
        "peak_mem_mb": peak_memory_mb(device),
        **_provenance(cfg, device),
    }
    return {k: record[k] for k in TRAINED_KEYS}


def _training_peak_mem_mb(run_dir: Path, cfg) -> float | None:
    """Training's peak memory from DIR/trained.json when it belongs to this config; None without
    one (a run trained before trained.json existed). An unreadable one is a CheckpointError naming it."""
    import json

    from hieramamba.engine.config import config_sha
    from hieramamba.errors import CheckpointError

    path = run_dir / TRAINED
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
        return float(record["peak_mem_mb"]) if record.get("config_sha") == config_sha(cfg) else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CheckpointError(path, f"training's record is unreadable [{type(exc).__name__}: {exc}]",
                              "Train the run again (`hieramamba train` rewrites it), or delete it") from None


def run_training(cfg, evaluate: bool = True) -> dict:
    """`hieramamba train`: config.yaml, train (with resume), trained.json, then (unless `evaluate`
    is false: `hieramamba train --no-eval`) evaluate, predictions + metrics. Returns metrics.json's
    record, or trained.json's without evaluation."""
    import time

    from hieramamba.engine.inference import score_with_hits, write_predictions
    from hieramamba.engine.trainer import train

    run_dir = prepare_run_dir(cfg)
    _, ckpt_dir = _run_paths(cfg)
    logger = file_logger(run_dir)
    try:
        for folder in dict.fromkeys((ckpt_dir, run_dir)):  # a SIGKILL during an atomic write leaves these
            for stale in remove_stale_temp_files(folder):
                logger.info("removed %s, the temporary file of a write that was interrupted", stale)
        data = build_data(cfg)
        result = train(cfg, data, run_dir, ckpt_dir, logger)
        device = next(result.parts.model.parameters()).device
        trained = _trained_record(cfg, result, device)
        atomic_write_json(run_dir / TRAINED, trained)
        if not evaluate:
            logger.info("trained: %d iterations in %.1f s; evaluate with `hieramamba evaluate %s`",
                        trained["iterations"], trained["train_time_s"], run_dir)
            return trained
        split = str(cfg.eval.split)
        t0 = time.perf_counter()
        preds = _evaluate_model(cfg, data, result.parts, result.ema.module, split, device)
        scored, write_hits = score_with_hits(preds, cfg.eval, str(cfg.eval.protocol))
        eval_time = time.perf_counter() - t0
        write_predictions(run_dir / PREDICTIONS, preds, data)
        write_hits(run_dir / HITS)  # before metrics.json, which marks the run complete
        record = _metrics_record(cfg, split, str(cfg.eval.protocol), scored, data_quirks=result.data_quirks,
                                 train_time=result.train_time_s, eval_time=eval_time, device=device,
                                 model=result.parts.model)
        atomic_write_json(run_dir / METRICS, record)
        logger.info("evaluated %s: %s", split, " ".join(f"{k} {v:.2f}" for k, v in record["metrics"].items()))
        return record
    except Exception as exc:
        # the traceback goes to train.log; the command line prints the error as one line
        logger.error("run failed: %s", exc, exc_info=True, extra={FILE_ONLY: True})
        raise
    finally:
        close_logger(logger)


def run_evaluation(run_dir: Path, *, checkpoint: str | None = None, split: str | None = None,
                   baseline: str | None = None, overrides: list[str] | None = None) -> dict:
    """`hieramamba evaluate DIR`: score the run's EMA weights (or a checkpoint, or the prior)."""
    import time

    from hieramamba.data.preflight import empty_split_problems, raise_first
    from hieramamba.data.run_quirks import run_data_quirks
    from hieramamba.engine import checkpoint as ckpt
    from hieramamba.engine.config import compose_config, load_yaml_config
    from hieramamba.engine.factory import build_parts
    from hieramamba.engine.inference import (eval_truncates_text, fit_prior, prior_predictions, score_with_hits,
                                             write_predictions)
    from hieramamba.engine.trainer import check_same_config, select_device, seed_everything, set_determinism
    from hieramamba.errors import ConfigError

    run_dir = Path(run_dir)
    cfg_path = run_dir / CONFIG
    if cfg_path.is_file():
        if overrides:
            raise ConfigError(f"{run_dir} already has a config.yaml; overrides {overrides} are not applied to an existing run")
        cfg = load_yaml_config(cfg_path)
    else:
        if not overrides and checkpoint is None and baseline is None:
            raise FileNotFoundError(f"{cfg_path} not found (not a run directory)")
        cfg = compose_config(list(overrides or []) + [f"out={run_dir}"])
        prepare_run_dir(cfg)
    data = build_data(cfg)
    split = split or str(cfg.eval.split)
    if data.split(split).num_queries == 0:  # nothing to predict; an unannotated split (Ego4D test) still is
        raise_first(empty_split_problems(data, {"evaluation": split}))
    protocol = str(cfg.eval.protocol)
    tags = ([baseline] if baseline else []) + (["ckpt"] if checkpoint and not baseline else []) + \
        ([split] if split != str(cfg.eval.split) else [])
    suffix = "".join(f".{t}" for t in tags)
    t0 = time.perf_counter()
    device = torch.device("cpu")
    train_time = 0.0
    train_peak = None
    model = None
    if baseline == "prior":
        preds = prior_predictions(data, split, fit_prior(data, "train", k=max(int(r) for r in cfg.eval.ranks)))
        variant = "prior"
        data_quirks = run_data_quirks(data, {"train": False, split: False}, None)  # the prior reads no text
    else:
        device = select_device(cfg.train.device)
        set_determinism(cfg, device)  # threads and algorithms as training's process evaluates
        seed_everything(int(cfg.seed))
        parts = build_parts(cfg, data, device)
        ckpt_dir = checkpoint_dir_of(cfg, run_dir)  # run_dir, not cfg.out: DIR may have moved
        source = Path(checkpoint) if checkpoint else ckpt.last_checkpoint(ckpt_dir)
        if source is None:
            raise FileNotFoundError(f"no checkpoint in {ckpt_dir} (train first, or pass --checkpoint)")
        remedy = ("Pass another file with --checkpoint (ours, or one made by convert-checkpoint)" if checkpoint else
                  f"Train the run again (delete {source} first), or pass another file with --checkpoint")
        state = ckpt.load_checkpoint(source, map_location=device, remedy=remedy)
        name, weights = ckpt.inference_weights(state, source, remedy)
        if isinstance(state.get("config_yaml"), str) and not checkpoint:
            check_same_config(state["config_yaml"], cfg, f"checkpoint {source}")
        ckpt.load_weights(parts.model, weights, source, f"{name!r} weights", remedy)
        train_time = float(state.get("train_time_s", 0.0))
        if not checkpoint:  # the run's own training, maybe in another process (`train --no-eval`)
            train_peak = _training_peak_mem_mb(run_dir, cfg)
        preds = _evaluate_model(cfg, data, parts, parts.model, split, device)
        variant = None
        model = parts.model
        data_quirks = run_data_quirks(data, {"train": True, split: eval_truncates_text(cfg)}, parts.max_text_len)
    scored, write_hits = score_with_hits(preds, cfg.eval, protocol)
    record = _metrics_record(cfg, split, protocol, scored, data_quirks=data_quirks, train_time=train_time,
                             eval_time=time.perf_counter() - t0, device=device, variant=variant, model=model,
                             train_peak_mem_mb=train_peak)
    write_predictions(run_dir / f"predictions{suffix}.json", preds, data)
    write_hits(run_dir / HITS.replace(".csv.gz", f"{suffix}.csv.gz"))
    atomic_write_json(run_dir / f"metrics{suffix}.json", record)
    return record


def convert_checkpoint(source: Path, target: Path, overrides: list[str] | None = None) -> dict:
    """An authors' checkpoint (their `last.pth`: `model` + `model_ema`) -> our checkpoint layout
    {"model", "ema", "config_yaml", "source"}, for the model the `overrides` compose (e.g.
    `dataset=tacos scale=paper`; feature widths from the dataset config or `model.in_dim=` /
    `model.text.in_dim=`). Read with `weights_only=True`: a file holding arbitrary objects is
    refused rather than unpickled. Every key must fit (the converter lists what does not)."""
    from hieramamba.engine.checkpoint import load_checkpoint, save_checkpoint
    from hieramamba.engine.config import compose_config, to_yaml

    if not source.is_file():
        raise FileNotFoundError(f"{source} not found")
    cfg = compose_config(list(overrides or []))
    raw = load_checkpoint(source, map_location="cpu",
                          remedy="Pass the authors' checkpoint itself (their last.pth, holding 'model' / 'model_ema')")
    out = {"source": str(source), "config_yaml": to_yaml(cfg), **convert_authors_weights(raw, cfg, source)}
    save_checkpoint(target, out)
    return out


def convert_authors_weights(raw, cfg, source: Path | str = "the authors' checkpoint") -> dict:
    """The content of an authors' checkpoint -> {"model": ours, "ema": ours} for the model of
    `cfg` (feature widths from `model.in_dim` / `model.text.in_dim`, else the dataset config).
    Weights that do not fit are one CheckpointError naming `source`."""
    from hieramamba.engine.checkpoint import brief_exception
    from hieramamba.engine.factory import model_config_with_dataset_widths
    from hieramamba.errors import CheckpointError, ConfigError
    from hieramamba.models import compat
    from hieramamba.models.model import build_model

    mcfg = model_config_with_dataset_widths(cfg)
    if mcfg["in_dim"] is None or mcfg["text"]["in_dim"] is None:
        raise ConfigError("feature widths unknown: pick a dataset whose config sets features.video_dim/text_dim, "
                          "or pass model.in_dim=... model.text.in_dim=...")
    model = build_model(mcfg)
    out = {}
    for ours, theirs in (("model", "model"), ("ema", "model_ema")):
        try:
            state = compat.extract_state_dict(raw, prefer=theirs)
            out[ours] = compat.convert_authors_state_dict(state, model)
        except (compat.StateDictMismatch, AttributeError, TypeError) as exc:
            raise CheckpointError(source, f"its {theirs!r} weights do not fit the model this config builds "
                                  f"[{brief_exception(exc)}]", "Check that dataset=, scale= and model.* select the "
                                  "model it was trained as (--debug lists every key), or pass another file") from exc
    return out
