"""Banded attention in blocks with a halo: equal to plain references for values and gradients."""

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from hieramamba.models.window_attention import (
    banded_attention,
    block_diagonals,
    from_block_diagonals,
    halo_windows,
)


def dense_band_reference(q, k, v, mask, window_size, scale):
    """Full (t x t) attention with a band mask, written out plainly.

    Query s may use key u iff |s - u| <= window_size // 2 and key u is valid; rows of invalid
    queries and rows with no usable key are zero.
    """
    b, h, d, t = q.shape
    logits = torch.einsum("bhds,bhdu->bhsu", q, k) * scale  # (b, h, t, t)
    pos = torch.arange(t)
    in_band = (pos[:, None] - pos[None, :]).abs() <= window_size // 2  # (t, t)
    usable = in_band & mask[:, :, None, :]  # (b, 1, t, t)
    logits = logits.masked_fill(~usable, float("-inf"))
    weights = torch.softmax(logits, dim=-1)
    keep = mask[:, :, :, None] & usable.any(-1, keepdim=True)  # (b, 1, t, 1)
    weights = torch.where(keep, weights, torch.zeros_like(weights))
    return torch.einsum("bhsu,bhdu->bhsd", weights, v)  # (b, h, t, d)


def gather_reference(q, k, v, mask, window_size, scale):
    """The per-position formulation this module replaced: unfold a w-key band for every query."""
    r = window_size // 2
    k_band = F.pad(k, (r, r)).unfold(-1, window_size, 1)  # (b, h, d, t, w)
    v_band = F.pad(v, (r, r)).unfold(-1, window_size, 1)  # (b, h, d, t, w)
    key_ok = F.pad(mask, (r, r), value=False).unfold(-1, window_size, 1)  # (b, 1, t, w)
    logits = torch.einsum("bhdt,bhdtw->bhtw", q, k_band) * scale
    weights = torch.softmax(logits.masked_fill(~key_ok, float("-inf")), dim=-1)
    row_ok = mask.transpose(1, 2)[:, None] & key_ok.any(-1, keepdim=True)  # (b, 1, t, 1)
    weights = torch.where(row_ok, weights, torch.zeros_like(weights))
    return torch.einsum("bhtw,bhdtw->bhtd", weights, v_band)  # (b, h, t, d)


