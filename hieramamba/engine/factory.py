"""Build the model and what the engine needs to know about it from a run config.

The engine talks to the model only through `ModelParts`: the module, its width and anchor
stride (for ACC/SPC), its input geometry (max_seq_len, vid_stride, max_text_len, the coarsest
stride for eval padding) and its point generator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from omegaconf import OmegaConf

from hieramamba.errors import DataError


@dataclass
class ModelParts:
    model: torch.nn.Module
    embd_dim: int
    anchor_stride: int
    max_seq_len: int
    vid_stride: int  # backbone input stride (feature steps per model-grid step)
    max_text_len: int | None
    pad_multiple: int  # coarsest pyramid stride in feature steps
    points_for: Callable[[list[int]], list[torch.Tensor]]
    video_dim: int
    text_dim: int


def feature_dims(data) -> tuple[int, int]:
    """(video_dim, text_dim): the dataset config's values, else read from the first training video."""
    video_dim, text_dim = data.video_dim, data.text_dim
    if video_dim is None or text_dim is None:
        split = data.split("train") if "train" in data.records.splits else data.split(data.eval_split)
        video = next((v for v in split.videos.values() if v.queries), None)
        if video is None:
            raise DataError(data.config.get("_source", data.name), "no video with queries to read feature sizes from")
        if video_dim is None:
            video_dim = int(data.load_video_features(video.video_id).shape[1])
        if text_dim is None:
            text_dim = int(data.load_text_features(video.queries[0]).shape[1])
    return int(video_dim), int(text_dim)


def model_config_with_dataset_widths(cfg) -> dict:
    """`cfg.model` as a dict, with the dataset config's `features.video_dim` / `text_dim` filled in
    where the model leaves `in_dim` / `text.in_dim` null (both may stay null: synthetic datasets)."""
    mcfg = OmegaConf.to_container(cfg.model, resolve=True)
    feats = OmegaConf.to_container(cfg.dataset, resolve=True).get("features") or {}
    if mcfg.get("in_dim") is None:
        mcfg["in_dim"] = feats.get("video_dim")
    if mcfg.setdefault("text", {}).get("in_dim") is None:
        mcfg["text"]["in_dim"] = feats.get("text_dim")
    return mcfg


def build_parts(cfg, data, device: torch.device) -> ModelParts:
    """The model of `cfg.model`; feature widths the config leaves null are read from `data`."""
    video_dim, text_dim = feature_dims(data)
    return build_parts_for_dims(cfg, video_dim, text_dim, device, data.config.get("_source", data.name))


def build_parts_for_dims(cfg, video_dim: int, text_dim: int, device: torch.device, source: object) -> ModelParts:
    """The model of `cfg.model` for features `video_dim` / `text_dim` wide (`source` names where
    those widths come from, for the error when the config fixes other widths)."""
    from hieramamba.models.model import build_model
    from hieramamba.models.points import PointGenerator

    mcfg = OmegaConf.to_container(cfg.model, resolve=True)
    if mcfg.get("in_dim") is None:
        mcfg["in_dim"] = video_dim
    if mcfg.get("text", {}).get("in_dim") is None:
        mcfg.setdefault("text", {})["in_dim"] = text_dim
    if (mcfg["in_dim"], mcfg["text"]["in_dim"]) != (video_dim, text_dim):
        raise DataError(source,
                        f"features are {video_dim}-d video / {text_dim}-d text but model.in_dim="
                        f"{mcfg['in_dim']}, model.text.in_dim={mcfg['text']['in_dim']}")
    model = build_model(mcfg).to(device)
    stride = int(getattr(model.backbone, "stride", 2))
    pts = mcfg.get("points") or {}
    points = PointGenerator(int(mcfg["max_seq_len"]), int(model.num_levels), stride=stride,
                            **{k: pts[k] for k in ("regression_range", "sigma") if k in pts}).to(device)
    return ModelParts(
        model=model,
        embd_dim=int(mcfg["embd_dim"]),
        anchor_stride=stride,
        max_seq_len=int(mcfg["max_seq_len"]),
        vid_stride=int(model.level_strides[0]),
        max_text_len=mcfg.get("max_text_len"),
        pad_multiple=int(model.level_strides[-1]),
        points_for=lambda lengths: points(lengths),
        video_dim=video_dim,
        text_dim=text_dim,
    )
