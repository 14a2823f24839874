"""Video-centric sampling (SnAG `_group_with_max_len` / `_truncate_vid_feats`, reference §4.3).

Pure functions over arrays with an explicit `numpy.random.Generator`, so that the grouping (built
once, as HieraMamba does, and reused every epoch) and each crop are reproducible from a seed.

- `group_queries`: per video, greedily group queries whose windows fit together inside one
  training window; each group is one training sample (the video + those queries).
- `random_crop`: pick the feature window of a training sample so that every target keeps more
  than `trunc_thresh` of its length (5000 tries), and shift/clamp the targets.
- `eval_samples`: one sample per video with all its queries.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hieramamba.data.grid import FeatureGrid
from hieramamba.data.records import Split


@dataclass(frozen=True)
class Sample:
    """One video-centric sample: a video of a split and indices into its `queries` list."""

    video_id: str
    query_indices: tuple[int, ...]
    split: str | None = None


def window_seconds(num_clips: int, max_vid_len: int, fps: float, grid: FeatureGrid, crop_ratio=None) -> float:
    """Worst-case training window length in seconds (SnAG): W = min(num_clips, max_vid_len) features,
    times the lower crop ratio when the whole video fits; (stride * (W - 1) + clip_size) / fps."""
    if num_clips <= max_vid_len:
        win = num_clips
        if crop_ratio is not None:
            win = max(np.ceil(crop_ratio[0] * win), 1)
    else:
        win = max_vid_len
    return (grid.stride * (win - 1) + grid.clip_size) / fps


def group_queries(
    segments: np.ndarray,  # (n, 2) seconds
    win_len: float,  # seconds (window_seconds)
    max_num_text: int | None,
    rng: np.random.Generator,
) -> list[tuple[int, ...]]:
    """Greedy grouping: probe = earliest unassigned start; group = unassigned windows fully inside
    [probe start, probe start + win_len] (a random subset of max_num_text if more; a window longer
    than win_len forms its own group). Returns groups of indices into `segments`."""
    segments = np.asarray(segments, dtype=np.float64).reshape(-1, 2)
    # A NaN window is inside no window (every comparison is False): the loop would never free it.
    if not np.isfinite(segments).all():
        bad = np.flatnonzero(~np.isfinite(segments).all(axis=1)).tolist()
        raise ValueError(f"non-finite query windows at positions {bad[:5]} cannot be grouped")
    if not math.isfinite(win_len) or win_len <= 0:
        raise ValueError(f"training window of {win_len} s cannot hold a query")
    if max_num_text is not None and max_num_text < 1:
        raise ValueError(f"max_num_text = {max_num_text}: a group needs at least one query")
    order = np.argsort(segments[:, 0], kind="stable")
    segs = segments[order]
    free = np.ones(len(segs), dtype=bool)
    groups: list[tuple[int, ...]] = []
    while free.any():
        probe = int(np.flatnonzero(free)[0])
        ws, we = segs[probe, 0], segs[probe, 0] + win_len
        if segs[probe, 1] - segs[probe, 0] > win_len:
            idx = np.array([probe])
        else:
            fits = (segs[:, 0] >= ws) & (segs[:, 1] <= we) & free
            fits[probe] = True  # e - s <= win_len may still round to e > s + win_len: the probe always fits
            idx = np.flatnonzero(fits)
            if max_num_text is not None and len(idx) > max_num_text:
                idx = np.sort(rng.choice(idx, size=max_num_text, replace=False))
        groups.append(tuple(int(i) for i in order[idx]))
        free[idx] = False  # idx is never empty, so every pass frees at least one query
    return groups


def train_samples(
    split: Split,
    grid: FeatureGrid,
    max_vid_len: int,  # training window in features (vid_stride * max_seq_len)
    max_num_text: int | None,
    rng: np.random.Generator,
    crop_ratio=None,
) -> list[Sample]:
    """All training samples of a split, in video order (the caller shuffles per epoch)."""
    samples: list[Sample] = []
    for vid, video in split.videos.items():
        annotated = [i for i, q in enumerate(video.queries) if q.segment is not None]
        if not annotated:
            continue
        fps = grid.fps if grid.fps is not None else video.fps
        stored = video.num_clips if video.num_clips is not None else grid.estimate_num_clips(video.duration, fps)
        win = window_seconds(grid.num_used(stored), max_vid_len, fps, grid, crop_ratio)
        segs = np.asarray([video.queries[i].segment for i in annotated], dtype=np.float64)
        for group in group_queries(segs, win, max_num_text, rng):
            samples.append(Sample(vid, tuple(annotated[i] for i in group), split.name))
    return samples


def eval_samples(split: Split) -> list[Sample]:
    """One sample per video with all its queries (in order)."""
    return [Sample(vid, tuple(range(len(v.queries))), split.name) for vid, v in split.videos.items()]


class CropError(ValueError):
    """No crop keeps every target (SnAG raises 'no valid truncation found')."""


def random_crop(
    num_feats: int,  # T of the (down-sampled) video features
    targets: np.ndarray,  # (n, 2) grid units
    max_vid_len: int,
    rng: np.random.Generator,
    crop_ratio=None,
    trunc_thresh: float = 0.5,
    offset: float = 0.0,  # grid.offset: targets may reach half a window past either edge
    num_trials: int = 5000,
) -> tuple[int, int, np.ndarray]:
    """SnAG's truncation: returns (ws, we, targets') with features[ws:we] the crop and targets'
    shifted and clamped to [-offset, we - ws + offset]. (0, num_feats, targets) when no crop."""
    targets = np.asarray(targets, dtype=np.float64).reshape(-1, 2)
    length = max_vid_len
    if num_feats <= max_vid_len:
        if crop_ratio is None:
            return 0, num_feats, targets.copy()
        lo = int(max(np.ceil(crop_ratio[0] * num_feats), 1))
        hi = int(min(np.ceil(crop_ratio[1] * num_feats), num_feats))
        length = int(rng.integers(lo, hi, endpoint=True))
        if length == num_feats:
            return 0, num_feats, targets.copy()
    s0 = int(max(0, np.floor(targets[:, 0].max() - length)))
    s1 = int(min(num_feats - length, np.ceil(targets[:, 1].min())))
    if s1 < s0:
        raise CropError(f"no crop of {length} features can hold targets spanning {targets[:, 0].min():.1f}..{targets[:, 1].max():.1f}")
    seg_lens = np.maximum(targets[:, 1] - targets[:, 0], 1e-5)
    for _ in range(num_trials):
        ws = int(rng.integers(s0, s1, endpoint=True))
        we = ws + length
        overlap = np.maximum(np.minimum(targets[:, 1], we + offset) - np.maximum(targets[:, 0], ws - offset), 0)
        if np.all(overlap / seg_lens > trunc_thresh):
            return ws, we, np.clip(targets - ws, -offset, we - ws + offset)
    raise CropError(f"no valid crop found in {num_trials} tries")
