"""Sigmoid focal loss with label smoothing, as the classification loss of the heads.

The authors (SnAG's `libs/modeling/loss.py`, called from `TrainerOriginal._calc_focal_loss`)
smooth the binary targets to y * (1 - smoothing) + smoothing / 2 (0.9 / 0.1 with smoothing 0.2),
compute the modulating factor from p_t with the *smoothed* target and pick alpha_t with the
positive mask `smoothed >= 0.5`. With alpha = 0.5 both classes weigh 0.5.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["sigmoid_focal_loss", "smooth_labels"]

_REDUCTIONS = ("none", "sum", "mean")


def smooth_labels(labels: torch.Tensor, smoothing: float, dtype: torch.dtype) -> torch.Tensor:
    """Binary labels (bool or 0/1) -> y * (1 - smoothing) + smoothing / 2 in `dtype`."""
    return labels.to(dtype) * (1.0 - smoothing) + smoothing / 2.0


def sigmoid_focal_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    alpha: float = 0.5,
    gamma: float = 2.0,
    smoothing: float = 0.2,
    reduction: str = "sum",
) -> torch.Tensor:
    """Focal loss of `logits` against binary `labels` (same shape, any shape).

    loss = alpha_t * BCE(logit, y_s) * (1 - p_t) ** gamma, with y_s the smoothed target,
    p = sigmoid(logit), p_t = p * y_s + (1 - p) * (1 - y_s), alpha_t = alpha where y_s >= 0.5 else
    1 - alpha (no alpha weighting when alpha < 0). Half-precision inputs are computed in float32
    (the authors call `.float()`); float64 stays float64 for the maths tests.
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    if logits.shape != labels.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} differ in shape")
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    targets = smooth_labels(labels, smoothing, logits.dtype)  # (...)
    p = torch.sigmoid(logits)
    p_t = p * targets + (1.0 - p) * (1.0 - targets)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    loss = ce * (1.0 - p_t) ** gamma
    if alpha >= 0:
        positive = targets >= 0.5
        loss = torch.where(positive, alpha * loss, (1.0 - alpha) * loss)
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.mean()
    return loss
