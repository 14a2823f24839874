"""Point labelling: which pyramid points are positive for a ground-truth segment, and their targets.

Follows `TrainerOriginal._annotate_points_per_video` (radius centre sampling), vectorised over all
queries and all points at once. Everything is in grid units of the model input (the targets are the
segments already divided by `vid_stride`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["label_points", "gt_span_masks"]


def label_points(
    points: torch.Tensor | Sequence[torch.Tensor],
    targets: torch.Tensor,
    *,
    center_radius: float = 1.5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Label every point for every target segment.

    Args:
        points: (P, 4) rows (t, r_min, r_max, stride), or the per-level list that
            `PointGenerator` returns (concatenated here in level order).
        targets: (B, 2) segments (start, end) in grid units, one per query row.
        center_radius: centre-sampling radius in units of the point's stride.

    Returns:
        labels (B, P) bool: positive iff the point lies strictly inside the window
            [max(s, c - radius * stride), min(e, c + radius * stride)] (c the segment centre) and
            max(t - s, e - t) lies in [r_min, r_max).
        offsets (B, P, 2): ((t - s) / stride, (e - t) / stride) for every point (not only the
            positives; callers index them with the positive mask).
    """
    if not isinstance(points, torch.Tensor):
        points = torch.cat(list(points), dim=0)
    if points.ndim != 2 or points.shape[1] != 4:
        raise ValueError(f"points must be (P, 4), got {tuple(points.shape)}")
    if targets.ndim != 2 or targets.shape[1] != 2:
        raise ValueError(f"targets must be (B, 2), got {tuple(targets.shape)}")
    points = points.to(targets.dtype)
    t = points[None, :, 0]  # (1, P)
    r_min, r_max, stride = points[None, :, 1], points[None, :, 2], points[None, :, 3]
    start, end = targets[:, 0:1], targets[:, 1:2]  # (B, 1)

    pt2start = t - start  # (B, P)
    pt2end = end - t  # (B, P)
    offsets = torch.stack((pt2start, pt2end), dim=-1) / stride[..., None]  # (B, P, 2)

    center = 0.5 * (start + end)  # (B, 1)
    radius = center_radius * stride  # (1, P)
    win_lo = torch.maximum(center - radius, start)  # (B, P)
    win_hi = torch.minimum(center + radius, end)
    inside_window = (t - win_lo > 0) & (win_hi - t > 0)

    reach = torch.maximum(pt2start, pt2end)
    inside_range = (reach >= r_min) & (reach < r_max)
    return inside_window & inside_range, offsets


def gt_span_masks(
    targets: torch.Tensor,
    level_lengths: Sequence[int],
    level_strides: Sequence[int],
) -> list[torch.Tensor]:
    """Per level, the points covered by the ground-truth span (SPC's "inside the GT" set).

    Level l marks indices ceil(s / stride_l) ... floor(e / stride_l) (inclusive), both clamped to
    [0, T_l - 1] as the authors' `generate_multiscale_gt_masks` does (which scales by
    T_l / T_0 = 1 / stride_l on the padded pyramid); empty when the clamped start exceeds the end.

    Returns a list of (B, T_l) bool tensors.
    """
    if len(level_lengths) != len(level_strides):
        raise ValueError("level_lengths and level_strides must have the same number of levels")
    out = []
    for length, stride in zip(level_lengths, level_strides):
        first = torch.ceil(targets[:, 0] / stride).clamp(0, length - 1)  # (B,)
        last = torch.floor(targets[:, 1] / stride).clamp(0, length - 1)
        idx = torch.arange(length, device=targets.device, dtype=targets.dtype)[None]  # (1, T_l)
        out.append((idx >= first[:, None]) & (idx <= last[:, None]))
    return out
