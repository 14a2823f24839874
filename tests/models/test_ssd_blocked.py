"""The block-by-block scans: inference (the one-pass scan's values, its memory bounded by a block) and
training (pieces recomputed one at a time in the backward: the one-pass scan's values and gradients)."""

from __future__ import annotations

import weakref

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from hieramamba.models import ssd, ssd_blocked
from hieramamba.models.ssd import _ssd_chunked_impl, ssd_scan_chunked, ssd_scan_reference
from hieramamba.models.ssd_blocked import ssd_chunked_blocked, ssd_pieces_with_recompute
from test_ssd import make_inputs  # tests/models is on sys.path (pytest rootdir-relative import)


@pytest.mark.parametrize(
    "l,chunk,block_len,g",
    [
        (1, 8, 8, 1),  # one step
        (37, 8, 8, 1),  # one chunk per block, last block short
        (200, 16, 40, 2),  # block_len not a chunk multiple: 2 chunks per block, heads in 2 groups
        (257, 16, 64, 1),  # 17 chunks in blocks of 4: the last block holds one padded chunk
        (300, 16, 10_000, 1),  # one block holds everything
    ],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_blocked_equals_one_pass(l, chunk, block_len, g, dtype):
    x, dt, A, B, C = make_inputs(b=2, l=l, h=4, p=3, g=g, n=5, dtype=dtype, seed=l)
    y_one = _ssd_chunked_impl(x, dt, A, B, C, chunk)
    y_blk = ssd_chunked_blocked(x, dt, A, B, C, chunk, block_len)
    assert y_blk.shape == y_one.shape == x.shape
    # the same operations on slices: bitwise here (the batched matmuls' order could differ elsewhere)
    assert torch.equal(y_blk, y_one)


@pytest.mark.parametrize("l,chunk,block_len", [(1, 8, 8), (37, 8, 8), (257, 16, 64), (300, 16, 10_000)])
def test_reverse_equals_the_scan_of_the_flipped_sequence(l, chunk, block_len):
    x, dt, A, B, C = make_inputs(b=2, l=l, h=4, p=3, g=2, n=5, dtype=torch.float64, seed=l)
    flipped = [t.flip(1) for t in (x, dt)] + [A] + [t.flip(1) for t in (B, C)]
    y_rev = ssd_chunked_blocked(x, dt, A, B, C, chunk, block_len, reverse=True)
    assert torch.equal(y_rev, ssd_chunked_blocked(*flipped, chunk, block_len).flip(1))  # same ops on the same slices
    # anti-causal: the last step sees only itself; the reverse recurrence holds across blocks
    assert (y_rev - ssd_scan_reference(*flipped).flip(1)).abs().max().item() <= 1e-12


def test_reverse_with_and_without_a_graph():
    x, dt, A, B, C = make_inputs(l=50, dtype=torch.float64)
    y_inf = ssd_scan_chunked(x, dt, A, B, C, chunk_size=8, reverse=True)  # blocked
    x.requires_grad_(True)
    y_grad = ssd_scan_chunked(x, dt, A, B, C, chunk_size=8, reverse=True)  # one pass, flipped in and out
    assert (y_grad - y_inf).abs().max().item() <= 1e-12
    # step t's output depends on x_s for s >= t only: the last step's gradient reaches only the last x
    y_grad[:, -1].sum().backward()
    assert x.grad[:, :-1].abs().max() == 0 and x.grad[:, -1].abs().max() > 0


def test_blocked_matches_recurrence_across_many_blocks():
    x, dt, A, B, C = make_inputs(b=1, l=301, h=2, p=2, g=1, n=3, dt_scale=0.05, a_scale=0.5)
    y = ssd_chunked_blocked(x, dt, A, B, C, 4, block_len=12)  # 76 chunks in 26 blocks
    assert (y - ssd_scan_reference(x, dt, A, B, C)).abs().max().item() <= 1e-10


def test_scan_runs_blocked_exactly_when_no_gradient_is_needed(monkeypatch):
    calls = []
    real = ssd_blocked.ssd_chunked_blocked
    monkeypatch.setattr(ssd_blocked, "ssd_chunked_blocked", lambda *a, **k: calls.append(1) or real(*a, **k))
    x, dt, A, B, C = make_inputs(l=50, dtype=torch.float32)
    y_plain = ssd_scan_chunked(x, dt, A, B, C, chunk_size=8)  # no input requires grad
    with torch.inference_mode():
        y_inf = ssd_scan_chunked(x, dt, A, B, C, chunk_size=8)
    assert len(calls) == 2
    x.requires_grad_(True)
    with torch.no_grad():
        y_nograd = ssd_scan_chunked(x, dt, A, B, C, chunk_size=8)
    assert len(calls) == 3
    y_grad = ssd_scan_chunked(x, dt, A, B, C, chunk_size=8)  # training: the one-pass scan, with a graph
    assert len(calls) == 3 and y_grad.requires_grad
    y_grad.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    for y in (y_plain, y_inf, y_nograd):
        assert torch.equal(y, y_grad.detach())


class _LiveBytes(TorchDispatchMode):
    """Peak bytes of tensor storages alive at once, counting those allocated inside the mode (the
    storages of ``inputs`` are not counted when a view of them comes out of an op)."""

    def __init__(self, inputs):
        super().__init__()
        self.live, self.now, self.peak = {}, 0, 0
        self.inputs = {t.untyped_storage().data_ptr() for t in inputs}

    def _freed(self, key):
        self.now -= self.live.pop(key)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                storage = t.untyped_storage()
                key = storage.data_ptr()
                if storage.nbytes() and key not in self.live and key not in self.inputs:
                    self.live[key] = storage.nbytes()
                    self.now += storage.nbytes()
                    weakref.finalize(storage, self._freed, key)
        self.peak = max(self.peak, self.now)
        return out


def test_blocked_scan_memory_is_its_output_plus_one_block():
    # l = 4096 steps, Q = 16, n = p = 16: the one-pass scan holds several x-sized tensors at once
    # (x * dt, chunk states, entering states, decay and score matrices); the blocked one holds its
    # output and one 128-step block of those (~8 block-sized tensors, 1/32 of x each).
    x, dt, A, B, C = make_inputs(b=1, l=4096, h=4, p=16, g=1, n=16, dtype=torch.float32)
    x_bytes = x.numel() * x.element_size()
    with torch.no_grad():
        with _LiveBytes([x, dt, A, B, C]) as one_pass:
            _ssd_chunked_impl(x, dt, A, B, C, 16)
        with _LiveBytes([x, dt, A, B, C]) as blocked:
            ssd_chunked_blocked(x, dt, A, B, C, 16, block_len=128)
    assert one_pass.peak >= 4 * x_bytes
    assert blocked.peak <= 1.5 * x_bytes  # measured 1.28: the output, Acs (1/16) and one block


@pytest.mark.parametrize("reverse", [False, True])
def test_scan_with_a_graph_keeps_only_its_inputs_for_the_backward(reverse, monkeypatch):
    # training recomputes a long scan's intermediates in the backward (as mamba_ssm's kernels do);
    # without that, autograd would hold decayed B and C, scores and chunk states: several times x's size
    monkeypatch.setattr(ssd, "RECOMPUTE_MIN_ELEMENTS", 256 * 4 * 16)  # this x is "long"
    monkeypatch.setattr(ssd_blocked, "TRAIN_PIECE_LEN", 64)  # 4 pieces
    x, dt, A, B, C = make_inputs(b=1, l=256, h=4, p=16, g=1, n=16, dtype=torch.float64)
    leaves = [t.clone().requires_grad_(True) for t in (x, dt, B, C)]
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel() * t.element_size()) or t, lambda t: t):
        y = ssd_scan_chunked(leaves[0], leaves[1], A, leaves[2], leaves[3], chunk_size=16, reverse=reverse)
    inputs = sum(t.numel() * t.element_size() for t in (x, dt, A, B, C))
    entering_states = 4 * 4 * 16 * 16 * 8  # one (b, h, n p) float64 state per piece
    assert sum(saved) <= inputs + entering_states  # nothing else computed from the inputs
    y.square().sum().backward()
    # the same values and gradients as autograd through the one-pass scan's steps
    plain = [t.detach().clone().requires_grad_(True) for t in (x, dt, B, C)]
    flip = (lambda t: t.flip(1)) if reverse else (lambda t: t)
    y_ref = flip(_ssd_chunked_impl(flip(plain[0]), flip(plain[1]), A, flip(plain[2]), flip(plain[3]), 16))
    assert torch.equal(y, y_ref)  # the pieces continue the state-passing recurrence exactly
    y_ref.square().sum().backward()
    for got, want in zip(leaves, plain):
        assert torch.allclose(got.grad, want.grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize(
    "l,chunk,piece_len,g",
    [
        (37, 8, 8, 1),  # one chunk per piece, the last piece short (shorter than a chunk)
        (200, 16, 40, 2),  # piece_len not a chunk multiple (-> 32), heads in 2 groups
        (257, 16, 64, 1),  # 17 chunks in pieces of 4
        (300, 16, 10_000, 1),  # one piece
    ],
)
def test_pieces_give_the_one_pass_gradients_for_every_input(l, chunk, piece_len, g, reverse):
    x, dt, A, B, C = make_inputs(b=2, l=l, h=4, p=3, g=g, n=5, dtype=torch.float64, seed=l)
    ours = [t.clone().requires_grad_(True) for t in (x, dt, A, B, C)]
    ref = [t.clone().requires_grad_(True) for t in (x, dt, A, B, C)]
    y = ssd_pieces_with_recompute(*ours, chunk, reverse=reverse, piece_len=piece_len)
    flip = (lambda t: t.flip(1)) if reverse else (lambda t: t)
    y_ref = flip(_ssd_chunked_impl(flip(ref[0]), flip(ref[1]), ref[2], flip(ref[3]), flip(ref[4]), chunk))
    weights = torch.randn(y.shape, dtype=y.dtype, generator=torch.Generator().manual_seed(1))
    (y * weights).sum().backward()
    (y_ref * weights).sum().backward()
    assert torch.allclose(y, y_ref, rtol=0, atol=1e-12)
    for name, got, want in zip(("x", "dt", "A", "B", "C"), ours, ref):
        assert torch.allclose(got.grad, want.grad, rtol=1e-9, atol=1e-10), name


def test_piecewise_backward_holds_one_piece_of_intermediates():
    # the backward rebuilds one piece's graph at a time: its peak of tensors alive (beyond the
    # inputs and their gradients) is a few pieces' worth, not the whole scan's intermediates
    x, dt, A, B, C = make_inputs(b=1, l=4096, h=4, p=16, g=1, n=16, dtype=torch.float32)
    x_bytes = x.numel() * x.element_size()
    peaks = {}
    for name, piece_len in (("whole", 4096), ("pieces", 256)):
        leaves = [t.clone().requires_grad_(True) for t in (x, dt, A, B, C)]
        y = ssd_pieces_with_recompute(*leaves, 16, piece_len=piece_len)
        grad = torch.ones_like(y)
        with _LiveBytes([x, dt, A, B, C, y, grad, *leaves]) as live:
            y.backward(grad)
        peaks[name] = live.peak
    # measured: whole 14.6 x, pieces 2.5 x (the input gradients, ~1.6 x, and one piece's graph)
    assert peaks["whole"] >= 10 * x_bytes
    assert peaks["pieces"] <= 3 * x_bytes


def test_a_short_scan_with_a_graph_is_not_recomputed(monkeypatch):
    # below RECOMPUTE_MIN_ELEMENTS the recompute's fixed cost outweighs the few MB it frees
    x, dt, A, B, C = make_inputs(b=1, l=64, h=2, p=4, g=1, n=4, dtype=torch.float64)
    assert x.numel() < ssd.RECOMPUTE_MIN_ELEMENTS
    monkeypatch.setattr(ssd_blocked, "ssd_pieces_with_recompute", lambda *a, **k: pytest.fail("short scans are not recomputed"))
    x.requires_grad_(True)
    ssd_scan_chunked(x, dt, A, B, C, chunk_size=8).sum().backward()
    assert x.grad is not None
