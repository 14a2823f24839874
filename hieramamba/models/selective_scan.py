"""Mamba-1 selective scan (S6): chunked pure-PyTorch scan, per-step reference, CUDA fast path.

The recurrence (seed-backbones.md §1.2), per batch b, channel d and state n, zero initial state:

    h_t[d, n] = exp(delta_t[d] * A[d, n]) * h_{t-1}[d, n] + delta_t[d] * B_t[n] * u_t[d]
    y_t[d]    = sum_n C_t[n] * h_t[d, n] + D[d] * u_t[d]
    out_t[d]  = y_t[d] * silu(z_t[d])                       (when z is given)

with delta = softplus(delta + delta_bias) when ``delta_softplus``. A is per channel and per state
(shape (d, n)), so the decay differs along n and the SSD (Mamba-2) matmul form with a scalar decay
per head does not apply: the chunked form below keeps every (d, n) state explicit. (A Q x Q
decay-matrix form inside chunks, as SSD uses, would cost b * l * d * n * Q elements and was
measured slower on CPU than the Q vectorised steps used here.)

Layout follows ``mamba_ssm.ops.selective_scan_interface.selective_scan_fn`` so that the CUDA kernel
is a drop-in: u, delta, z ``(b, d, l)``; A ``(d, n)``; B, C ``(b, n, l)`` (input-dependent, shared by
all d channels); D, delta_bias ``(d,)``; out ``(b, d, l)``.

Three implementations:

- ``selective_scan_reference``: the recurrence as a loop over time in float64. Slow; for tests.
- ``selective_scan_chunked``: the pure-PyTorch scan used on CPU. The sequence is cut into chunks
  of Q steps; the recurrence over a whole chunk is again a step of the same linear recurrence,
  h_out = exp(sum_t delta_t A) * h_in + (the chunk's state from a zero start). So: (1) every
  chunk's zero-start state comes from Q vectorised steps over all chunks at once; (2) the states
  entering the chunks come from a work-efficient parallel prefix scan over chunks, log2(L/Q)
  vectorised levels; (3) every step's state, and y, follow from the entering states in Q more
  vectorised steps. Python runs O(Q + log2(L/Q)) ops per memory block, never a loop over
  chunks or time. The
  recurrence is one ``torch.autograd.Function`` with a hand-written backward pass: the adjoint
  g_t = dL/dh_t obeys the same recurrence run backwards (g_t = C_t dy_t + exp(delta_{t+1} A)
  g_{t+1}), so it is chunked the same way, and the gradients of x = delta * u, delta, A, B, C are
  contractions of g, the states and the decays. Only the per-chunk entering states, 1/Q of the
  per-step states, are saved; the backward pass recomputes the rest. Both passes walk the chunks
  in blocks of bounded size (cache-sized; the state or adjoint crosses block boundaries), so the
  memory beyond those saved states does not grow with L. The softplus/delta_bias prologue and the
  D/z epilogue are ordinary autograd ops around the Function. Accumulates in float32 (float64
  stays float64). Q = ``DEFAULT_CHUNK_SIZE`` was picked by measurement
  (``python -m hieramamba.bench.selective_scan_bench``).
- ``mamba_ssm``'s ``selective_scan_fn``: imported lazily, only when the tensors are on CUDA.

``selective_scan(..., backend="auto")`` picks mamba_ssm on CUDA when it is importable, the chunked
scan otherwise.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

BACKENDS = ("auto", "torch", "mamba_ssm")


def _mamba_ssm_scan_fn():
    """``mamba_ssm``'s CUDA selective scan, or None when mamba_ssm (or its CUDA extension) is absent."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn  # noqa: PLC0415
    except Exception:  # ImportError, or the missing selective_scan_cuda extension on CPU builds
        return None
    return selective_scan_fn


def mamba_ssm_available() -> bool:
    """True when CUDA is usable and mamba_ssm's selective scan imports."""
    return torch.cuda.is_available() and _mamba_ssm_scan_fn() is not None


