"""The grounding model: text net + fusion + backbone + heads (reference §1.6).

- **Late fusion** (TACoS, SnAG's design): video -> backbone (one row per video) -> fusion on every
  level (video rows repeated per query) -> heads.
- **Early fusion** (Ego4D, MAD): video -> ``vid_proj`` (masked 1x1 conv in_dim -> D) -> fusion
  (one row per query) -> backbone -> *the same* fusion module again on every level -> heads.

``forward(vid (B_v, C_in, T), vid_mask (B_v, 1, T), text (B_q, C_t, t), text_mask (B_q, 1, t),
queries_per_video (B_v,) long) -> ModelOutput``; queries are packed video by video.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn as nn

from hieramamba.errors import ConfigError
from hieramamba.models.attention import MaskedConv1D
from hieramamba.models.backbones import backbone_class, build_backbone
from hieramamba.models.fusion import XAttnFusion
from hieramamba.models.heads import ClsHead, RegHead
from hieramamba.models.text import build_text_net


@dataclass
class ModelOutput:
    """Per level l: ``logits[l] (B_q, T_l)``, ``offsets[l] (B_q, T_l, 2)`` (ReLU'd, in level-stride
    units), ``masks[l] (B_q, T_l)`` bool; and the backbone's ``fpn``, ``fpn_masks``, ``anchors``,
    ``anchor_masks`` (rows = videos for late fusion, queries for early fusion; ``fpn`` is the
    backbone output before late fusion)."""

    logits: list[torch.Tensor]
    offsets: list[torch.Tensor]
    masks: list[torch.Tensor]
    fpn: list[torch.Tensor]
    fpn_masks: list[torch.Tensor]
    anchors: list[torch.Tensor] | None
    anchor_masks: list[torch.Tensor] | None


class GroundingModel(nn.Module):
    """Build from explicit arguments, or from a config mapping with :func:`build_model`.

    ``backbone`` holds the backbone's name and keyword arguments (``{"name": "hieramamba",
    "num_levels": 8, ...}``); ``in_dim`` / ``embd_dim`` / ``max_seq_len`` / ``reference_precision``
    are passed to it by the model. ``text`` holds the text net's name and keyword arguments
    (``in_dim`` required). ``fusion``: ``mode`` (adaln | affine), ``n_layers``, ``n_heads``,
    ``attn_pdrop``, ``proj_pdrop``, ``path_pdrop``. ``head``: ``n_layers``, ``prior_prob``.
    """

    def __init__(self, in_dim: int, embd_dim: int, text: Mapping, backbone: Mapping | None = None,
                 max_seq_len: int = 2304, early_fusion: bool = False, fusion: Mapping | None = None,
                 head: Mapping | None = None, reference_precision: bool = False):
        super().__init__()
        backbone = dict(backbone or {"name": "hieramamba"})
        text = dict(text)
        fusion = dict(fusion or {})
        head = dict(head or {})
        self.early_fusion = bool(early_fusion)
        self.backbone_name = backbone.pop("name", "hieramamba")

        text_name = text.pop("name", "identity")
        self.text_net = build_text_net(text_name, reference_precision=reference_precision, **text)
        text_dim = self.text_net.out_dim

        if self.early_fusion:
            self.vid_proj = MaskedConv1D(in_dim, embd_dim, 1)
        self.backbone = build_backbone(self.backbone_name, in_dim=embd_dim if self.early_fusion else in_dim,
                                       embd_dim=embd_dim, max_seq_len=max_seq_len,
                                       reference_precision=reference_precision, **backbone)
        mode = fusion.pop("mode", "adaln")
        self.fusion = XAttnFusion(embd_dim, text_dim, xattn_mode=mode, **fusion)
        self.cls_head = ClsHead(embd_dim, n_layers=head.get("n_layers", 2), prior_prob=head.get("prior_prob", 0.0))
        self.reg_head = RegHead(embd_dim, self.backbone.num_levels, n_layers=head.get("n_layers", 2))
        self.embd_dim = embd_dim

    @property
    def num_levels(self) -> int:
        return self.backbone.num_levels

    @property
    def level_strides(self) -> list[int]:
        return list(self.backbone.level_strides)

    def encode_text(self, text: torch.Tensor, text_mask: torch.Tensor):
        return self.text_net(text, text_mask)

    def forward(self, vid: torch.Tensor, vid_mask: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor,
                queries_per_video: torch.Tensor | None = None) -> ModelOutput:
        if vid_mask.ndim == 2:
            vid_mask = vid_mask[:, None, :]
        if queries_per_video is None:
            if vid.shape[0] != text.shape[0]:
                raise ValueError("queries_per_video is required when videos and queries differ in number")
            queries_per_video = torch.ones(vid.shape[0], dtype=torch.long, device=vid.device)
        if int(queries_per_video.sum()) != text.shape[0]:
            raise ValueError(f"queries_per_video sums to {int(queries_per_video.sum())}, "
                             f"but there are {text.shape[0]} queries")
        text, text_mask = self.encode_text(text, text_mask)
        if self.early_fusion:
            vid, vid_mask = self.vid_proj(vid, vid_mask)
            vid, vid_mask = self.fusion(vid, vid_mask, text, text_mask, queries_per_video)  # (B_q, D, T)
        out = self.backbone(vid, vid_mask)
        # early fusion: rows are already queries, so no repetition happens in the second pass
        fused, fused_masks = self.fusion(out.fpn, out.fpn_masks, text, text_mask, queries_per_video)
        logits, masks = self.cls_head(fused, fused_masks)
        offsets, _ = self.reg_head(fused, fused_masks)
        return ModelOutput(logits=logits, offsets=offsets, masks=masks, fpn=out.fpn, fpn_masks=out.fpn_masks,
                           anchors=out.anchors, anchor_masks=out.anchor_masks)

    def ssm_backends(self) -> list[str]:
        """Which scan each SSM module of the model runs (after at least one forward)."""
        names = []
        for module in self.modules():
            if getattr(type(module), "backend_name", None) is None:
                continue
            try:
                names.append(str(module.backend_name))
            except RuntimeError as err:  # a backend that cannot run on this device
                names.append(f"unavailable ({err})")
        return sorted(set(names))

    def summary(self) -> str:
        """One line per component: backbone, mixers, SSM scan backend, fusion, parameter counts."""
        count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
        mixers = getattr(self.backbone, "mixers", lambda: {})()
        backends = self.ssm_backends()
        lines = [
            f"backbone: {self.backbone_name} ({type(self.backbone).__name__}), levels={self.num_levels}, "
            f"level_strides={self.level_strides}, params={count(self.backbone):,}",
        ]
        if mixers:
            lines.append("mixers: " + ", ".join(f"{k}={v}" for k, v in mixers.items()))
        lines.append("ssm backend: " + (", ".join(backends) if backends else "none (no SSM module)"))
        lines.append(f"text net: {type(self.text_net).__name__}, params={count(self.text_net):,}")
        lines.append(f"fusion: {'early (before the backbone and on every level)' if self.early_fusion else 'late'}, "
                     f"mode={self.fusion.xattn_mode}, layers={len(self.fusion.layers)}")
        lines.append(f"total params: {count(self):,}")
        return "\n".join(lines)


def _plain(cfg) -> dict:
    """A plain dict from a mapping or an OmegaConf node (resolved)."""
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(cfg, DictConfig):
            return OmegaConf.to_container(cfg, resolve=True)
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        pass
    return {k: (_plain(v) if isinstance(v, Mapping) else v) for k, v in dict(cfg).items()}


# keys of model.backbone that every backbone takes; the rest of model.backbone is HieraMamba's
GENERIC_BACKBONE_KEYS = ("num_levels", "num_convs", "input_stride", "use_abs_pe", "chunk_size", "ssm_backend")


def _accepted_backbone_kwargs(backbone: dict) -> dict:
    """The backbone's name and constructor arguments from ``model.backbone``.

    ``model.backbone`` lists HieraMamba's structural keys. A seed backbone picked with
    ``model.backbone.name`` gets only the generic keys (``GENERIC_BACKBONE_KEYS``, so e.g. the
    AMP window 5 never reaches SnAG, whose window is 19) plus its own sub-mapping
    ``model.backbone.<name>`` (e.g. ``model.backbone.snag.window_size``). Unknown keys raise.
    """
    from hieramamba.models.backbones import BACKBONES

    backbone = dict(backbone)
    name = backbone.pop("name", "hieramamba")
    own = {k: backbone.pop(k) for k in list(backbone) if k in BACKBONES}.get(name) or {}
    params = inspect.signature(backbone_class(name).__init__).parameters
    if name == "hieramamba":
        kwargs = backbone
    else:
        kwargs = {k: v for k, v in backbone.items() if k in GENERIC_BACKBONE_KEYS and k in params}
    kwargs.update({k: v for k, v in dict(own).items() if v is not None})
    unknown = sorted(k for k in kwargs if k not in params or k in ("self", "in_dim", "embd_dim", "max_seq_len"))
    if unknown:
        raise ConfigError(f"model.backbone: {unknown} are not arguments of the {name!r} backbone")
    return {"name": name, **kwargs}


def build_model(model_cfg, video_dim: int | None = None, text_dim: int | None = None) -> GroundingModel:
    """Build the model from the composed ``model`` config group (conf/model/hieramamba.yaml).

    ``video_dim`` / ``text_dim`` (the feature widths, known from the data) win over
    ``model.in_dim`` / ``model.text.in_dim``. ``model.points`` is not used here (the engine builds
    the :class:`~hieramamba.models.points.PointGenerator`).
    """
    cfg = _plain(model_cfg)
    in_dim = video_dim if video_dim is not None else cfg.get("in_dim")
    text_cfg = dict(cfg.get("text") or {})
    text_in = text_dim if text_dim is not None else text_cfg.get("in_dim")
    for key, value in (("model.in_dim (video feature width)", in_dim), ("model.embd_dim", cfg.get("embd_dim")),
                       ("model.text.in_dim (text feature width)", text_in)):
        if value is None:
            raise ConfigError(f"{key} is not set (the dataset config or the data provide it)")
    text_name = text_cfg.get("name", "identity")
    text = {"name": text_name, "in_dim": int(text_in), "embd_dim": text_cfg.get("embd_dim"),
            "max_seq_len": int(cfg.get("max_text_len") or 128), "n_heads": text_cfg.get("num_heads", 4),
            "use_abs_pe": text_cfg.get("use_abs_pe") if text_cfg.get("use_abs_pe") is not None
            else text_name == "transformer"}
    if text_name == "transformer":
        text.update(n_layers=text_cfg.get("num_layers", 5), proj_pdrop=text_cfg.get("proj_pdrop", 0.1),
                    path_pdrop=text_cfg.get("path_pdrop", 0.1))
    fusion_cfg = dict(cfg.get("fusion") or {})
    fusion = {"mode": fusion_cfg.get("xattn_mode", "adaln"), "n_layers": fusion_cfg.get("num_layers", 2),
              "n_heads": fusion_cfg.get("num_heads", 4), "proj_pdrop": fusion_cfg.get("proj_pdrop", 0.1),
              "path_pdrop": fusion_cfg.get("path_pdrop", 0.1)}
    head_cfg = dict(cfg.get("head") or {})
    head = {"n_layers": head_cfg.get("num_layers", 2), "prior_prob": head_cfg.get("prior_prob", 0.0)}
    backbone = {k: v for k, v in dict(cfg.get("backbone") or {}).items() if v is not None}
    backbone = _accepted_backbone_kwargs(backbone)
    return GroundingModel(in_dim=int(in_dim), embd_dim=int(cfg["embd_dim"]), text=text, backbone=backbone,
                          max_seq_len=int(cfg.get("max_seq_len", 2304)), early_fusion=bool(cfg.get("early_fusion", False)),
                          fusion=fusion, head=head, reference_precision=bool(cfg.get("reference_precision", False)))
