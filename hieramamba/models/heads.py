"""Classification and regression heads, shared over pyramid levels (SnAG's ``ClsHead``/``RegHead``).

Trunk: ``n_layers`` x [masked conv k=3 (no bias), LayerNorm, ReLU]; then a masked conv k=3 to 1
logit (cls) or 2 offsets (reg). Offsets go through a per-level learnable ``Scale`` (init 1) and a
ReLU: distances to start and end in units of the level stride.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from hieramamba.models.attention import MaskedConv1D
from hieramamba.models.norms import LayerNorm, Scale


class _Trunk(nn.Module):
    def __init__(self, embd_dim: int, n_layers: int):
        super().__init__()
        self.convs = nn.ModuleList(MaskedConv1D(embd_dim, embd_dim, 3, 1, 1, bias=False) for _ in range(n_layers))
        self.norms = nn.ModuleList(LayerNorm(embd_dim) for _ in range(n_layers))

    def trunk(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        for conv, norm in zip(self.convs, self.norms):
            x, _ = conv(x, mask)
            x = F.relu(norm(x))
        return x


class ClsHead(_Trunk):
    """``(fpn [(B, D, T_l)], fpn_masks [(B, 1, T_l)]) -> (logits [(B, T_l)], masks [(B, T_l)])``."""

    def __init__(self, embd_dim: int, n_layers: int = 2, prior_prob: float = 0.0):
        super().__init__(embd_dim, n_layers)
        if not 0 <= prior_prob < 1:
            raise ValueError(f"prior_prob must be in [0, 1), got {prior_prob}")
        self.cls_head = MaskedConv1D(embd_dim, 1, 3, 1, 1)
        bias = -math.log((1 - prior_prob) / prior_prob) if prior_prob > 0 else 0.0
        nn.init.constant_(self.cls_head.conv.bias, bias)

    def forward(self, fpn, fpn_masks):
        logits, masks = [], []
        for x, mask in zip(fpn, fpn_masks):
            out, _ = self.cls_head(self.trunk(x, mask), mask)
            logits.append(out[:, 0])
            masks.append(mask[:, 0])
        return logits, masks


class RegHead(_Trunk):
    """``(fpn, fpn_masks) -> (offsets [(B, T_l, 2)] >= 0, masks [(B, T_l)])``."""

    def __init__(self, embd_dim: int, num_levels: int, n_layers: int = 2):
        super().__init__(embd_dim, n_layers)
        self.reg_head = MaskedConv1D(embd_dim, 2, 3, 1, 1)
        self.scales = nn.ModuleList(Scale() for _ in range(num_levels))

    def forward(self, fpn, fpn_masks):
        if len(fpn) != len(self.scales):
            raise ValueError(f"RegHead has {len(self.scales)} level scales, got {len(fpn)} levels")
        offsets, masks = [], []
        for scale, x, mask in zip(self.scales, fpn, fpn_masks):
            out, _ = self.reg_head(self.trunk(x, mask), mask)
            offsets.append(F.relu(scale(out)).transpose(1, 2))  # (B, T_l, 2)
            masks.append(mask[:, 0])
        return offsets, masks
