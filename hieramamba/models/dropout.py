"""Dropout whose mask is cheap to draw on CPU.

``nn.Dropout`` on CPU draws its Bernoulli mask with ``bernoulli_``, one Mersenne-Twister draw (or
more) per element: on this project's 2-core CPU that made dropout ~16 % of a `scale=default`
training step (TACoS-like, d 64: 25.1 s per 50 steps with dropout, 21.0 s with every dropout of the
backbone and fusion at 0). Here the mask comes from 16 random bits per element, cut from 64-bit
draws (one 64-bit draw serves four elements): 6 vs 20 ms for a (16, 256, 496) tensor.

The drop probability is rounded to a multiple of 2^-16 (0.1 -> 6554 / 65536 = 0.100006) and kept
elements are scaled by the inverse of the *rounded* keep probability, so the output's expectation
is the input, as with ``nn.Dropout``. The mask draws from torch's CPU generator (seeded by the
run's seed, saved in checkpoints), so runs stay reproducible and resume bitwise. On other devices
it is ``F.dropout``.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

_LEVELS = 1 << 16  # the mask's random integers are uniform on [-2^15, 2^15)


def keep_mask(shape: torch.Size, p: float) -> tuple[torch.Tensor, float]:
    """A bool mask of ``shape`` that keeps each element with probability ``1 - round(p * 2^16) / 2^16``,
    and that keep probability."""
    n = shape.numel()
    drop_levels = round(p * _LEVELS)
    words = torch.randint(-(1 << 63), (1 << 63) - 1, ((n + 3) // 4,), dtype=torch.int64)  # 64 random bits each
    bits = words.view(torch.int16)[:n].view(shape)  # 16 random bits per element
    return bits >= drop_levels - _LEVELS // 2, 1.0 - drop_levels / _LEVELS


class Dropout(nn.Module):
    """``nn.Dropout(p)`` (training: zero each element with probability p, scale the rest by
    1 / (1 - p); evaluation: identity) with a fast CPU mask (module doc)."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if x.device.type != "cpu":
            return F.dropout(x, self.p, training=True)
        keep, keep_prob = keep_mask(x.shape, self.p)
        return x * keep.to(x.dtype).mul_(1.0 / keep_prob)

    def extra_repr(self) -> str:
        return f"p={self.p}"
