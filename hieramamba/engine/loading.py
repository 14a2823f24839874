"""A trained model ready for inference, from a run directory or a checkpoint file.

Three sources are accepted, told apart by what they hold (never by their file name):

- a run directory (`DIR/config.yaml` + its last checkpoint, as `hieramamba train` writes it);
- one of our checkpoint files (`config_yaml` + `model` / `ema`: `train`'s `last.pth` or
  `convert-checkpoint`'s output);
- an authors' `last.pth` (`model` / `model_ema` whose keys start with `vid_net.`), converted on the
  fly with the config that `key=value` overrides compose (e.g. `dataset=tacos scale=paper`),
  exactly as `hieramamba convert-checkpoint` does. Our bare state_dict (keys `backbone.*`) also
  loads with such overrides.

Anything else is an unknown layout and an error naming the file and its top-level keys. The
evaluation uses the EMA weights, so does this. Feature widths the config leaves null (the
synthetic datasets) are read off the weights: the model is built once with two probe widths and
the checkpoint's shapes where they differ are the real widths.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from hieramamba.data.grid import FeatureGrid
from hieramamba.engine.factory import ModelParts
from hieramamba.errors import ConfigError, DataError

# Probe widths for reading feature widths off the weights: odd sizes no layer of ours has.
PROBE_VIDEO_DIM = 13
PROBE_TEXT_DIM = 17


@dataclass
class LoadedModel:
    """What inference needs: the composed run config, the model parts (weights loaded, eval mode),
    the dataset's feature grid (seconds <-> grid), and where it all came from."""

    cfg: DictConfig
    parts: ModelParts
    grid: FeatureGrid
    source: str
    layout: str  # "run directory", "checkpoint", "authors' checkpoint" or "state_dict"
    device: torch.device


def _state_dict_of(raw: Mapping) -> dict | None:
    """The parameter mapping inside a checkpoint's content (None when there is none)."""
    from hieramamba.models.compat import extract_state_dict

    sd = extract_state_dict(raw)
    if not sd or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        return None
    return sd


def _read_checkpoint(path: Path, overrides: list[str]) -> tuple[DictConfig, dict, str]:
    """(config, weights, layout) of a checkpoint file, or a DataError / ConfigError naming it."""
    from hieramamba.engine.checkpoint import inference_weights, load_checkpoint
    from hieramamba.engine.config import compose_config
    from hieramamba.engine.run import convert_authors_weights

    raw = load_checkpoint(path, remedy="Pass a run directory, one of our checkpoints or an authors' last.pth")
    if "config_yaml" in raw and ("ema" in raw or "model" in raw):
        if overrides:
            raise ConfigError(f"{path} carries its own config; overrides {overrides} are not applied to it")
        return OmegaConf.create(raw["config_yaml"]), inference_weights(raw, path)[1], "checkpoint"
    sd = _state_dict_of(raw)
    keys = sorted(str(k) for k in raw)[:8]
    expected = ("expected a run directory, our checkpoint (config_yaml + model/ema), an authors' last.pth "
                "(model/model_ema with vid_net.* keys) or our bare state_dict (backbone.* keys)")
    if sd is None:
        raise DataError(path, f"unknown checkpoint layout (top-level keys {keys}); {expected}")
    authors = any(k.startswith("vid_net.") for k in sd)
    ours = any(k.startswith("backbone.") for k in sd)
    if not (authors or ours):
        raise DataError(path, f"unknown checkpoint layout (parameter names like {sorted(sd)[:4]}); {expected}")
    if not overrides:
        raise ConfigError(f"{path} holds no config: name the model it fits with key=value overrides, "
                          "e.g. dataset=tacos scale=paper")
    cfg = compose_config(list(overrides))
    if authors:
        return cfg, convert_authors_weights(raw, cfg, path)["ema"], "authors' checkpoint"
    return cfg, sd, "state_dict"


