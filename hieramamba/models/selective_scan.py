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
  h_out = exp(sum_t delta_t A) * h_in + (the chunk's state from a zero start). So: (1) every chunk
  is summarised at once (its log decay and zero-start state, per (d, n)); (2) the states entering
  the chunks come from a work-efficient parallel prefix scan over chunks, log2(L/Q) vectorised
  levels; (3) each chunk's outputs are computed from its entering state in Q vectorised steps
  over all chunks at once. Python runs Q + O(log2(L/Q)) steps, never a loop over chunks or time.
  Accumulates in float32 (float64 stays float64); memory is bounded by processing chunks in
  blocks, and with gradients the blocks and the scan are recomputed in the backward pass
  (activation checkpointing). Q = ``DEFAULT_CHUNK_SIZE`` was picked by measurement
  (``python -m hieramamba.bench.selective_scan_bench``).
- ``mamba_ssm``'s ``selective_scan_fn``: imported lazily, only when the tensors are on CUDA.

``selective_scan(..., backend="auto")`` picks mamba_ssm on CUDA when it is importable, the chunked
scan otherwise.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

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


# Elements of one block tensor of the per-step work, (b, chunks, d, n, Q) float: the chunks are
# processed in blocks of at most this size (at least one chunk), so the per-step work takes bounded
# memory at any sequence length (2**24 float32 = 64 MiB per tensor; a handful live at once). What
# grows with L is the per-chunk state tensors of the scan over chunks, (b, L/Q, d, n).
_BLOCK_ELEMENTS = 1 << 24

DEFAULT_CHUNK_SIZE = 8  # fastest forward+backward at L = 2k and 8k on CPU (selective_scan_bench)


def _chunk_summary(delta: torch.Tensor, x: torch.Tensor, A: torch.Tensor, Bc: torch.Tensor):
    """Each chunk as one step of the recurrence: its log decay and its state from a zero start.

    delta, x (b, c, d, q); A (d, n); Bc (b, c, q, n) -> log decay (b, c, d, n) = sum_t delta_t A,
    state (b, c, d, n) = sum_s exp(sum_{s<k<=Q-1} delta_k A) B_s x_s. The decay exponents are
    sums of non-positive terms counted back from the chunk end, so nothing overflows.
    """
    cum = torch.cumsum(delta[:, :, :, None, :] * A[None, None, :, :, None], dim=-1)  # (b, c, d, n, q), <= 0
    total = cum[..., -1].clone()  # (b, c, d, n); a copy, so that cum is freed with the block
    # sum_{s<k<=Q-1} dA_k = total - cum_s: the cumulative sum is non-increasing (every term <= 0),
    # so this is <= 0 in floating point too
    after = total[..., None] - cum  # (b, c, d, n, s)
    v = Bc.transpose(2, 3)[:, :, None, :, :] * x[:, :, :, None, :]  # (b, c, d, n, s): B_s[n] x_s[d]
    return total, (torch.exp(after) * v).sum(-1)


def _chunk_outputs(delta: torch.Tensor, x: torch.Tensor, A: torch.Tensor, Bc: torch.Tensor, Cc: torch.Tensor,
                   h_in: torch.Tensor) -> torch.Tensor:
    """The outputs of every chunk from its entering state: y (b, c, d, q).

    delta, x (b, c, d, q); A (d, n); Bc, Cc (b, c, q, n); h_in (b, c, d, n). The Q steps inside a
    chunk run as a loop of Q vectorised steps over all chunks at once:
    h_t = exp(delta_t A) h_{t-1} + B_t x_t, y_t = sum_n C_t[n] h_t[n].
    """
    b, c, d, q = x.shape
    n = A.shape[1]
    # time-major layouts, so that every step reads contiguous memory; (b, c) flattened for bmm
    decay = torch.exp(delta.permute(3, 0, 1, 2)[..., None] * A).reshape(q, b * c, d, n)
    v = (Bc.permute(2, 0, 1, 3)[:, :, :, None, :] * x.permute(3, 0, 1, 2)[..., None]).reshape(q, b * c, d, n)
    C_t = Cc.permute(2, 0, 1, 3).reshape(q, b * c, n, 1)
    h = h_in.reshape(b * c, d, n)
    ys = []
    for t in range(q):
        h = torch.addcmul(v[t], decay[t], h)  # (b * c, d, n)
        ys.append(torch.bmm(h, C_t[t]))  # (b * c, d, 1)
    return torch.cat(ys, dim=-1).view(b, c, d, q)


def _linear_scan(log_a: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """All states of h_c = exp(log_a_c) * h_{c-1} + s_c along dim 1, h_{-1} = 0 (inclusive scan).

    log_a, s (b, c, ...). Work-efficient parallel prefix scan (the Blelloch up/down sweep written
    as odd/even recursion): adjacent pairs are combined, (a_e, s_e) then (a_o, s_o) ->
    (a_e a_o, a_o s_e + s_o), the half-length problem gives the states at odd positions, and one
    more step gives the even ones. log2(c) levels of vectorised ops, O(c) work in all. Products of
    decays stay in log space (sums of log_a), so they underflow to 0 at worst, never overflow.
    """
    nc = s.shape[1]
    if nc == 1:
        return s
    if nc % 2:  # one neutral chunk at the end (decay 1, no input); dropped from the result
        log_a = torch.cat([log_a, torch.zeros_like(log_a[:, :1])], dim=1)
        s = torch.cat([s, torch.zeros_like(s[:, :1])], dim=1)
    la_e, la_o = log_a[:, 0::2], log_a[:, 1::2]
    s_e, s_o = s[:, 0::2], s[:, 1::2]
    h_o = _linear_scan(la_e + la_o, torch.exp(la_o) * s_e + s_o)  # states at odd positions
    h_before_e = torch.cat([torch.zeros_like(h_o[:, :1]), h_o[:, :-1]], dim=1)  # state before each even one
    h_e = torch.exp(la_e) * h_before_e + s_e
    return torch.stack((h_e, h_o), dim=2).flatten(1, 2)[:, :nc]


def _chunk_scan(delta: torch.Tensor, x: torch.Tensor, A: torch.Tensor, Bc: torch.Tensor, Cc: torch.Tensor,
                checkpointed: bool = False):
    """The chunked recurrence on chunk views; returns y (b, c, d, q) and the final state (b, d, n).

    delta, x (b, c, d, q); A (d, n); Bc, Cc (b, c, q, n). Three steps:

    1. every chunk summarised as one step of the same recurrence (``_chunk_summary``): its log
       decay and its state from a zero start, all chunks at once;
    2. the states entering the chunks by a parallel prefix scan over chunks (``_linear_scan``):
       log2(c) vectorised steps, no loop over chunks;
    3. each chunk's outputs from its entering state (``_chunk_outputs``): Q vectorised steps over
       all chunks at once.

    Python does Q + O(log2(L/Q)) steps in all, never L/Q. Steps 1 and 3 run over blocks of chunks
    of at most ``_BLOCK_ELEMENTS`` elements (a few large vectorised blocks) to bound memory. With
    ``checkpointed`` each block and the scan are recomputed in the backward pass instead of
    keeping their activations.
    """
    b, nc, d, q = x.shape
    n = A.shape[1]
    step = max(1, _BLOCK_ELEMENTS // max(1, b * d * n * q))
    blocks = [slice(i, min(i + step, nc)) for i in range(0, nc, step)]

    def run(fn, *args):
        return checkpoint(fn, *args, use_reentrant=False) if checkpointed else fn(*args)

    summaries = [run(_chunk_summary, delta[:, sl], x[:, sl], A, Bc[:, sl]) for sl in blocks]
    log_decay = torch.cat([r[0] for r in summaries], dim=1)  # (b, c, d, n)
    local_state = torch.cat([r[1] for r in summaries], dim=1)  # (b, c, d, n)
    del summaries
    h_out = run(_linear_scan, log_decay, local_state)  # (b, c, d, n): state leaving each chunk
    h_in = torch.cat([torch.zeros_like(h_out[:, :1]), h_out[:, :-1]], dim=1)  # state entering each chunk
    y = torch.cat([run(_chunk_outputs, delta[:, sl], x[:, sl], A, Bc[:, sl], Cc[:, sl], h_in[:, sl])
                   for sl in blocks], dim=1)  # (b, c, d, q)
    return y, h_out[:, -1].clone()  # a copy: the caller's final state does not pin h_out


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
    state, when asked, in the compute dtype). When gradients are needed the chunk computations and
    the scan over chunks are recomputed in the backward pass (activation checkpointing) instead of
    keeping their b * l * d * n * Q decay matrices alive: same gradients, bounded memory.
    """
    _check_shapes(u, delta, A, B, C, D, z, delta_bias)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    cdt = torch.float64 if u.dtype == torch.float64 else torch.float32
    b, d, l = u.shape
    n = A.shape[1]
    q = chunk_size
    nc = max(1, -(-l // q))
    pad = nc * q - l

    delta = _prepare_delta(delta, delta_bias, delta_softplus, cdt)  # (b, d, l)
    x = delta * u.to(cdt)  # (b, d, l): the Euler input delta_t * u_t
    Bc, Cc = B.to(cdt), C.to(cdt)
    if pad:
        # delta = 0 and x = 0 at the padded tail: decay 1, no input, so valid outputs and the final
        # state are unchanged.
        delta = F.pad(delta, (0, pad))
        x = F.pad(x, (0, pad))
        Bc = F.pad(Bc, (0, pad))
        Cc = F.pad(Cc, (0, pad))
    # Chunk views: (b, c, d, q) and (b, c, q, n).
    delta = delta.view(b, d, nc, q).transpose(1, 2)
    x = x.view(b, d, nc, q).transpose(1, 2)
    Bc = Bc.view(b, n, nc, q).permute(0, 2, 3, 1)
    Cc = Cc.view(b, n, nc, q).permute(0, 2, 3, 1)
    args = (delta, x, A.to(cdt), Bc, Cc)
    checkpointed = torch.is_grad_enabled() and any(t.requires_grad for t in args)
    y, h = _chunk_scan(*args, checkpointed=checkpointed)
    y = y.transpose(1, 2).reshape(b, d, nc * q)[:, :, :l]  # (b, d, l)
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
