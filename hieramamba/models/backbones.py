"""The shared backbone interface and the lazy registry that builds a backbone by name.

Every backbone (HieraMamba and the seed backbones) has
``forward(x (B, C_in, T), mask (B, 1, T)) -> BackboneOutput`` and exposes ``num_levels`` and
``level_strides`` (ints, relative to the input grid). Modules are imported only when their
backbone is built, so a missing optional dependency of one backbone never breaks another.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import torch

from hieramamba.errors import ConfigError


@dataclass
class BackboneOutput:
    """Pyramid of refined tokens (and, for anchor backbones, the anchors of every level).

    fpn[l] (B, D, T_l), fpn_masks[l] (B, 1, T_l) bool; anchors[l] (B, D, A_l) and
    anchor_masks[l] (B, 1, A_l) bool, or None for backbones without anchors.
    """

    fpn: list[torch.Tensor]
    fpn_masks: list[torch.Tensor]
    anchors: list[torch.Tensor] | None = None
    anchor_masks: list[torch.Tensor] | None = None


BACKBONES: dict[str, str] = {
    "hieramamba": "hieramamba.models.backbone:HieraMambaBackbone",
    "snag": "hieramamba.models.snag_backbone:SnAGBackbone",
    "mstemba": "hieramamba.models.mstemba:MSTembaBackbone",
    "videomamba": "hieramamba.models.videomamba:VideoMambaBackbone",
}


def backbone_class(name: str) -> type:
    """The backbone class registered under ``name`` (its module is imported now)."""
    if name not in BACKBONES:
        raise ConfigError(f"model.backbone.name = {name!r} is not one of {sorted(BACKBONES)}")
    module_name, class_name = BACKBONES[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def build_backbone(name: str, **kwargs) -> torch.nn.Module:
    """Build the backbone registered under ``name`` with ``kwargs``."""
    return backbone_class(name)(**kwargs)