def inputs(t, seed, b=3, h=2, d=4):
    gen = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(b, h, d, t, dtype=torch.float64, generator=gen).requires_grad_(True) for _ in range(3))
    mask = torch.ones(b, 1, t, dtype=torch.bool)
    if b > 1:
        mask[1, :, max(1, t - 3):] = False  # padded tail
    if b > 2:
        mask[2, :, max(1, t // 2):] = False  # longer padded tail
        if t >= 12:
            mask[2, :, 1] = False  # a hole inside the valid part
    if b > 3:
        mask[3] = False  # nothing valid at all
    return q, k, v, mask


def values_and_grads(fn, q, k, v, mask, window_size, scale, **kw):
    out = fn(q, k, v, mask, window_size, scale, **kw)
    weights = torch.linspace(-1, 2, out.numel(), dtype=out.dtype).view_as(out)
    grads = torch.autograd.grad((out * weights).sum(), (q, k, v))
    return out, grads


@pytest.mark.parametrize("window_size", [1, 3, 5, 19])
@pytest.mark.parametrize("length", [1, 2, 7, 9, 20, 33, 67])
@pytest.mark.parametrize("block_size", [4, 32])
def test_equals_dense_band_attention_values_and_gradients(window_size, length, block_size):
    q, k, v, mask = inputs(length, seed=window_size * 1000 + length)
    out, grads = values_and_grads(banded_attention, q, k, v, mask, window_size, 0.3, block_size=block_size)
    ref, ref_grads = values_and_grads(dense_band_reference, q, k, v, mask, window_size, 0.3)
    assert out.shape == (3, 2, length, 4)
    assert (out - ref).abs().max() <= 1e-10
    for g, rg in zip(grads, ref_grads):
        assert (g - rg).abs().max() <= 1e-10


@pytest.mark.parametrize("length", [5, 19, 64, 101])
def test_equals_the_gather_formulation_it_replaced(length):
    q, k, v, mask = inputs(length, seed=length, b=4)
    out, grads = values_and_grads(banded_attention, q, k, v, mask, 19, 0.125)
    ref, ref_grads = values_and_grads(gather_reference, q, k, v, mask, 19, 0.125)
    assert (out - ref).abs().max() <= 1e-10
    for g, rg in zip(grads, ref_grads):
        assert (g - rg).abs().max() <= 1e-10


def test_padding_rows_are_zero_and_never_nan():
    t, w = 40, 5
    q, k, v, mask = inputs(t, seed=7, b=4)
    mask[0, :, 10:20] = False  # a gap wider than the window: queries 13..16 see no valid key
    out, grads = values_and_grads(banded_attention, q, k, v, mask, w, 0.5)
    assert torch.isfinite(out).all() and all(torch.isfinite(g).all() for g in grads)
    invalid_rows = ~mask[:, 0]  # (b, t)
    assert torch.all(out.permute(0, 2, 1, 3)[invalid_rows] == 0)
    assert torch.all(out[3] == 0)  # a sequence with no valid position at all
    # invalid keys receive no gradient, wherever they are
    for g in grads[1:]:
        assert torch.all(g.permute(0, 3, 1, 2)[invalid_rows] == 0)


def test_padded_positions_do_not_change_valid_outputs():
    q, k, v, mask = inputs(23, seed=3, b=1)
    out = banded_attention(q, k, v, mask, 7, 0.4)
    junk = [1e6 * torch.randn(1, 2, 4, 9, dtype=torch.float64) for _ in range(3)]
    qp, kp, vp = (torch.cat((x, j), -1) for x, j in zip((q, k, v), junk))
    mp = torch.cat((mask, torch.zeros(1, 1, 9, dtype=torch.bool)), -1)
    out_padded = banded_attention(qp, kp, vp, mp, 7, 0.4)
    assert (out_padded[:, :, :23] - out).abs().max() <= 1e-12
    assert torch.all(out_padded[:, :, 23:] == 0)


def test_attention_dropout_sees_band_weights():
    q, k, v, mask = inputs(12, seed=5)
    seen = []

    def record(weights):
        seen.append(weights.detach())
        return weights * 0.0

    out = banded_attention(q, k, v, mask, 5, 1.0, attn_drop=record)
    assert len(seen) == 1
    weights = seen[0]  # (b, h, n, c, w)
    assert weights.shape[-1] == 5
    rows = weights.sum(-1).flatten(2)  # (b, h, n c): 1 on valid query rows, 0 elsewhere
    assert torch.allclose(rows[0, :, :12], torch.ones_like(rows[0, :, :12]))
    assert torch.all(rows[1, :, 9:] == 0)  # the padded tail of sequence 1
    assert torch.all(out == 0)  # the dropout's output is what gets applied


def test_block_diagonal_views_pick_the_band():
    c, m, w = 4, 8, 5
    blocks = torch.arange(2 * c * m, dtype=torch.float64).view(2, c, m)
    band = block_diagonals(blocks, w)
    for i in range(c):
        for o in range(w):
            assert band[1, i, o] == blocks[1, i, i + o]
    back = from_block_diagonals(band, m)
    i, j = torch.arange(c)[:, None], torch.arange(m)[None, :]
    on_band = (j - i >= 0) & (j - i < w)
    assert torch.equal(back, torch.where(on_band, blocks, torch.zeros_like(blocks)))


def test_halo_windows_hold_each_blocks_keys():
    x = torch.arange(1, 11, dtype=torch.float64).view(1, 1, 1, 10)  # keys 1..10 at t = 0..9
    win = halo_windows(x, radius=2, block=4, n_blocks=3)[0, 0, :, :, 0]  # (n, m)
    assert win.tolist() == [[0, 0, 1, 2, 3, 4, 5, 6], [3, 4, 5, 6, 7, 8, 9, 10], [7, 8, 9, 10, 0, 0, 0, 0]]
    with pytest.raises(ValueError, match="block >= 2"):
        halo_windows(x, radius=3, block=4, n_blocks=3)


def test_window_size_must_be_positive_and_odd():
    q, k, v, mask = inputs(5, seed=0)
    for bad in (0, 4, -1):
        with pytest.raises(ValueError, match="odd"):
            banded_attention(q, k, v, mask, bad)


class _LargestStorage(TorchDispatchMode):
    """Records the largest storage (bytes) any aten op returns."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for x in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(x, torch.Tensor):
                self.largest = max(self.largest, x.untyped_storage().nbytes())
        return out


@pytest.mark.parametrize("fn,bound_ok", [(banded_attention, True), (gather_reference, False)])
def test_no_per_position_copies_of_keys(fn, bound_ok):
    # SnAG's head width 64, window 19: a per-position band is 19 x the keys; the halo windows are
    # (c + 2r) / c = 1.6 x, the (c x m) logit blocks 50 / 64 x
    q, k, v, mask = (x.detach() if x.dtype != torch.bool else x for x in inputs(512, seed=1, b=1, h=2, d=64))
    with torch.no_grad(), _LargestStorage() as probe:
        fn(q, k, v, mask, 19, 0.25)
    key_bytes = k.untyped_storage().nbytes()
    assert (probe.largest <= 2 * key_bytes) == bound_ok, probe.largest / key_bytes
