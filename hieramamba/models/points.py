"""Candidate points and their regression ranges (SnAG's / HieraMamba's ``PtGenerator``).

Level l has one point per output step at t = 0, s^l, 2 s^l, ... (no half-stride offset), in the
backbone's grid units (the authors divide targets by ``vid_stride`` first). Each row is
``(t, r_min, r_max, stride)``. Ranges: level 0 (0, r); level l >= 1 (r' * sigma, r' * s) with r'
the previous level's max, i.e. (0, 4), (2, 8), (4, 16), ... for s = 2; the last level's max is
raised to ``max_seq_len + 1`` so every segment has a level.
"""

from __future__ import annotations

import torch
import torch.nn as nn


def regression_ranges(max_seq_len: int, num_levels: int, regression_range: float = 4,
                      sigma: float = 0.5, stride: int = 2) -> list[tuple[float, float]]:
    """Per-level (r_min, r_max), in units of the input grid."""
    if not 0 < sigma <= 1:
        raise ValueError(f"sigma must be in (0, 1], got {sigma}")
    ranges = [(0.0, float(regression_range))]
    r = float(regression_range)
    for level in range(1, num_levels):
        lo, hi = r * sigma, r * stride
        if level == num_levels - 1:
            hi = max(hi, max_seq_len + 1.0)
        ranges.append((lo, hi))
        r = hi
    return ranges


class PointGenerator(nn.Module):
    """``PointGenerator(max_seq_len, num_levels)(level_lengths) -> list[(T_l, 4)]`` float32.

    Points are buffered (not saved) for ``buffer_factor * max_seq_len`` input steps, the authors'
    eval buffer (4x the training length); longer requests are generated on the fly.
    """

    def __init__(self, max_seq_len: int, num_levels: int, regression_range: float = 4, sigma: float = 0.5,
                 stride: int = 2, buffer_factor: int = 4):
        super().__init__()
        self.max_seq_len = max_seq_len
        self.num_levels = num_levels
        self.stride = stride
        self.regression_range = regression_ranges(max_seq_len, num_levels, regression_range, sigma, stride)
        self.level_strides = [stride ** level for level in range(num_levels)]
        buffer_len = max_seq_len * buffer_factor
        for level in range(num_levels):
            n = -(-buffer_len // self.level_strides[level])
            self.register_buffer(f"points_{level}", self._points(level, n), persistent=False)

    def _points(self, level: int, n: int, device=None) -> torch.Tensor:
        step = self.level_strides[level]
        t = torch.arange(n, dtype=torch.float32, device=device) * step  # (n,)
        lo, hi = self.regression_range[level]
        rest = torch.tensor([lo, hi, float(step)], dtype=torch.float32, device=device).expand(n, 3)
        return torch.cat((t[:, None], rest), dim=1)  # (n, 4)

    def forward(self, level_lengths) -> list[torch.Tensor]:
        if len(level_lengths) != self.num_levels:
            raise ValueError(f"expected {self.num_levels} level lengths, got {len(level_lengths)}")
        out = []
        for level, n in enumerate(level_lengths):
            buf = getattr(self, f"points_{level}")
            out.append(buf[:n] if n <= len(buf) else self._points(level, int(n), buf.device))
        return out
