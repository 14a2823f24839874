"""1-D IoU and DIoU losses on offset pairs that share a centre point.

A prediction and its target are both (distance to start, distance to end) from the same point,
both >= 0, so the intersection is min(l_p, l_g) + min(r_p, r_g) and, in 1-D with a shared centre,
GIoU reduces to IoU (SnAG's `ctr_giou_loss` / `ctr_diou_loss`). Offsets are in units of the level
stride; IoU is scale-free so the unit does not matter.
"""

from __future__ import annotations

import torch

__all__ = ["offset_iou", "iou_loss", "diou_loss", "regression_loss"]

_REDUCTIONS = ("none", "sum", "mean")


def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        # an empty batch of positives gives 0 (and keeps the graph), not NaN
        return loss.mean() if loss.numel() > 0 else loss.sum() * 0.0
    return loss


def _check(pred: torch.Tensor, target: torch.Tensor, reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    if pred.shape != target.shape or pred.shape[-1:] != (2,):
        raise ValueError(f"offsets must be (..., 2) of equal shape, got {tuple(pred.shape)} and {tuple(target.shape)}")


def offset_iou(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """IoU of segments (c - l, c + r) given as offset pairs (..., 2) with a shared centre c."""
    lp, rp = pred[..., 0], pred[..., 1]
    lg, rg = target[..., 0], target[..., 1]
    inter = torch.minimum(lp, lg) + torch.minimum(rp, rg)
    union = (lp + rp) + (lg + rg) - inter
    return inter / union.clamp(min=eps)


def iou_loss(pred: torch.Tensor, target: torch.Tensor, *, reduction: str = "sum", eps: float = 1e-8) -> torch.Tensor:
    """1 - IoU of offset pairs (N, 2) (`reg_loss: iou`; equal to GIoU in this setting)."""
    _check(pred, target, reduction)
    if pred.dtype in (torch.float16, torch.bfloat16):
        pred, target = pred.float(), target.float()
    return _reduce(1.0 - offset_iou(pred, target, eps), reduction)


def diou_loss(pred: torch.Tensor, target: torch.Tensor, *, reduction: str = "sum", eps: float = 1e-8) -> torch.Tensor:
    """1 - IoU + (rho / len_c)^2 with rho = 0.5 (r_p - l_p - r_g + l_g) the distance between the
    two segment centres and len_c = max(l_p, l_g) + max(r_p, r_g) the enclosing length."""
    _check(pred, target, reduction)
    if pred.dtype in (torch.float16, torch.bfloat16):
        pred, target = pred.float(), target.float()
    lp, rp = pred[..., 0], pred[..., 1]
    lg, rg = target[..., 0], target[..., 1]
    len_c = torch.maximum(lp, lg) + torch.maximum(rp, rg)
    rho = 0.5 * (rp - lp - rg + lg)
    loss = 1.0 - offset_iou(pred, target, eps) + torch.square(rho / len_c.clamp(min=eps))
    return _reduce(loss, reduction)


def regression_loss(name: str, pred: torch.Tensor, target: torch.Tensor, *, reduction: str = "sum") -> torch.Tensor:
    """Dispatch on the config's `reg_loss` name ("iou" or "diou")."""
    if name == "iou":
        return iou_loss(pred, target, reduction=reduction)
    if name == "diou":
        return diou_loss(pred, target, reduction=reduction)
    raise ValueError(f"reg_loss must be 'iou' or 'diou', got {name!r}")