def resolve_backend(backend: str, device: torch.device) -> str:
    """Map ``backend`` ("auto" | "torch" | "mamba_ssm") to the one that will run on ``device``.

    An unknown name is a ValueError; "mamba_ssm" where it cannot run is a RuntimeError (as in
    ``hieramamba.models.ssd``).
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown selective-scan backend {backend!r}; expected one of {BACKENDS}")
    if backend == "torch":
        return "torch"
    on_cuda = device.type == "cuda"
    if backend == "mamba_ssm":
        if not on_cuda:
            raise RuntimeError("selective-scan backend 'mamba_ssm' needs CUDA tensors")
        if _mamba_ssm_scan_fn() is None:
            raise RuntimeError("selective-scan backend 'mamba_ssm' requested but mamba_ssm is not importable")
        return "mamba_ssm"
    return "mamba_ssm" if on_cuda and _mamba_ssm_scan_fn() is not None else "torch"


def _check_shapes(u, delta, A, B, C, D, z, delta_bias) -> None:
    if u.dim() != 3:
        raise ValueError(f"u must be (b, d, l), got {tuple(u.shape)}")
    b, d, l = u.shape
    if delta.shape != u.shape:
        raise ValueError(f"delta must match u {tuple(u.shape)}, got {tuple(delta.shape)}")
    if A.dim() != 2 or A.shape[0] != d:
        raise ValueError(f"A must be (d={d}, n), got {tuple(A.shape)}")
    n = A.shape[1]
    for name, t in (("B", B), ("C", C)):
        if t.shape != (b, n, l):
            raise ValueError(f"{name} must be (b, n, l) = {(b, n, l)}, got {tuple(t.shape)}")
    for name, t in (("D", D), ("delta_bias", delta_bias)):
        if t is not None and t.shape != (d,):
            raise ValueError(f"{name} must be (d,) = ({d},), got {tuple(t.shape)}")
    if z is not None and z.shape != u.shape:
        raise ValueError(f"z must match u {tuple(u.shape)}, got {tuple(z.shape)}")


def _prepare_delta(delta, delta_bias, delta_softplus, dtype):
    delta = delta.to(dtype)
    if delta_bias is not None:
        delta = delta + delta_bias.to(dtype)[None, :, None]
    if delta_softplus:
        delta = F.softplus(delta)
    return delta


def _finish(y, u, D, z, dtype):
    """Add the skip term D*u and the silu(z) gate; y is (b, d, l) in the compute dtype."""
    if D is not None:
        y = y + u.to(dtype) * D.to(dtype)[None, :, None]
    if z is not None:
        y = y * F.silu(z.to(dtype))
    return y


def selective_scan_reference(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: Optional[torch.Tensor] = None,
    z: Optional[torch.Tensor] = None,
    delta_bias: Optional[torch.Tensor] = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
):
    """The recurrence step by step in float64 (a Python loop over time): the ground truth for tests.

    Returns out ``(b, d, l)`` in float64 (and the final state ``(b, d, n)`` if asked).
    """
    _check_shapes(u, delta, A, B, C, D, z, delta_bias)
    f64 = torch.float64
    delta = _prepare_delta(delta, delta_bias, delta_softplus, f64)  # (b, d, l)
    u64, A64, B64, C64 = u.to(f64), A.to(f64), B.to(f64), C.to(f64)
    b, d, l = u.shape
    h = u64.new_zeros(b, d, A.shape[1])  # (b, d, n)
    ys = []
    for t in range(l):
        decay = torch.exp(delta[:, :, t, None] * A64)  # (b, d, n)
        h = decay * h + (delta[:, :, t] * u64[:, :, t])[:, :, None] * B64[:, None, :, t]
        ys.append((h * C64[:, None, :, t]).sum(-1))  # (b, d)
    y = torch.stack(ys, dim=-1) if ys else u64.new_zeros(b, d, 0)
    out = _finish(y, u, D, z, f64)
    return (out, h) if return_last_state else out


# Elements of one block tensor of the per-step work, (Q, chunks * b, n, d): both passes take the
# chunks in blocks of at most this size (at least one chunk), so the per-step work takes bounded
# memory at any sequence length (2**19 float32 = 2 MiB per tensor; at most four live at once, in
# the backward pass). Blocks about the size of the L2 cache were measured fastest: at L = 4k,
# d = 768, forward+backward took ~300 ms with 2**19, ~10% more with 2**18 or 2**20, 30-40% more
# with 2**21 or 2**22. What grows with L is the per-chunk entering states, (L/Q, b, n, d), saved
# for the backward pass.
_BLOCK_ELEMENTS = 1 << 19

# fastest forward+backward, with Q = 16 within noise, at (b=4, d=128, L=256) and (b=1, d=768,
# L=4k) on CPU (one thread)
DEFAULT_CHUNK_SIZE = 8

_LOG2_E = 1.0 / math.log(2.0)


def _linear_scan(a: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """All states of h_c = a_c * h_{c-1} + s_c along dim 1, h_{-1} = 0 (inclusive scan).

    a, s (b, c, ...). Work-efficient parallel prefix scan (the Blelloch up/down sweep written as
    odd/even recursion): adjacent pairs are combined, (a_e, s_e) then (a_o, s_o) ->
    (a_e a_o, a_o s_e + s_o), the half-length problem gives the states at odd positions, and one
    more step gives the even ones (an odd last element needs no pair: it is an even position).
    log2(c) levels of vectorised ops, O(c) work in all. Decays are kept as values, not logs: with
    delta >= 0 and A <= 0 they lie in [0, 1], so their products underflow to 0 at worst, as exp of
    summed logs would; the log form needs an exp at every level and was measured 2-5x slower.
    """
    nc = s.shape[1]
    if nc == 1:
        return s
    m = nc // 2
    a_o, s_o = a[:, 1::2], s[:, 1::2]
    h_o = _linear_scan(a[:, 0:2 * m:2] * a_o, torch.addcmul(s_o, a_o, s[:, 0:2 * m:2]))  # odd positions
    h = torch.empty_like(s)  # slice assignments, not out=, so that autograd can run through it
    h[:, 1::2] = h_o
    h[:, 0] = s[:, 0]
    h[:, 2::2] = torch.addcmul(s[:, 2::2], a[:, 2::2], h_o[:, :(nc - 1) // 2])  # h_2k = a_2k h_2k-1 + s_2k
    return h


def _scan_from(a: torch.Tensor, s: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
    """``_linear_scan`` from the state h0 instead of 0; returns (b, c + 1, ...) with h0 first.

    a, s (b, c, ...); h0 (b, ...). h0 enters as one more leading step (its decay is irrelevant: it
    multiplies the zero state), so the result holds the state entering every chunk and, last, the
    state leaving the last one.
    """
    return _linear_scan(torch.cat([torch.ones_like(a[:, :1]), a], dim=1), torch.cat([h0[:, None], s], dim=1))


def _time_major(t: torch.Tensor, q: int, pad: int) -> torch.Tensor:
    """(b, k, l) -> (q, c, b, k), contiguous, zero-padded to c * q steps.

    Step t of every chunk is one contiguous (c, b, k) slab, and so is the slice of a block of
    chunks: (q, chunks, b, k) -> (q, chunks * b, k) is a view.
    """
    b, k, _ = t.shape
    return F.pad(t, (0, pad)).view(b, k, -1, q).permute(3, 2, 0, 1).contiguous()


def _seq_major(t: torch.Tensor, length: int) -> torch.Tensor:
    """(q, c, b, k) -> (b, k, length): the inverse of ``_time_major``, padding dropped."""
    q, nc, b, k = t.shape
    return t.permute(2, 3, 1, 0).reshape(b, k, nc * q)[:, :, :length]


def _blocks(nc: int, chunk_elements: int) -> list[tuple[int, int]]:
    """Chunk ranges [c0, c1) whose block tensors hold at most ``_BLOCK_ELEMENTS`` (>= 1 chunk)."""
    step = max(1, _BLOCK_ELEMENTS // max(1, chunk_elements))
    return [(c0, min(c0 + step, nc)) for c0 in range(0, nc, step)]


def _buffers(count: int, blocks: list[tuple[int, int]], chunk_elements: int, like: torch.Tensor):
    """``count`` flat buffers for the largest block, allocated once per pass: per-block allocations
    of this size were measured to cost page faults (and 30%+ of the time) at long L."""
    numel = max(c1 - c0 for c0, c1 in blocks) * chunk_elements
    return [like.new_empty(numel) for _ in range(count)]


def _shaped(buf: torch.Tensor, *shape: int) -> torch.Tensor:
    """The leading elements of a flat buffer as a contiguous tensor of ``shape``."""
    return buf[:math.prod(shape)].view(shape)


def _block_decays(dl: torch.Tensor, A2: torch.Tensor, buf: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The decays of a block: per step exp(delta_t A), (q, r, n, d), written into ``buf``, and per
    chunk exp(sum_t delta_t A), (r, n, d). dl (q, r, d); A2 = A^T log2(e), (n, d)."""
    q, r, d = dl.shape
    a = torch.mul(dl[:, :, None, :], A2, out=_shaped(buf, q, r, A2.shape[0], d)).exp2_()
    a_chunk = torch.mul(dl.sum(0)[:, None, :], A2).exp2_()
    return a, a_chunk


