"""Mamba-1 selective scan (S6): chunked pure-PyTorch scan, per-step reference, CUDA fast path.

The recurrence (seed-backbones.md §1.2), per batch b, channel d and state n, zero initial state:

    h_t[d, n] = exp(delta_t[d] * A[d, n]) * h_{t-1}[d, n] + delta_t[d] * B_t[n] * u_t[d]
    y_t[d]    = sum_n C_t[n] * h_t[d, n] + D[d] * u_t[d]
    out_t[d]  = y_t[d] * silu(z_t[d])                       (when z is given)

with delta = softplus(delta + delta_bias) when ``delta_softplus``. A is per channel and per state
(shape (d, n)), so the decay differs along n and the SSD (Mamba-2) matmul form with a scalar decay
per head does not apply; the chunked form below keeps the n axis in its decay matrices.

Layout follows ``mamba_ssm.ops.selective_scan_interface.selective_scan_fn`` so that the CUDA kernel
is a drop-in: u, delta, z ``(b, d, l)``; A ``(d, n)``; B, C ``(b, n, l)`` (input-dependent, shared by
all d channels); D, delta_bias ``(d,)``; out ``(b, d, l)``.

Three implementations:

- ``selective_scan_reference``: the recurrence as a loop over time in float64. Slow; for tests.
- ``selective_scan_chunked``: the pure-PyTorch scan used on CPU. The sequence is cut into chunks
  of Q steps. Inside a chunk, the decay between steps s <= t is exp(cum_t - cum_s) per (d, n),
  with cum the chunk-local cumulative sum of delta * A in log space: a Q x Q segment sum. The
  state entering each chunk is passed from chunk to chunk (a loop over L/Q chunks, never over
  time). Accumulates in float32 (float64 stays float64). The decay matrices take
  b * l * d * n * Q elements, so Q is kept small and they are recomputed in the backward pass.
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


def _chunk_scan(delta: torch.Tensor, x: torch.Tensor, A: torch.Tensor, Bc: torch.Tensor, Cc: torch.Tensor):
    """The chunked recurrence on chunk views; returns y (b, c, d, q) and the final state (b, d, n).

    delta, x (b, c, d, q); A (d, n); Bc, Cc (b, c, q, n). Inside a chunk, with
    cum_t = sum_{k<=t} delta_k A (log decay from the chunk start, per (d, n)):

        w_t   = sum_{s<=t} exp(cum_t - cum_s) B_s x_s        state built from the chunk's own inputs
        h_t   = w_t + exp(cum_t) h_in                        h_in: state entering the chunk
        y_t   = sum_n C_t[n] h_t[n]

    The Q x Q decay matrix exp(cum_t - cum_s) (s <= t, else 0) is the only tensor with a Q factor.
    Chunk-local cumulative sums keep cum_t - cum_s accurate in float32 (as in the Mamba-2 chunk
    kernels). States pass from chunk to chunk in a loop over chunks (never over time).
    """
    b, nc, d, q = x.shape
    dA = delta[:, :, :, None, :] * A[None, None, :, :, None]  # (b, c, d, n, q), <= 0
    cum = torch.cumsum(dA, dim=-1)  # (b, c, d, n, q)
    causal = torch.ones(q, q, dtype=torch.bool, device=x.device).tril()  # [t, s]: s <= t
    diff = cum[..., :, None] - cum[..., None, :]  # (b, c, d, n, t, s)
    decay = torch.exp(torch.where(causal, diff, torch.full_like(diff, float("-inf"))))
    v = Bc.transpose(2, 3)[:, :, None, :, :] * x[:, :, :, None, :]  # (b, c, d, n, s): B_s[n] x_s[d]
    w = (decay @ v[..., None])[..., 0]  # (b, c, d, n, t)
    chunk_decay = torch.exp(cum[..., -1])  # (b, c, d, n)
    local_state = w[..., -1]  # (b, c, d, n)
    h = x.new_zeros(b, d, A.shape[1])
    entering = []
    for c in range(nc):
        entering.append(h)
        h = chunk_decay[:, c] * h + local_state[:, c]
    h_in = torch.stack(entering, dim=1)  # (b, c, d, n)
    states = w + torch.exp(cum) * h_in[..., None]  # (b, c, d, n, t)
    y = torch.einsum("bcdnt,bctn->bcdt", states, Cc)  # (b, c, d, q)
    return y, h


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
    chunk_size: int = 4,
):
    """Chunked pure-PyTorch selective scan (same arguments and semantics as the reference).

    Computes in float32 (float64 inputs stay float64) and returns ``out`` in u's dtype (the final
    state, when asked, in the compute dtype). When gradients are needed the chunk computation is
    recomputed in the backward pass (activation checkpointing) instead of keeping its
    b * l * d * n * Q decay matrices alive: same gradients, memory of the per-step reference.
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
    if torch.is_grad_enabled() and any(t.requires_grad for t in args):
        y, h = checkpoint(_chunk_scan, *args, use_reentrant=False)
    else:
        y, h = _chunk_scan(*args)
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
    chunk_size: int = 4,
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
