"""The chunked SSD scan for inference: the four steps of ``ssd._ssd_chunked_impl``, block by block.

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
``torch.inference_mode``, or plain tensors), and the one-pass scan (whose autograd graph keeps
what the backward needs anyway) otherwise.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hieramamba.models.ssd import _LOG2E, _chunk_geometry, _decay_matrix

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
