"""Inference post-processing: per-level scores -> candidate segments -> soft-NMS -> voting.

Follows `EvaluatorOriginal._collect_segments` / `predict` and `libs/nms` (`batched_nms`, the C++
`softnms_1d_cpu`, `segment_voting`) of the authors' code, per query, in grid units of the model
input (the caller multiplies by `vid_stride` and converts to seconds with `hieramamba.data.grid`).
Pure torch; the soft-NMS loop runs at most `max_num_segs` selection steps, each vectorised over the
remaining candidates, and reproduces the C++ routine's array order so ties break the same way.

Ordering choice: the authors sort scores with a non-stable `argsort(descending=True)`; we use a
stable descending sort, so equal scores keep their level/time order (deterministic on every device).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

__all__ = [
    "PostprocessConfig",
    "collect_segments",
    "soft_nms",
    "segment_voting",
    "postprocess_query",
    "postprocess_batch",
]


@dataclass(frozen=True)
class PostprocessConfig:
    """Inference settings (the released configs' `eval` block; MAD: pre_nms_topk 200, max_num_segs 50)."""

    pre_nms_thresh: float = 0.001  # keep point scores strictly above this
    pre_nms_topk: int = 2000  # candidates kept before (and again after) the length filter
    seg_len_thresh: float = 0.1  # drop segments with length <= this (grid units)
    sigma: float = 0.9  # Gaussian soft-NMS: score *= exp(-iou^2 / sigma)
    min_score: float = 0.001  # soft-NMS drops decayed scores below this
    max_num_segs: int = 5  # segments returned per query (<= 0: all that survive)
    voting_thresh: float = 0.95  # segment voting IoU threshold (<= 0 disables voting)

    def __post_init__(self) -> None:
        if self.pre_nms_topk < 1:
            raise ValueError(f"pre_nms_topk must be >= 1, got {self.pre_nms_topk}")
        if self.sigma <= 0:
            raise ValueError(f"soft-NMS sigma must be > 0, got {self.sigma}")


def _sort_desc(scores: torch.Tensor) -> torch.Tensor:
    return torch.sort(scores, descending=True, stable=True).indices


def collect_segments(
    points: Sequence[torch.Tensor],
    logits: Sequence[torch.Tensor],
    offsets: Sequence[torch.Tensor],
    masks: Sequence[torch.Tensor],
    cfg: PostprocessConfig = PostprocessConfig(),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Candidate segments of one query.

    points[l] (T_l, 4) rows (t, r_min, r_max, stride); logits[l] (T_l,); offsets[l] (T_l, 2) in
    units of the stride; masks[l] (T_l,) bool. Score = sigmoid(logit) * mask, kept when
    > pre_nms_thresh; levels concatenated; top `pre_nms_topk`; decoded to
    [t - o0 * stride, t + o1 * stride]; segments of length <= seg_len_thresh dropped.
    Returns segs (N, 2), scores (N,) sorted by score (descending).
    """
    seg_pts, seg_scores, seg_offs = [], [], []
    for pts, logit, off, mask in zip(points, logits, offsets, masks):
        score = torch.sigmoid(logit) * mask.to(logit.dtype)  # (T_l,)
        keep = score > cfg.pre_nms_thresh
        seg_pts.append(pts[keep])
        seg_scores.append(score[keep])
        seg_offs.append(off[keep])
    pts = torch.cat(seg_pts)  # (N, 4)
    scores = torch.cat(seg_scores)  # (N,)
    offs = torch.cat(seg_offs)  # (N, 2)

    top = _sort_desc(scores)[: cfg.pre_nms_topk]
    pts, scores, offs = pts[top], scores[top], offs[top]
    pts = pts.to(offs.dtype)
    left = pts[:, 0] - offs[:, 0] * pts[:, 3]
    right = pts[:, 0] + offs[:, 1] * pts[:, 3]
    segs = torch.stack((left, right), dim=-1)  # (N, 2)
    keep = (right - left) > cfg.seg_len_thresh
    return segs[keep], scores[keep]


def soft_nms(
    segs: torch.Tensor,
    scores: torch.Tensor,
    *,
    sigma: float = 0.9,
    min_score: float = 0.001,
    max_num_segs: int = 5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian soft-NMS with the semantics of the authors' `softnms_1d_cpu` (method 2).

    Step i picks the first maximum of the current scores among the remaining segments (the
    remaining ones are kept in the C++ routine's array order: the picked one swaps with position i,
    discarded ones are overwritten from the end of the array), emits it with its current score,
    multiplies every other remaining score by exp(-iou^2 / sigma) with
    iou = inter / (len_i + len_j - inter) where len = end - start + 1e-6, and discards those whose
    score falls below `min_score`. The selected segment itself is never discarded, whatever its
    score. Only the first `max_num_segs` picks are computed (<= 0: until none remain), which is
    exactly what the authors keep.

    Returns segs (K, 2), scores (K,) in selection order (scores non-increasing).
    """
    n = segs.shape[0]
    if n == 0:
        return segs.new_zeros((0, 2)), scores.new_zeros((0,))
    limit = n if max_num_segs <= 0 else min(max_num_segs, n)
    x1, x2 = segs[:, 0], segs[:, 1]
    lengths = x2 - x1 + 1e-6  # (N,)
    order = torch.arange(n, device=segs.device)  # the remaining segments, in C++ array order
    current = scores.clone()  # their current (decayed) scores, same order
    picked, picked_scores = [], []
    while len(picked) < limit and order.numel() > 0:
        best = int(torch.argmax(current))  # first maximum, as the strict `<` scan in C++
        if best != 0:  # swap the maximum to the front
            swap = torch.arange(order.numel(), device=segs.device)
            swap[0], swap[best] = best, 0
            order, current = order[swap], current[swap]
        sel = order[0]
        picked.append(sel)
        picked_scores.append(current[0])
        rest, rest_scores = order[1:], current[1:]
        inter = (torch.minimum(x2[sel], x2[rest]) - torch.maximum(x1[sel], x1[rest])).clamp(min=0)
        iou = inter / (lengths[sel] + lengths[rest] - inter)
        rest_scores = rest_scores * torch.exp(-(iou * iou) / sigma)
        keep = ~(rest_scores < min_score)
        n_keep = int(keep.sum())
        if n_keep < keep.numel():
            # C++ compaction: a discarded slot is refilled from the end of the array; net effect,
            # holes among the first n_keep slots take the kept tail elements in reverse order
            pos = torch.arange(keep.numel(), device=segs.device)
            holes = pos[:n_keep][~keep[:n_keep]]
            tail = pos[n_keep:][keep[n_keep:]].flip(0)
            layout = pos[:n_keep].clone()
            layout[holes] = tail
            rest, rest_scores = rest[layout], rest_scores[layout]
        order, current = rest, rest_scores
    idx = torch.stack(picked)
    return segs[idx], torch.stack(picked_scores)


def segment_voting(
    nms_segs: torch.Tensor,
    all_segs: torch.Tensor,
    all_scores: torch.Tensor,
    iou_thresh: float = 0.95,
) -> torch.Tensor:
    """Replace each kept segment (K, 2) by the score-weighted mean of all candidates (N, 2) whose
    IoU with it is >= iou_thresh (plain IoU, no epsilon, as the authors' `segment_voting`)."""
    left = torch.maximum(nms_segs[:, None, 0], all_segs[None, :, 0])  # (K, N)
    right = torch.minimum(nms_segs[:, None, 1], all_segs[None, :, 1])
    overlap = (right - left).clamp(min=0)
    union = (nms_segs[:, None, 1] - nms_segs[:, None, 0]) + (all_segs[None, :, 1] - all_segs[None, :, 0]) - overlap
    iou = overlap / union
    weights = (iou >= iou_thresh).to(all_scores.dtype) * all_scores[None]  # (K, N)
    weights = weights / weights.sum(dim=1, keepdim=True)
    return weights @ all_segs  # (K, 2)


def postprocess_query(
    points: Sequence[torch.Tensor],
    logits: Sequence[torch.Tensor],
    offsets: Sequence[torch.Tensor],
    masks: Sequence[torch.Tensor],
    cfg: PostprocessConfig = PostprocessConfig(),
) -> tuple[torch.Tensor, torch.Tensor]:
    """One query: candidates -> top-k -> soft-NMS -> voting -> sort by score.

    Inputs as `collect_segments`. Returns segments (K, 2) in grid units and scores (K,),
    K <= max_num_segs, sorted by score (descending).
    """
    segs, scores = collect_segments(points, logits, offsets, masks, cfg)
    top = _sort_desc(scores)[: cfg.pre_nms_topk]  # the authors' second top-k (after windows)
    segs, scores = segs[top], scores[top]
    if segs.shape[0] == 0:
        return segs.new_zeros((0, 2)), scores.new_zeros((0,))
    kept, kept_scores = soft_nms(
        segs, scores, sigma=cfg.sigma, min_score=cfg.min_score, max_num_segs=cfg.max_num_segs
    )
    if cfg.voting_thresh > 0:
        kept = segment_voting(kept, segs, scores, cfg.voting_thresh)
    order = _sort_desc(kept_scores)
    if cfg.max_num_segs > 0:
        order = order[: cfg.max_num_segs]
    return kept[order], kept_scores[order]


@torch.no_grad()
def postprocess_batch(
    points: Sequence[torch.Tensor],
    logits: Sequence[torch.Tensor],
    offsets: Sequence[torch.Tensor],
    masks: Sequence[torch.Tensor],
    cfg: PostprocessConfig = PostprocessConfig(),
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """All query rows of a model output: logits[l] (B_q, T_l), offsets[l] (B_q, T_l, 2),
    masks[l] (B_q, T_l) or (B_q, 1, T_l); points[l] (T_l, 4). Works on CPU copies; returns one
    (segments (K, 2), scores (K,)) pair per row."""
    points = [p.detach().cpu() for p in points]
    logits = [x.detach().float().cpu() for x in logits]
    offsets = [x.detach().float().cpu() for x in offsets]
    masks = [(m.squeeze(1) if m.ndim == 3 else m).detach().cpu() for m in masks]
    n_rows = logits[0].shape[0]
    return [
        postprocess_query(points, [x[q] for x in logits], [x[q] for x in offsets], [m[q] for m in masks], cfg)
        for q in range(n_rows)
    ]
