"""The chunked SSD scan block by block: for inference, and for training with a recomputing backward.

Inference (``ssd_chunked_blocked``): the four steps of ``ssd._ssd_chunked_impl``, block by block.

Without an autograd graph nothing has to outlive its step, yet the one-pass scan still builds its
intermediates for the whole sequence at once: the (b, h, l, Q) decay and score matrices, the
(b, h, l, p) copy of x * dt and the chunk states and entering states (each as large as x at
Q = n). At the paper's lengths these are the largest tensors of the forward (HieraMamba's first
level at L = 16k: 4 x 96 MiB alive at the peak, measured). Here the same steps run over
``BLOCK_LEN`` steps at a time: the state entering a block is carried over from the block before
(the state-passing recurrence simply continues), so the result is the same scan, and the scan's
memory is its input and output plus one block's intermediates. Every operation is the one-pass
scan's own, in the same order, on a slice of its operands: the output equals it up to the
batched matmuls' summation order (bitwise in the cases tested).

``ssd.ssd_scan_chunked`` runs this whenever no input needs a gradient (``torch.no_grad``,
``torch.inference_mode``, or plain tensors).

Training (``ssd_pieces_with_recompute``, for long scans): the forward runs the one-pass scan over
consecutive pieces of ``TRAIN_PIECE_LEN`` steps without a graph, each piece starting from the
state the one before left, and keeps only the inputs and those entering states (one (b, h, n p)
state per piece). The backward walks the pieces from the last: it rebuilds one piece's graph from
its inputs and entering state, backpropagates the output's gradient and the gradient of the state
the piece left (from the piece after it), and hands the entering state's gradient on. So the scan's
intermediates, and their gradients, exist for one piece at a time instead of the whole sequence
(what ``torch.utils.checkpoint`` around the whole scan, the earlier form, rebuilt at once).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hieramamba.models.ssd import _LOG2E, _chunk_geometry, _decay_matrix, _ssd_chunked_from_state

# Steps per block. Measured on the scan alone at the shape of HieraMamba's first level at L = 64k
# (b 2 (both directions), l 98304, h 8, p = n = 64, Q 64; 2 threads, heap-only allocator, fresh
# process per point, median of 5, 3 rounds on a quiet machine), time / peak-RSS growth:
# one pass 592-612 ms / 2.3-3.1 GB; blocks of 512 steps 508-527 ms / 411-435 MiB; 1024: 520-550
# ms / 423-451 MiB; 2048: 540-581 ms / 451-513 MiB; 4096: 558-614 ms / 589-611 MiB (the output
# alone is 384 MiB). Small blocks stay in cache, so they are faster as well as smaller.
BLOCK_LEN = 512


def ssd_chunked_blocked(x, dt, A, B, C, Q: int, block_len: int = BLOCK_LEN, reverse: bool = False) -> torch.Tensor:
    """x (b, l, h, p), dt (b, l, h), A (h,), B / C (b, l, g, n), all in the accumulation dtype,
    no gradient needed -> y (b, l, h, p) (a transposed view of a (b, h, L, p) buffer, as the
    one-pass scan returns it).

    ``reverse``: the anti-causal scan, y_t = sum_{s >= t} ..., i.e. flip(scan(flip(inputs))) with
    inputs and output in the original time order. The blocks are walked from the end of the
    sequence: each block's x is flipped on its own and its output flipped back into the mirrored
    steps (block-sized copies that stay in cache), so the full-length flipped copies of x and y
    that a flip of the whole sequence costs are never made. dt, B and C, 1 / p and 1 / (h p) of
    x's size, are flipped whole. (``index_select`` / ``index_copy_`` instead of the flips were
    ~4x slower on the strided x that Hydra passes.)
    """
    b, l, h, p, g, n, hg, Q, c, L = _chunk_geometry(x, B, Q)
    K = max(1, block_len // Q)  # chunks per block
    if reverse:
        dt, B, C = dt.flip(1), B.flip(1), C.flip(1)  # reversed time; x stays, read block by block

    # log decay from each chunk's start, for the whole sequence: small, (b, h, c, Q)
    Acs = (F.pad(dt.transpose(1, 2), (0, L - l)) * A[:, None]).view(b, h, c, Q).cumsum(-1)
    upper = torch.ones(Q, Q, dtype=torch.bool, device=x.device).triu_(1)
    y = x.new_empty(b, h, L, p)
    carry = x.new_zeros(b, h, n * p)  # the state entering the current block

    for c0 in range(0, c, K):
        c1 = min(c0 + K, c)
        k = c1 - c0  # chunks in this block
        t0, t1 = c0 * Q, min(c1 * Q, l)
        pad = k * Q - (t1 - t0)  # only the last block can be short
        if reverse:  # reversed steps t0 .. t1 - 1 are the original steps l - 1 - t0 down to l - t1
            x_blk = x[:, l - t1 : l - t0].flip(1)  # (b, t, h, p)
        else:
            x_blk = x[:, t0:t1]
        xdt = (x_blk * dt[:, t0:t1, :, None]).transpose(1, 2)  # (b, h, t, p), strided view
        xdt = (F.pad(xdt, (0, 0, 0, pad)) if pad else xdt.contiguous()).view(b, h, k, Q, p)
        Bg = F.pad(B[:, t0:t1].transpose(1, 2), (0, 0, 0, pad)).contiguous().view(b, g, 1, k, Q, n)
        Cg = F.pad(C[:, t0:t1].transpose(1, 2), (0, 0, 0, pad)).contiguous().view(b, g, 1, k, Q, n)
        Acs_b = Acs[:, :, c0:c1]  # (b, h, k, Q)
        Acs_g = Acs_b.reshape(b, g, hg, k, Q)

        # 1. chunk states, the decay to the chunk end folded into B
        B_dec = (torch.exp(Acs_g[..., -1:] - Acs_g)[..., None] * Bg).view(b, h, k, Q, n)
        states = torch.matmul(B_dec.transpose(-1, -2), xdt).view(b, h, k, n * p)  # (b, h, k, n*p)
        del B_dec

        # 2. state passing, continued from the carry (ssd._ChunkStatePassing's loop, same fused step)
        a = torch.exp(Acs_b[..., -1])[..., None]  # (b, h, k, 1)
        S_in = torch.empty_like(states)
        S_in[:, :, 0] = carry
        for i in range(1, k):
            torch.addcmul(states[:, :, i - 1], S_in[:, :, i - 1], a[:, :, i - 1], out=S_in[:, :, i])
        carry = torch.addcmul(states[:, :, k - 1], S_in[:, :, k - 1], a[:, :, k - 1])
        del states

        # 3. intra-chunk: the decayed (Q x Q) scores of ssd._DecayedScores.forward, made in place
        CB = torch.matmul(Cg, Bg.transpose(-1, -2)).masked_fill_(upper, 0.0)  # (b, g, 1, k, Q, Q)
        scores = _decay_matrix(Acs_g * _LOG2E).mul_(CB)  # (b, g, hg, k, Q, Q)
        yb = torch.matmul(scores.view(b, h, k, Q, Q), xdt)  # (b, h, k, Q, p)
        del scores, CB, xdt

        # 4. inter-chunk: exp(Acs_t) C_t S_in, accumulated into the block's output
        C_dec = (torch.exp(Acs_g)[..., None] * Cg).reshape(b * h * k, Q, n)
        yb = yb.view(b * h * k, Q, p).baddbmm_(C_dec, S_in.view(b * h * k, n, p))
        yb = yb.view(b, h, k * Q, p)
        if reverse:  # back to the original steps; padded steps (past l) are dropped
            y[:, :, l - t1 : l - t0] = yb[:, :, : t1 - t0].flip(2)
        else:
            y[:, :, c0 * Q : c1 * Q] = yb

    return y[:, :, :l].transpose(1, 2)  # (b, l, h, p)


# Steps per piece of the training scan: a multiple of the chunk length. Its intermediates and their
# gradients are ~10 x-sized tensors of the piece (at h 8, p 64: ~4 MiB each for 2048 steps), and
# every piece costs a fixed ~100 small operations in the backward. Measured (HieraMamba's level-0
# shape at L = 16k: l 24576, h 8, p = n = 64; both directions, forward + backward, 2 threads,
# heap-only allocator, 5 runs in one process): pieces of 1024 / 2048 / 4096 / 8192 steps
# 0.91-1.10 / 0.90-0.97 / 0.91-0.98 / 0.90-0.98 s, the whole scan under torch.utils.checkpoint
# 0.86-0.96 s: the same time, at a fraction of the backward's memory.
TRAIN_PIECE_LEN = 2048


class _PiecewiseScan(torch.autograd.Function):
    """The causal scan in pieces, recomputing one piece at a time in the backward (module doc).

    x (b, l, h, p), dt (b, l, h), A (h,), B / C (b, l, g, n) in the accumulation dtype -> y (b, l, h, p).
    ``reverse``: the anti-causal scan; the pieces are taken from the end and each is flipped on its
    own (piece-sized copies), so no flipped copy of a whole input is made or kept for the backward.
    """

    @staticmethod
    def forward(ctx, x, dt, A, B, C, Q: int, piece_len: int, reverse: bool):
        b, l, h, p = x.shape
        n = B.shape[-1]
        n_pieces = -(-l // piece_len)
        y = x.new_empty(b, h, l, p)  # head-major, like the one-pass scan's output
        entering = x.new_zeros(n_pieces, b, h, n * p)  # the state entering each piece
        for i in range(n_pieces):
            cut = _Piece(i, piece_len, l, reverse)
            y_piece, state = _ssd_chunked_from_state(*cut.scan_inputs(x, dt, A, B, C), Q, initial_state=entering[i])
            cut.put(y.transpose(1, 2), y_piece)
            if i + 1 < n_pieces:
                entering[i + 1] = state
        ctx.save_for_backward(x, dt, A, B, C, entering)
        ctx.Q, ctx.piece_len, ctx.reverse = Q, piece_len, reverse
        return y.transpose(1, 2)  # (b, l, h, p)

    @staticmethod
    def backward(ctx, grad):
        x, dt, A, B, C, entering = ctx.saved_tensors
        d_x, d_dt, d_B, d_C = (torch.empty_like(t) for t in (x, dt, B, C))
        d_A = torch.zeros_like(A)
        d_state = None  # gradient of the state the current piece leaves (none for the last piece)
        for i in reversed(range(len(entering))):
            cut = _Piece(i, ctx.piece_len, x.shape[1], ctx.reverse)
            with torch.enable_grad():
                leaves = [t.detach().requires_grad_(True) for t in (*cut.scan_inputs(x, dt, A, B, C), entering[i])]
                y_piece, state = _ssd_chunked_from_state(*leaves[:5], ctx.Q, initial_state=leaves[5])
                outputs, grads = [y_piece], [cut.take(grad)]
                if d_state is not None:
                    outputs.append(state)
                    grads.append(d_state)
                g = torch.autograd.grad(outputs, leaves, grads)
            for dst, src in zip((d_x, d_dt, d_B, d_C), (g[0], g[1], g[3], g[4])):
                cut.put(dst, src)
            d_A += g[2]
            d_state = g[5]
        return d_x, d_dt, d_A, d_B, d_C, None, None, None


class _Piece:
    """Piece i of a scan over l steps in pieces of ``piece_len``, in scan order: steps t0 .. t1 - 1,
    or for ``reverse`` the original steps l - t1 .. l - t0 - 1 read backwards."""

    def __init__(self, i: int, piece_len: int, l: int, reverse: bool):
        t0, t1 = i * piece_len, min((i + 1) * piece_len, l)
        self.steps = slice(l - t1, l - t0) if reverse else slice(t0, t1)
        self.reverse = reverse

    def take(self, t: torch.Tensor) -> torch.Tensor:  # (b, l, ...) -> (b, t1 - t0, ...) in scan order
        piece = t[:, self.steps]
        return piece.flip(1) if self.reverse else piece

    def scan_inputs(self, x, dt, A, B, C) -> tuple[torch.Tensor, ...]:  # the piece's scan inputs (A is per head)
        return self.take(x), self.take(dt), A, self.take(B), self.take(C)

    def put(self, dst: torch.Tensor, value: torch.Tensor) -> None:  # the inverse of ``take``, into dst
        dst[:, self.steps] = value.flip(1) if self.reverse else value


def ssd_pieces_with_recompute(x, dt, A, B, C, Q: int, reverse: bool = False,
                              piece_len: int | None = None) -> torch.Tensor:
    """The scan with an autograd graph that keeps only its inputs (and one state per piece) and
    recomputes the rest piece by piece in the backward (module doc); inputs in the accumulation
    dtype, shapes as ``ssd.ssd_scan``. ``reverse``: the anti-causal scan. ``piece_len``: steps
    per piece (``TRAIN_PIECE_LEN`` when None), rounded down to whole chunks."""
    Q = max(1, min(Q, x.shape[1]))
    piece_len = TRAIN_PIECE_LEN if piece_len is None else piece_len
    piece_len = max(Q, piece_len // Q * Q)
    return _PiecewiseScan.apply(x, dt, A, B, C, Q, piece_len, reverse)
