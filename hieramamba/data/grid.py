"""Seconds <-> feature grid: the one place the SnAG/HieraMamba conversion lives.

A feature i (after down-sampling) covers frames [i*S, i*S + clip_size) of the frame grid at `fps`,
with S = clip_stride * downsample_rate (the effective stride), and is centred at frame
i*S + clip_size/2. Hence (reference doc §4.1 and §1.8, datasets.md §3.3):

    g = clip(t * fps, 0, num_frames) / S - 0.5 * clip_size / S            seconds -> grid
    t = clamp((g * vid_stride * S + 0.5 * clip_size) / fps, 0, duration)  grid -> seconds

`vid_stride` is the model's input stride (2 for MAD, 1 otherwise): predictions come out in units of
the model's grid, which is the feature grid sub-sampled by `vid_stride`.

Examples: TACoS C3D (fps 29.4, 16/4/4): g = t*29.4/16 - 0.5; Ego4D EgoVLP (30, 32/8/2):
g = t*30/16 - 1; MAD (5, 1/1/1): g = t*5 - 0.5.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FeatureGrid:
    """How a dataset's features were cut from the frame grid (the released feature parameters)."""

    fps: float | None  # frame rate of the frame grid; None: take each video's own fps
    clip_size: float  # frames per feature window
    clip_stride: float  # frames between stored features
    downsample_rate: int = 1  # keep every n-th stored feature

    def __post_init__(self) -> None:
        for name in ("fps", "clip_size", "clip_stride", "downsample_rate"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, (int, float)) or not math.isfinite(value)):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        if self.fps is not None and self.fps <= 0:
            raise ValueError(f"fps must be positive, got {self.fps}")
        if self.clip_size <= 0 or self.clip_stride <= 0:
            raise ValueError(f"clip_size and clip_stride must be positive, got {self.clip_size}, {self.clip_stride}")
        if int(self.downsample_rate) != self.downsample_rate or self.downsample_rate < 1:
            raise ValueError(f"downsample_rate must be an integer >= 1, got {self.downsample_rate}")

    @property
    def stride(self) -> float:
        """Effective stride in frames between used features (clip_stride * downsample_rate)."""
        return float(self.clip_stride) * int(self.downsample_rate)

    @property
    def offset(self) -> float:
        """Half a window in grid units (0.5 * clip_size / stride): the centring shift."""
        return 0.5 * float(self.clip_size) / self.stride

    def features_per_second(self, fps: float) -> float:
        return float(fps) / self.stride

    def estimate_num_clips(self, duration: float, fps: float) -> int:
        """Stored features before down-sampling when the source does not say (HieraMamba rule)."""
        return max(1, int(duration * fps / float(self.clip_stride)))

    def num_used(self, num_stored: int) -> int:
        """Features left after down-sampling `num_stored` stored features (ceil division)."""
        ds = int(self.downsample_rate)
        return (int(num_stored) + ds - 1) // ds


def seconds_to_grid(t_sec, fps: float, num_frames: float, grid: FeatureGrid) -> np.ndarray:
    """Seconds -> feature-grid units (float64), clamping frames to [0, num_frames]."""
    frames = np.clip(np.asarray(t_sec, dtype=np.float64) * float(fps), 0.0, float(num_frames))
    return frames / grid.stride - grid.offset


def grid_to_seconds(g, fps: float, duration: float, grid: FeatureGrid, vid_stride: int = 1) -> np.ndarray:
    """Model-grid units -> seconds (float64), clamped to [0, duration]."""
    t = (np.asarray(g, dtype=np.float64) * float(vid_stride) * grid.stride + 0.5 * float(grid.clip_size)) / float(fps)
    return np.clip(t, 0.0, float(duration))