class _ChunkedScan(torch.autograd.Function):
    """h_t = exp(delta_t A) h_{t-1} + x_t B_t, y_t = C_t . h_t from h = 0, with a hand-written backward.

    Inputs x = delta * u, delta (b, d, l); A (d, n); B, C (b, n, l), one float dtype; outputs y
    (b, d, l) and the final state (b, d, n). The padded sequence is cut into c chunks of q steps,
    and the chunks are processed in blocks laid out time-major, (q, r, n, d) with r = (chunks of
    the block) * b: step t of every chunk of the block is one contiguous (r, n, d) slab, so a step
    of all chunks at once is one vectorised op. d is innermost: the contractions over n (y = C . h,
    dx = B . g) are bmm with a contiguous (n, d) operand; those over d are a product and a sum over
    the contiguous last dim. The decays exp(delta A) are computed as exp2(delta * (A log2 e)), which
    is several times faster on CPU and differs only by rounding.

    Blocks run in order (in reverse order in the backward pass), each handing its boundary state
    (adjoint) to the next; inside a block everything is vectorised over its chunks. Saved for the
    backward pass: the inputs and the state entering every chunk, (c, b, n, d), i.e. 1/q of the
    states; the backward pass recomputes decays and per-step states block by block from them.
    """

    @staticmethod
    def forward(ctx, x, delta, A, B, C, q):
        b, d, l = x.shape
        n = A.shape[1]
        nc = max(1, -(-l // q))
        pad = nc * q - l
        # Padded tail: delta = 0 and x = 0, so decay 1 and no input: valid outputs and the final
        # state are unchanged. (B, C are padded too, only so that every chunk has q steps.)
        xs, ds, Bs, Cs = (_time_major(t, q, pad) for t in (x, delta, B, C))  # (q, c, b, d | n)
        A2 = (A.t() * _LOG2_E).contiguous()  # (n, d): exp(delta A) = exp2(delta A2)
        save = any(ctx.needs_input_grad)
        h_in = x.new_empty(nc, b, n, d) if save else None  # the state entering every chunk
        y = x.new_empty(q, nc, b, d)
        h = x.new_zeros(b, n, d)  # the state entering the block
        blocks = _blocks(nc, b * q * n * d)
        a_buf, v_buf = _buffers(2, blocks, b * q * n * d, x)
        for c0, c1 in blocks:
            cb = c1 - c0
            r = cb * b
            dl = ds[:, c0:c1].reshape(q, r, d)
            # block tensors (q, r, n, d) are written into contiguous buffers (out=): a
            # broadcasting op would otherwise take the layout of its inputs
            a, a_chunk = _block_decays(dl, A2, a_buf)  # (q, r, n, d), (r, n, d)
            v = torch.mul(Bs[:, c0:c1].reshape(q, r, n, 1), xs[:, c0:c1].reshape(q, r, 1, d),
                          out=_shaped(v_buf, q, r, n, d))  # inputs x_t B_t
            a_t, v_t = a.unbind(0), v.unbind(0)
            # (1) each chunk's state from a zero start: q steps over all chunks of the block at once
            s = v_t[0]
            for t in range(1, q):
                s = torch.addcmul(v_t[t], a_t[t], s)  # (r, n, d)
            # (2) the states entering the chunks: parallel prefix over the block's chunks, from the
            # state entering the block; a whole chunk decays by a_chunk = exp(sum_t delta_t A)
            hs = _scan_from(a_chunk.view(1, cb, b, n, d), s.view(1, cb, b, n, d), h[None])[0]  # (cb + 1, b, n, d)
            h = hs[cb]
            if save:
                h_in[c0:c1] = hs[:cb]
            # (3) the state of every step from the entering ones, in place of the inputs v
            prev = hs[:cb].view(r, n, d)
            for t in range(q):
                prev = v_t[t].addcmul_(a_t[t], prev)  # (r, n, d): h_t
            # y_t = C_t . h_t for all steps at once: (q r, 1, n) @ (q r, n, d)
            y[:, c0:c1] = torch.bmm(Cs[:, c0:c1].reshape(q * r, 1, n), v.view(q * r, n, d)).view(q, cb, b, d)
        if save:
            ctx.save_for_backward(x, delta, A, B, C, h_in)
            ctx.q = q
        return _seq_major(y, l), h.transpose(1, 2).contiguous()

    @staticmethod
    @once_differentiable
    def backward(ctx, dy, dh_last):
        """The adjoint g_t = dL/dh_t runs backwards, g_t = C_t dy_t + a_{t+1} g_{t+1}, chunked like
        the forward pass: each chunk from a zero carry, the carries by a prefix scan over the
        reversed chunks, then the q steps again from the carries. With d(log a_t) = g_t a_t h_{t-1}:
        dx_t = sum_n g_t B_t, dB_t = sum_d g_t x_t, dC_t = sum_d h_t dy_t,
        ddelta_t = sum_n d(log a_t) A, dA = sum_{b,t} d(log a_t) delta_t.
        """
        x, delta, A, B, C, h_in = ctx.saved_tensors
        q = ctx.q
        b, d, l = x.shape
        n = A.shape[1]
        nc = h_in.shape[0]
        pad = nc * q - l
        xs, ds, Bs, Cs, dys = (_time_major(t, q, pad) for t in (x, delta, B, C, dy))  # (q, c, b, d | n)
        At = A.t().contiguous()  # (n, d)
        A2 = At * _LOG2_E
        dx, ddelta = x.new_empty(q, nc, b, d), x.new_empty(q, nc, b, d)
        dB, dC = x.new_empty(q, nc, b, n), x.new_empty(q, nc, b, n)
        dAt = x.new_zeros(n, d)
        carry = dh_last.transpose(1, 2)  # (b, n, d): the adjoint reaching the block from its right
        blocks = _blocks(nc, b * q * n * d)
        a_buf, g_buf, h_buf, ah_buf = _buffers(4, blocks, b * q * n * d, x)
        for c0, c1 in reversed(blocks):
            cb = c1 - c0
            r = cb * b
            dl = ds[:, c0:c1].reshape(q, r, d)
            xb = xs[:, c0:c1].reshape(q, r, 1, d)
            Bb = Bs[:, c0:c1].reshape(q, r, n)
            dyb = dys[:, c0:c1].reshape(q, r, 1, d)
            a, a_chunk = _block_decays(dl, A2, a_buf)  # (q, r, n, d), (r, n, d)
            a_t = a.unbind(0)
            g = torch.mul(Cs[:, c0:c1].reshape(q, r, n, 1), dyb, out=_shaped(g_buf, q, r, n, d))  # C_t dy_t
            g_t = g.unbind(0)
            # (1) each chunk's adjoint from a zero carry, back to its first step
            gl = g_t[q - 1]
            for t in range(q - 2, -1, -1):
                gl = torch.addcmul(g_t[t], a_t[t + 1], gl)
            # (2) the carries, by the prefix scan over the reversed chunks: k_c = a_first g_first
            # = a_first gl_first + exp(sum_t delta_t A) k_{c+1}, from the carry entering the block
            ks = _scan_from(a_chunk.view(1, cb, b, n, d).flip(1), (a_t[0] * gl).view(1, cb, b, n, d).flip(1),
                            carry[None])[0]  # (cb + 1, b, n, d), last chunk first
            carry = ks[cb]
            # (3) the adjoint of every step, in place: g_t += a_{t+1} g_{t+1}, and k_{c+1} at the
            # chunk's last step
            g_t[q - 1].add_(ks[:cb].flip(0).view(r, n, d))
            for t in range(q - 2, -1, -1):
                g_t[t].addcmul_(a_t[t + 1], g_t[t + 1])
            dx[:, c0:c1] = torch.bmm(Bb.reshape(q * r, 1, n), g.view(q * r, n, d)).view(q, cb, b, d)
            # the forward states again, from the saved entering ones: ah_t = a_t h_{t-1} (kept for
            # d(log a)), h_t = ah_t + x_t B_t
            h = torch.mul(Bb[..., None], xb, out=_shaped(h_buf, q, r, n, d))  # (q, r, n, d): x_t B_t, becomes h_t
            ah = _shaped(ah_buf, q, r, n, d)
            h_t, ah_t = h.unbind(0), ah.unbind(0)
            prev = h_in[c0:c1].view(r, n, d)
            for t in range(q):
                prev = h_t[t].add_(torch.mul(a_t[t], prev, out=ah_t[t]))
            dC[:, c0:c1] = h.mul_(dyb).sum(-1).view(q, cb, b, n)  # h is scratch from here on
            dB[:, c0:c1] = torch.mul(g, xb, out=h).sum(-1).view(q, cb, b, n)
            dlog_a = ah.mul_(g)  # (q, r, n, d): d(log a_t) = g_t a_t h_{t-1}; g is scratch from here on
            ddelta[:, c0:c1] = torch.mul(dlog_a, At, out=g).sum(2).view(q, cb, b, d)
            dAt += torch.mul(dlog_a, dl[:, :, None, :], out=h).sum((0, 1))
        return (_seq_major(dx, l), _seq_major(ddelta, l), dAt.t(), _seq_major(dB, l), _seq_major(dC, l), None)


def selective_scan_chunked(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: Optional[torch.Tensor] = None,
    z: Optional[torch.Tensor] = None,
    delta_bias: Optional[torch.Tensor] = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
):
    """Chunked pure-PyTorch selective scan (same arguments and semantics as the reference).

    Computes in float32 (float64 inputs stay float64) and returns ``out`` in u's dtype (the final
    state, when asked, in the compute dtype). The recurrence itself is one autograd Function with a
    hand-written backward that recomputes the per-step work from the per-chunk states; the
    softplus/delta_bias prologue and the D/z epilogue are ordinary autograd ops around it.
    """
    _check_shapes(u, delta, A, B, C, D, z, delta_bias)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    cdt = torch.float64 if u.dtype == torch.float64 else torch.float32
    delta = _prepare_delta(delta, delta_bias, delta_softplus, cdt)  # (b, d, l)
    x = delta * u.to(cdt)  # (b, d, l): the Euler input delta_t * u_t
    y, h = _ChunkedScan.apply(x, delta, A.to(cdt), B.to(cdt), C.to(cdt), chunk_size)
    out = _finish(y, u, D, z, cdt).to(u.dtype)
    return (out, h) if return_last_state else out


def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: Optional[torch.Tensor] = None,
    z: Optional[torch.Tensor] = None,
    delta_bias: Optional[torch.Tensor] = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    backend: str = "auto",
):
    """Mamba-1 selective scan with the ``selective_scan_fn`` signature; see the module docstring.

    ``backend``: "torch" (chunked pure-PyTorch), "mamba_ssm" (CUDA kernel; raises if unavailable),
    "auto" (mamba_ssm on CUDA when importable, torch otherwise). ``chunk_size`` only affects the
    torch backend.
    """
    which = resolve_backend(backend, u.device)
    if which == "mamba_ssm":
        _check_shapes(u, delta, A, B, C, D, z, delta_bias)
        fn = _mamba_ssm_scan_fn()
        # The kernel wants A, D and delta_bias in float32 and contiguous inputs.
        return fn(
            u.contiguous(),
            delta.contiguous(),
            A.float().contiguous(),
            B.contiguous(),
            C.contiguous(),
            None if D is None else D.float(),
            None if z is None else z.contiguous(),
            None if delta_bias is None else delta_bias.float(),
            delta_softplus,
            return_last_state,
        )
    return selective_scan_chunked(
        u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state, chunk_size
    )
