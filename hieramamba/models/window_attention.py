"""Banded (sliding-window) attention computed in blocks with a halo, without per-position copies.

Query t attends to the keys t - r .. t + r (r = window_size // 2) that exist and are valid. The
obvious formulation gathers a (w = 2r + 1)-key band for every query (``unfold`` + ``einsum``),
which copies keys and values once per window position: w times their size (19 x for SnAG's
window) plus the einsum's own contiguous copy of that band.

Here the sequence is cut into blocks of c queries. Block j's queries can only see the keys
[j c - r, j c + c + r): its own c keys and a halo of r on each side, m = c + 2r keys in all. So

    logits_j = Q_j K_j^T      (c x d) @ (d x m), one small matmul per (batch, head, block)
    out_j    = A_j V_j        (c x m) @ (m x d)

where K_j, V_j are the halo windows (each key is copied into at most two windows: (c + 2r) / c
times the keys, 1.6 x for c = 32, r = 9) and A_j is zero outside the band. The band of a block,
query i against key i + o (o = 0 .. 2r), is a diagonal strip of the (c x m) block; it is cut out
(and put back) by the "skew" view trick: a (c x m) block read with row stride m + 1 has the
band in its first w columns. Masking and the softmax run on the band alone, (b, h, t, w), the
same tensor the gather formulation has, so the numbers are the same up to float rounding.

Work: 2 (c + 2r) d multiply-adds per query and head for the two matmuls against 2 w d for the
band; c trades that waste against the number of tiny matmuls (see ``DEFAULT_BLOCK``).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

# queries per block: measured on this project's 2-core CPU at SnAG's width (d_head 64, w 19),
# 32 was within noise of 16 and 64 for time and keeps the halo copies at 1.6 x the keys
DEFAULT_BLOCK = 32


def _zero_pad_time(x: torch.Tensor, left: int, right: int) -> torch.Tensor:
    """Zero-pad the last dim; one copy of x (``F.pad`` first zero-fills the whole output)."""
    pieces = [x.new_zeros(*x.shape[:-1], left), x, x.new_zeros(*x.shape[:-1], right)]
    return torch.cat([p for p in pieces if p.shape[-1] > 0], dim=-1)


def halo_windows(x: torch.Tensor, radius: int, block: int, n_blocks: int) -> torch.Tensor:
    """(b, h, d, t) -> (b, h, n, c + 2r, d): block j's keys j c - r .. j c + c + r - 1, zeros
    outside 0 .. t - 1. Needs c >= 2r, so that a window is its own block plus 2r of the next.

    One copy: x is zero-padded in the time-major (b, t, h, d) order, and the overlapping windows
    are a strided view of that (``unfold``), which the matmul reading it gathers row by row (rows
    of d contiguous values). For a channels-last x (the 1x1 convs' output in the AMP block) the
    pad is a plain copy; the earlier form (pad along t per channel, then permute) made two
    transposing copies and ran the whole attention 1.8x slower at the AMP block's level 0
    (T 24576, 2 heads: 73 -> 40 ms; channels-first, SnAG's 4 heads at T 16384: 38 -> 35 ms).
    """
    b, h, d, t = x.shape
    if block < 2 * radius:
        raise ValueError(f"halo_windows needs block >= 2 * radius, got block {block}, radius {radius}")
    time_major = x.permute(0, 3, 1, 2)  # (b, t, h, d), a view
    padded = F.pad(time_major, (0, 0, 0, 0, radius, (n_blocks + 1) * block - t - radius))  # (b, (n + 1) c, h, d)
    windows = padded.unfold(1, block + 2 * radius, block)[:, :n_blocks]  # (b, n, h, d, m); n + 1 when r = 0
    return windows.permute(0, 2, 1, 4, 3)  # (b, h, n, m, d), a view


def block_diagonals(blocks: torch.Tensor, width: int) -> torch.Tensor:
    """(..., c, m) -> (..., c, w): out[..., i, o] = blocks[..., i, i + o], for w <= m - c + 1.

    Flattened, element (i, i + o) sits at i (m + 1) + o: rows of length m + 1 start on the
    diagonal. The c zeros appended make the flat length c (m + 1) so it can be viewed that way.
    """
    c, m = blocks.shape[-2:]
    flat = F.pad(blocks.reshape(*blocks.shape[:-2], c * m), (0, c))  # (..., c (m + 1))
    return flat.view(*blocks.shape[:-2], c, m + 1)[..., :width]


def from_block_diagonals(band: torch.Tensor, m: int) -> torch.Tensor:
    """Inverse of ``block_diagonals``: (..., c, w) -> (..., c, m), zero off the band."""
    c, w = band.shape[-2:]
    rows = F.pad(band, (0, m + 1 - w))  # (..., c, m + 1): each row, then zeros up to the next diagonal
    return rows.reshape(*band.shape[:-2], c * (m + 1))[..., : c * m].view(*band.shape[:-2], c, m)


def banded_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, window_size: int,
                     scale: float = 1.0, attn_drop: Callable[[torch.Tensor], torch.Tensor] | None = None,
                     block_size: int = DEFAULT_BLOCK) -> torch.Tensor:
    """Masked sliding-window attention, softmax(scale * q.k) over the keys within ``window_size // 2``.

    q, k, v (b, h, d, t) channels-first per head, mask (b, 1, t) bool (True = valid) -> (b, h, t, d).
    Invalid keys are excluded; rows of invalid queries, and of queries with no valid key in their
    window, are zero (not NaN). ``attn_drop`` is applied to the band weights (b, h, n, c, w).
    """
    if window_size < 1 or window_size % 2 != 1:
        raise ValueError(f"window_size must be a positive odd int, got {window_size}")
    b, h, d, t = q.shape
    r = window_size // 2
    c = max(2 * r, min(block_size, t))  # short sequences: one block, no longer than needed
    n = -(-t // c)  # blocks
    m = c + 2 * r  # keys a block sees
    extra = n * c - t  # query padding to whole blocks

    if extra:
        q = _zero_pad_time(q, 0, extra)
    q_blocks = q.view(b, h, d, n, c).permute(0, 1, 3, 4, 2)  # (b, h, n, c, d)
    k_windows = halo_windows(k, r, c, n)  # (b, h, n, m, d)
    v_windows = halo_windows(v, r, c, n)  # (b, h, n, m, d)

    logits = torch.matmul(q_blocks, k_windows.transpose(-1, -2))  # (b, h, n, c, m)
    band = block_diagonals(logits, window_size) * scale  # (b, h, n, c, w): query i vs key i + o - r

    # key i + o - r of block j exists and is valid; same windows as the keys, over the padded mask
    padded_mask = F.pad(mask, (r, extra + r), value=False)  # (b, 1, n c + 2r)
    key_ok = padded_mask.unfold(-1, window_size, 1).view(b, 1, n, c, window_size)  # (b, 1, n, c, w)
    query_ok = padded_mask[..., r: r + n * c].view(b, 1, n, c, 1)
    row_ok = query_ok & key_ok.any(-1, keepdim=True)  # (b, 1, n, c, 1)

    band = band.masked_fill(~key_ok, float("-inf"))
    attn = torch.softmax(band, dim=-1)
    attn = attn.masked_fill(~row_ok, 0.0)  # rows with no valid key were NaN (all -inf)
    if attn_drop is not None:
        attn = attn_drop(attn)

    out = torch.matmul(from_block_diagonals(attn, m), v_windows)  # (b, h, n, c, d)
    return out.reshape(b, h, n * c, d)[:, :, :t]  # (b, h, t, d)