def _read_run_dir(run_dir: Path, overrides: list[str]) -> tuple[DictConfig, dict]:
    from hieramamba.engine.checkpoint import LAST, inference_weights, last_checkpoint, load_checkpoint
    from hieramamba.engine.config import load_yaml_config
    from hieramamba.engine.run import CONFIG, checkpoint_dir_of
    from hieramamba.engine.trainer import check_same_config

    if overrides:
        raise ConfigError(f"{run_dir} is a run directory with its own config.yaml; overrides {overrides} are not applied")
    cfg_path = run_dir / CONFIG
    if not cfg_path.is_file():
        raise DataError(cfg_path, "not found: not a run directory (hieramamba train writes config.yaml)")
    cfg = load_yaml_config(cfg_path)
    ckpt_dir = checkpoint_dir_of(cfg, run_dir)
    source = last_checkpoint(ckpt_dir)
    if source is None:
        raise DataError(ckpt_dir / LAST, "no checkpoint: train the run first")
    state = load_checkpoint(source)
    if "config_yaml" in state:
        check_same_config(state["config_yaml"], cfg, f"checkpoint {source}")
    return cfg, inference_weights(state, source, "Train the run again, or pass one of its checkpoints")[1]


def feature_dims_of(cfg: DictConfig, weights: Mapping[str, torch.Tensor], source: object) -> tuple[int, int]:
    """(video_dim, text_dim) the weights were trained for: the config's when set, else read off the
    shapes of `weights` against a model built with the probe widths."""
    from hieramamba.engine.factory import model_config_with_dataset_widths
    from hieramamba.models.model import build_model

    mcfg = model_config_with_dataset_widths(cfg)
    video_dim, text_dim = mcfg["in_dim"], mcfg["text"]["in_dim"]
    if video_dim is not None and text_dim is not None:
        return int(video_dim), int(text_dim)
    probe = dict(mcfg, in_dim=PROBE_VIDEO_DIM if video_dim is None else video_dim)
    probe["text"] = dict(mcfg["text"], in_dim=PROBE_TEXT_DIM if text_dim is None else text_dim)
    found: dict[int, set[int]] = {PROBE_VIDEO_DIM: set(), PROBE_TEXT_DIM: set()}
    for key, value in build_model(probe).state_dict().items():
        theirs = weights.get(key)
        if theirs is None or theirs.dim() != value.dim():
            continue
        for ours_n, theirs_n in zip(value.shape, theirs.shape):
            if ours_n != theirs_n and ours_n in found:
                found[ours_n].add(int(theirs_n))
    if video_dim is None:
        if len(found[PROBE_VIDEO_DIM]) != 1:
            raise ConfigError(f"{source}: cannot read the video feature width off the weights; set model.in_dim")
        video_dim = found[PROBE_VIDEO_DIM].pop()
    if text_dim is None:
        if len(found[PROBE_TEXT_DIM]) != 1:
            raise ConfigError(f"{source}: cannot read the text feature width off the weights; set model.text.in_dim")
        text_dim = found[PROBE_TEXT_DIM].pop()
    return int(video_dim), int(text_dim)


def load_model(source: str | Path, overrides: list[str] | None = None, device: str | torch.device | None = None) -> LoadedModel:
    """A run directory or checkpoint file -> LoadedModel (weights loaded strictly, eval mode).

    `overrides` (key=value) compose the config for a checkpoint that carries none (an authors'
    last.pth); `device` None: the config's `train.device` ("auto": CUDA when available)."""
    from hieramamba.data.dataset import grid_from_config
    from hieramamba.engine.factory import build_parts_for_dims
    from hieramamba.engine.trainer import select_device

    path = Path(source)
    overrides = list(overrides or [])
    if path.is_dir():
        cfg, weights = _read_run_dir(path, overrides)
        layout = "run directory"
    elif path.is_file():
        cfg, weights, layout = _read_checkpoint(path, overrides)
    else:
        raise DataError(path, "not found (expected a run directory or a checkpoint file)")
    dev = torch.device(device) if device is not None else select_device(str(cfg.train.get("device", "auto")))
    video_dim, text_dim = feature_dims_of(cfg, weights, path)
    parts = build_parts_for_dims(cfg, video_dim, text_dim, dev, path)
    try:
        parts.model.load_state_dict(weights)
    except RuntimeError as exc:
        raise DataError(path, f"the weights do not fit the model its config builds: {exc}") from None
    parts.model.eval()
    dataset = OmegaConf.to_container(cfg.dataset, resolve=True)
    grid = grid_from_config(dict(dataset.get("features") or {}), f"dataset {dataset.get('name')!r} of {path}")
    return LoadedModel(cfg=cfg, parts=parts, grid=grid, source=str(path), layout=layout, device=dev)
