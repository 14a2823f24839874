"""The SSD (state-space dual, Mamba-2) scan: chunked pure-PyTorch scan, references, CUDA fast path.

The scan (hieramamba-reference.md §2.1), per batch b and head h, zero initial state:

    state_t = exp(dt_t * A) * state_{t-1} + dt_t * x_t B_t^T        # (p, n)
    y_t     = state_t C_t                                          # (p,)

i.e. y_t = sum_{s <= t} (C_t . B_s) * exp(A * sum_{r=s+1..t} dt_r) * dt_s * x_s. The decay
exp(dt_t A) is one scalar per head and step, which is what makes the matmul ("dual") form exact.

Layout follows ``mamba_ssm.ops.triton.ssd_combined.mamba_chunk_scan_combined`` so its kernel is a
drop-in: x ``(b, l, h, p)``; dt ``(b, l, h)`` (already positive: softplus applied by the caller);
A ``(h,)`` (negative); B, C ``(b, l, g, n)`` shared by the h / g heads of each group; y like x.

Implementations:

- ``ssd_scan_reference``: the recurrence as a Python loop over time. Exact, slow; for tests and the
  benchmark's per-step baseline.
- ``ssd_scan_chunked``: the scan used on CPU (and on CUDA without mamba_ssm). The sequence is cut
  into chunks of Q steps (the "listing 1" structure of ``mamba_ssm/modules/ssd_minimal.py``):
    1. intra-chunk output: a (Q, Q) block-diagonal matrix per head,
       (C B^T) * exp(segsum(A dt)), applied to x * dt with one batched matmul;
    2. chunk states: the state each chunk leaves behind, B^T (decay-to-chunk-end * x * dt);
    3. state passing: the state entering chunk c is exp(chunk decay) * (state entering c - 1) +
       state_{c-1}, a recurrence over the l / Q chunks (not over time), run as one fused
       multiply-add per chunk with a hand-written reverse recurrence as its backward (the
       ``_ChunkStatePassing`` docstring says why this beats the segsum/matmul form on CPU);
    4. inter-chunk output: exp(A dt cumsum) * (C state_in).
  Any length: the sequence is padded internally to a chunk multiple with dt = 0 and x = 0 (no
  decay, no input), which leaves every earlier output unchanged; the padding is cut off again.
  Accumulation in float32 even under autocast (inputs are cast up, autocast is disabled inside,
  the result is cast back to x's dtype); float64 inputs stay float64 (tests).
  Without an autograd graph (inference) the same steps run block by block
  (``hieramamba.models.ssd_blocked``): same values, the intermediates of one block only. With a
  graph (training) a long scan (``RECOMPUTE_MIN_ELEMENTS``) keeps only its inputs and recomputes
  the rest in the backward, as mamba_ssm's kernels do, piece by piece
  (``ssd_blocked.ssd_pieces_with_recompute``). ``reverse=True``
  is the anti-causal scan (Hydra's backward direction) in the original time order.
  Heads and groups: C B^T is computed once per group and broadcast over the group's heads (no
  per-head copy of B or C). Steps 2 and 4 need B and C scaled by a per-head decay; that scaled
  (Q, n) block per head is written once (the same cost as scaling x or y instead, since n = p)
  and feeds a batched matmul directly, with all tensors in a head-major (b, h, chunk, ...) layout
  so that no matmul operand is copied.
- mamba_ssm's Triton ``mamba_chunk_scan_combined``: imported lazily, only when the tensors are on
  CUDA (``backend="mamba_ssm"``, or ``"auto"`` when the import works).

``resolve_backend(backend, device)`` says which implementation ``ssd_scan`` will run; callers such
as ``Hydra`` record it (``Hydra.backend_name``).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

BACKENDS = ("auto", "torch", "mamba_ssm")

# Chunk length of the CPU scan. Q trades the (Q x Q) intra-chunk work (~ Q per step) against the
# chunk-state tensors (n p / Q values per step); Q = 64 balances them at n = p = 64. On the 2-core
# AMD EPYC dev box (1 thread, malloc tuned, other jobs running: +-30 % noise), l = 16k, h = 12,
# p = n = 64, forward / forward+backward: Q = 32: 634 / 3052 ms, Q = 64: 766 / 2241 ms,
# Q = 128: 668 / 2541 ms -- no clear winner, so the balanced 64.
DEFAULT_CHUNK_SIZE = 64

_LOG2E = 1.4426950408889634  # log2(e)

# From this many elements of x on, a scan with an autograd graph keeps only its inputs and recomputes
# its intermediates (~5x x's size) in the backward. Below it those are a few MB and the recompute's
# fixed cost dominates: at the default DAG's training scale (d 64, B 4, L <= 384, 5 Hydra calls)
# a training step's Hydra part took 110 ms with the recompute against 90 ms without (1 thread,
# min of 5 x 20 steps), while at L = 8k (x: 6.3M elements) it frees ~570 MiB of a 2.2 GB step.
RECOMPUTE_MIN_ELEMENTS = 1 << 20


# --------------------------------------------------------------------------------------------
# backend selection
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _mamba_chunk_scan_combined():
    """mamba_ssm's Triton SSD scan, or None when mamba_ssm / triton cannot be imported."""
    from hieramamba.models.mamba_ssm_import import import_mamba_ssm_module  # noqa: PLC0415

    try:  # also from a source-only install whose package __init__ lacks its compiled extension
        return import_mamba_ssm_module("mamba_ssm.ops.triton.ssd_combined").mamba_chunk_scan_combined
    except Exception:  # noqa: BLE001 - ImportError, or triton failing to load
        return None


def mamba_ssm_available() -> bool:
    """True when a CUDA device is usable and mamba_ssm's SSD scan imports."""
    return torch.cuda.is_available() and _mamba_chunk_scan_combined() is not None


def resolve_backend(backend: str, device: torch.device | str) -> str:
    """The implementation ``ssd_scan(..., backend=backend)`` runs for tensors on ``device``.

    "torch" -> "torch"; "mamba_ssm" -> "mamba_ssm" (raises if the tensors are not on CUDA or the
    import fails); "auto" -> "mamba_ssm" on CUDA when it imports, "torch" everywhere else.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown SSD scan backend {backend!r}; expected one of {BACKENDS}")
    if backend == "torch":
        return "torch"
    on_cuda = torch.device(device).type == "cuda"
    if backend == "mamba_ssm":
        if not on_cuda:
            raise RuntimeError("backend='mamba_ssm' needs the tensors on a CUDA device")
        if _mamba_chunk_scan_combined() is None:
            raise RuntimeError(
                "backend='mamba_ssm' needs mamba_ssm (pip install 'hieramamba[cuda]'); "
                "`from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined` failed"
            )
        return "mamba_ssm"
    return "mamba_ssm" if on_cuda and _mamba_chunk_scan_combined() is not None else "torch"


# --------------------------------------------------------------------------------------------
# public entry point
# --------------------------------------------------------------------------------------------


def _check_shapes(x, dt, A, B, C) -> None:
    if x.ndim != 4:
        raise ValueError(f"x must be (b, l, h, p), got shape {tuple(x.shape)}")
    b, l, h, _ = x.shape
    if dt.shape != (b, l, h):
        raise ValueError(f"dt must be (b, l, h) = {(b, l, h)}, got {tuple(dt.shape)}")
    if A.shape != (h,):
        raise ValueError(f"A must be (h,) = {(h,)}, got {tuple(A.shape)}")
    if B.ndim != 4 or B.shape[:2] != (b, l) or B.shape != C.shape:
        raise ValueError(f"B and C must both be (b, l, g, n) with (b, l) = {(b, l)}, got {tuple(B.shape)} and {tuple(C.shape)}")
    if h % B.shape[2] != 0:
        raise ValueError(f"the number of heads ({h}) must be a multiple of the number of groups ({B.shape[2]})")


def ssd_scan(
    x: torch.Tensor,  # (b, l, h, p)
    dt: torch.Tensor,  # (b, l, h), positive
    A: torch.Tensor,  # (h,), negative
    B: torch.Tensor,  # (b, l, g, n)
    C: torch.Tensor,  # (b, l, g, n)
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    backend: str = "auto",
    reverse: bool = False,
) -> torch.Tensor:  # (b, l, h, p), x's dtype
    """The causal SSD scan y_t = sum_{s<=t} (C_t.B_s) exp(A sum_{s<r<=t} dt_r) dt_s x_s (zero state).

    ``backend``: "torch" (chunked scan of this module), "mamba_ssm" (Triton kernel, CUDA only) or
    "auto" (mamba_ssm on CUDA when it imports, torch otherwise); ``resolve_backend`` tells which.
    ``reverse``: the anti-causal scan (sum over s >= t, decay over s > r >= t), i.e. the causal scan
    of the time-flipped inputs, flipped back; inputs and output in the original time order.
    """
    _check_shapes(x, dt, A, B, C)
    if resolve_backend(backend, x.device) == "mamba_ssm":
        scan = _mamba_chunk_scan_combined()
        if reverse:
            return _time_reversed(scan, x, dt, A, B, C, chunk_size=chunk_size, D=None, z=None)
        return scan(x, dt, A, B, C, chunk_size=chunk_size, D=None, z=None)
    return ssd_scan_chunked(x, dt, A, B, C, chunk_size=chunk_size, reverse=reverse)


# --------------------------------------------------------------------------------------------
# chunked pure-PyTorch scan
# --------------------------------------------------------------------------------------------


def _accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _decay_matrix(Acs2: torch.Tensor) -> torch.Tensor:
    """(..., Q) log2-scaled running sums -> (..., Q, Q): 2 ** min(Acs2[i] - Acs2[j], 0)."""
    return (Acs2[..., :, None] - Acs2[..., None, :]).clamp_(max=0.0).exp2_()


class _DecayedScores(torch.autograd.Function):
    """scores[..., i, j] = exp(min(Acs[i] - Acs[j], 0)) * CB[i, j]: the intra-chunk (Q x Q) matrix.

    ``Acs`` (b, g, hg, c, Q) is the running sum of A dt inside each chunk, non-increasing because
    A <= 0 and dt >= 0 (``_check_signs``): for j <= i the exponent (the log decay from step j to i)
    is already <= 0, so the clamp changes nothing there; above the diagonal it would be positive
    (and could overflow), and the clamp makes it exp(0) = 1, which the lower-triangular ``CB``
    (b, g, 1, c, Q, Q), shared by the hg heads of a group, then zeroes. No inf or nan anywhere.
    Measured: clamp + finite exp is ~2x cheaper than masking with -inf before the exp; the exp is
    computed as exp2 of log2(e)-scaled exponents (see ``forward``).

    Hand-written backward (fewer full-size passes than autograd's chain sub -> clamp -> exp ->
    mul, no where/neg; measured ~3-4 % off the scan's forward+backward at l = 4k):
    d CB = sum over the group's heads of G * W, and d(exponent) = G * scores, which is already
    zero above the diagonal, so d Acs[i] = row sum - column sum of G * scores.
    """

    @staticmethod
    def forward(ctx, Acs: torch.Tensor, CB: torch.Tensor) -> torch.Tensor:
        # 2 ** (log2(e) * exponent): the same values up to float rounding, ~6x cheaper than
        # torch.exp on the x86 CPU build measured (its exp2 kernel is vectorised, exp is not);
        # the scaling touches the small (.., Q) tensor, not the (.., Q, Q) one.
        Acs2 = Acs * _LOG2E
        W = _decay_matrix(Acs2)  # (b, g, hg, c, Q, Q)
        scores = W * CB
        # W is not saved: it is recomputed in backward from the small Acs2 (one elementwise pass), which
        # frees a (b, h, l, Q) tensor per scan for the whole backward; scores is kept alive by the
        # matmul that consumes it anyway, so saving it costs nothing
        ctx.save_for_backward(Acs2, CB, scores)
        return scores

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        Acs2, CB, scores = ctx.saved_tensors
        W = _decay_matrix(Acs2)
        d_CB = (grad * W).sum(dim=2, keepdim=True) if ctx.needs_input_grad[1] else None
        d_Acs = None
        if ctx.needs_input_grad[0]:
            d_exp = grad * scores  # (b, g, hg, c, Q, Q)
            d_Acs = d_exp.sum(-1) - d_exp.sum(-2)
        return d_Acs, d_CB


def _check_signs(dt: torch.Tensor, A: torch.Tensor) -> None:
    if bool((A > 0).any()) or bool((dt < 0).any()):
        raise ValueError("the SSD scan needs A <= 0 and dt >= 0 (a decay, not a growth)")


class _ChunkStatePassing(torch.autograd.Function):
    """The state entering each chunk: S_in[0] = initial (zero when None),
    S_in[c] = exp(log_a[c-1]) S_in[c-1] + states[c-1].

    states (b, h, c, d), log_a (b, h, c), initial (b, h, d) | None -> S_in (b, h, c, d). A loop
    over *chunks* (l / Q steps, never over time), each step one fused multiply-add on a (b, h, d)
    slab that stays in cache, written in place into one output buffer; the backward is the
    reverse recurrence, again in place. Measured against the vectorised alternative (the same
    recurrence solved with block-level segsum matmuls, applied recursively over blocks of chunks,
    linear cost): at l = 16k, h = 12, p = n = 64 the loop took ~10 ms and the segsum form ~60 ms
    (forward, 1 thread), because the recurrence is memory-bound and every vectorised level makes extra
    passes over the (b, h, c, n p) states, while each loop step touches one slab once. The flat
    (c x c) segsum of ssd_minimal would be quadratic in l.
    """

    @staticmethod
    def forward(ctx, states: torch.Tensor, log_a: torch.Tensor, initial: torch.Tensor | None = None) -> torch.Tensor:
        c = states.shape[2]
        a = torch.exp(log_a)[..., None]  # (b, h, c, 1)
        out = torch.empty_like(states)
        if initial is None:
            out[:, :, 0].zero_()
        else:
            out[:, :, 0] = initial
        for i in range(1, c):
            torch.addcmul(states[:, :, i - 1], out[:, :, i - 1], a[:, :, i - 1], out=out[:, :, i])
        ctx.save_for_backward(a, out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        a, out = ctx.saved_tensors
        c = out.shape[2]
        # G_j = dL/dS_in[j] in total = grad[j] + a[j] G_{j+1}; states[j] feeds S_in[j+1] only, so
        # d states[j] = G_{j+1} (and 0 for the last chunk's own state), d a[j] = <G_{j+1}, S_in[j]>.
        d_states = torch.empty_like(out)
        d_states[:, :, c - 1].zero_()
        if c > 1:
            d_states[:, :, c - 2] = grad[:, :, c - 1]
        for j in range(c - 2, 0, -1):
            torch.addcmul(grad[:, :, j], d_states[:, :, j], a[:, :, j], out=d_states[:, :, j - 1])
        d_log_a = (d_states * out).sum(-1) * a[..., 0]  # d/d log_a = d/da * a
        d_initial = None
        if ctx.needs_input_grad[2]:  # G_0 = grad[0] + a[0] G_1, and G_1 = d_states[0]
            d_initial = torch.addcmul(grad[:, :, 0], d_states[:, :, 0], a[:, :, 0]) if c > 1 else grad[:, :, 0]
        return d_states, d_log_a, d_initial


def ssd_scan_chunked(
    x: torch.Tensor,  # (b, l, h, p)
    dt: torch.Tensor,  # (b, l, h)
    A: torch.Tensor,  # (h,)
    B: torch.Tensor,  # (b, l, g, n)
    C: torch.Tensor,  # (b, l, g, n)
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    reverse: bool = False,
) -> torch.Tensor:  # (b, l, h, p)
    """Chunked SSD scan in pure PyTorch (see the module docstring for the four steps); ``reverse``
    as in ``ssd_scan``."""
    _check_shapes(x, dt, A, B, C)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    _check_signs(dt, A)
    out_dtype = x.dtype
    acc = _accumulation_dtype(x.dtype)
    if x.shape[1] == 0:
        return x.new_zeros(x.shape)
    inputs = [t.to(acc) for t in (x, dt, A, B, C)]
    with torch.autocast(device_type=x.device.type, enabled=False):
        if torch.is_grad_enabled() and any(t.requires_grad for t in inputs):
            # Training: the backward needs the scan's intermediates (decayed B and C, scores, chunk
            # states: ~5x x's size). Like mamba_ssm's kernels, a long scan keeps only its inputs and
            # recomputes the rest in the backward, one piece of the sequence at a time (ssd_blocked).
            # Same values and gradients up to float rounding; one more scan forward per step.
            if x.numel() >= RECOMPUTE_MIN_ELEMENTS:
                from hieramamba.models.ssd_blocked import ssd_pieces_with_recompute  # noqa: PLC0415 - it imports this module

                y = ssd_pieces_with_recompute(*inputs, chunk_size, reverse=reverse)
            else:
                y = _scan_with_graph(*inputs, chunk_size, reverse)
        else:  # inference: the same steps block by block, a fraction of the memory
            from hieramamba.models.ssd_blocked import ssd_chunked_blocked  # noqa: PLC0415 - it imports this module

            y = ssd_chunked_blocked(*inputs, chunk_size, reverse=reverse)
    return y.to(out_dtype)


def _time_reversed(scan, x, dt, A, B, C, *args, **kwargs) -> torch.Tensor:
    """The anti-causal scan from a causal ``scan``: its inputs flipped in time, its output flipped back."""
    return scan(x.flip(1), dt.flip(1), A, B.flip(1), C.flip(1), *args, **kwargs).flip(1)


def _scan_with_graph(x, dt, A, B, C, Q: int, reverse: bool) -> torch.Tensor:
    """The one-pass scan (autograd through its steps); ``reverse`` by flipping in and out."""
    if reverse:
        return _time_reversed(_ssd_chunked_impl, x, dt, A, B, C, Q)
    return _ssd_chunked_impl(x, dt, A, B, C, Q)


def _chunk_geometry(x, B, Q: int) -> tuple[int, ...]:
    """Sizes of a chunked scan: b, l, h, p (x), g, n (B), hg heads per group, the chunk length
    Q (at most l), c chunks, L = c Q steps after padding."""
    b, l, h, p = x.shape
    g, n = B.shape[2], B.shape[3]
    Q = max(1, min(Q, l))
    c = -(-l // Q)
    return b, l, h, p, g, n, h // g, Q, c, c * Q


def _ssd_chunked_impl(x, dt, A, B, C, Q: int) -> torch.Tensor:
    """The one-pass chunked scan from a zero state: y (b, l, h, p), a transposed view."""
    return _ssd_chunked_from_state(x, dt, A, B, C, Q)[0]


def _ssd_chunked_from_state(x, dt, A, B, C, Q: int, initial_state: torch.Tensor | None = None):
    """The one-pass chunked scan (autograd through its steps) -> (y (b, l, h, p), final state).

    ``initial_state`` (b, h, n p), the state entering the sequence (None: zero): with one given,
    the state the sequence leaves behind is returned too ((b, h, n p), None otherwise), so that a
    long scan can run as consecutive pieces (``ssd_blocked``)."""
    b, l, h, p, g, n, hg, Q, c, L = _chunk_geometry(x, B, Q)
    pad = L - l

    # Head-major layout (b, h, ...): every batched matmul below then runs on contiguous
    # (Q x Q), (Q x p), (Q x n) blocks without copies. One transpose of x in, one of y out.
    # Padding: dt = 0 (no decay, no input) and x = B = C = 0 on the padded steps.
    dth = F.pad(dt.transpose(1, 2), (0, pad))  # (b, h, L)
    xdt = (x * dt[..., None]).transpose(1, 2)  # (b, h, l, p), strided view
    # F.pad writes a fresh contiguous tensor; without padding .contiguous() makes the one copy.
    xdt = (F.pad(xdt, (0, 0, 0, pad)) if pad else xdt.contiguous()).view(b, h, c, Q, p)
    Acs = (dth * A[:, None]).view(b, h, c, Q).cumsum(-1)  # (b, h, c, Q): log decay from the chunk start
    Bg = F.pad(B.transpose(1, 2), (0, 0, 0, pad)).contiguous().view(b, g, 1, c, Q, n)  # (b, g, 1, c, Q, n)
    Cg = F.pad(C.transpose(1, 2), (0, 0, 0, pad)).contiguous().view(b, g, 1, c, Q, n)
    Acs_g = Acs.view(b, g, hg, c, Q)

    # The steps run in the order that keeps the fewest (b, h, l, .)-sized tensors alive at once
    # (``del`` frees each as soon as it is used up; under autograd the graph keeps what it needs).

    # 1. chunk states: state_c = sum_s exp(Acs_end - Acs_s) B_s^T xdt_s. The decay is per head, so it
    #    is folded into B (one (Q, n) block per head, the same size as scaling x instead).
    B_dec = (torch.exp(Acs_g[..., -1:] - Acs_g)[..., None] * Bg).view(b, h, c, Q, n)  # (b, h, c, Q, n)
    states = torch.matmul(B_dec.transpose(-1, -2), xdt)  # (b, h, c, n, p)
    del B_dec

    # 2. state passing: the state entering each chunk.
    states = states.view(b, h, c, n * p)
    S_in = _ChunkStatePassing.apply(states, Acs[..., -1], initial_state)  # (b, h, c, n*p)
    final = None
    if initial_state is not None:  # the state after the last chunk: one more step of the recurrence
        final = torch.addcmul(states[:, :, -1], S_in[:, :, -1], torch.exp(Acs[:, :, -1, -1])[..., None])
    del states

    # 3. intra-chunk (diagonal blocks): y[t] = sum_{s <= t in chunk} (C_t . B_s) exp(Acs_t - Acs_s) xdt_s.
    #    C B^T is computed once per group (and made lower-triangular there, which also masks the
    #    decay matrix) and broadcast over the group's heads.
    CB = torch.matmul(Cg, Bg.transpose(-1, -2))  # (b, g, 1, c, Q, Q)
    CB = CB.masked_fill(torch.ones(Q, Q, dtype=torch.bool, device=CB.device).triu_(1), 0.0)
    scores = _DecayedScores.apply(Acs_g, CB)  # (b, g, hg, c, Q, Q)
    y = torch.matmul(scores.view(b, h, c, Q, Q), xdt)  # (b, h, c, Q, p)
    del scores, xdt

    # 4. inter-chunk (off-diagonal blocks): y[t] += exp(Acs_t) C_t S_in, the decay folded into C;
    #    accumulated into y by the matmul itself (in place: bmm's backward does not need its output).
    C_dec = (torch.exp(Acs_g)[..., None] * Cg).reshape(b * h * c, Q, n)  # (b h c, Q, n)
    y = y.view(b * h * c, Q, p).baddbmm_(C_dec, S_in.view(b * h * c, n, p))
    return y.view(b, h, L, p)[:, :, :l].transpose(1, 2), final  # (b, l, h, p), (b, h, n*p) | None


# --------------------------------------------------------------------------------------------
# per-step reference
# --------------------------------------------------------------------------------------------


def ssd_scan_reference(
    x: torch.Tensor,  # (b, l, h, p)
    dt: torch.Tensor,  # (b, l, h)
    A: torch.Tensor,  # (h,)
    B: torch.Tensor,  # (b, l, g, n)
    C: torch.Tensor,  # (b, l, g, n)
) -> torch.Tensor:  # (b, l, h, p), x's dtype
    """The recurrence, one Python step per time step (accumulates like ``ssd_scan_chunked``).

    Everything that does not depend on the state is computed outside the loop, so that as a
    benchmark baseline the loop pays only for the recurrence itself.
    """
    _check_shapes(x, dt, A, B, C)
    out_dtype = x.dtype
    acc = _accumulation_dtype(x.dtype)
    b, l, h, p = x.shape
    g, n = B.shape[2], B.shape[3]
    with torch.autocast(device_type=x.device.type, enabled=False):
        x, dt, A, B, C = (t.to(acc) for t in (x, dt, A, B, C))
        Bh = B.repeat_interleave(h // g, dim=2)  # (b, l, h, n) per head
        Ch = C.repeat_interleave(h // g, dim=2)  # (b, l, h, n)
        decay = torch.exp(dt * A)[..., None, None]  # (b, l, h, 1, 1)
        xdt = (x * dt[..., None])[..., None]  # (b, l, h, p, 1)
        state = x.new_zeros(b, h, p, n)
        ys = []
        for t in range(l):
            state = state * decay[:, t] + xdt[:, t] * Bh[:, t, :, None, :]  # (b, h, p, n)
            ys.append(torch.matmul(state, Ch[:, t, :, :, None]).squeeze(-1))  # (b, h, p)
        y = torch.stack(ys, dim=1) if ys else x.new_zeros(b, 0, h, p)
    return y.to(out_dtype)


def ssd_flops(b: int, l: int, h: int, p: int, g: int, n: int, chunk_size: int = DEFAULT_CHUNK_SIZE) -> float:
    """Flops of ``ssd_scan_chunked``'s matmuls (2 per multiply-add), the honest count for GFLOP/s.

    Counted: C B^T per group (2 b l Q n g), the (Q x Q) intra-chunk product (2 b l Q h p), the chunk
    states (2 b l h n p), the inter-chunk output (2 b l h n p) and the state passing (2 b (l/Q) h n p).
    Not counted: padding to a chunk multiple (wasted work), elementwise ops (exp, cumsum, masks,
    decay scaling: O(b l h (Q + n + p)), a few % of the total) and the zero upper triangle of the
    (Q x Q) blocks, which the dense matmul computes anyway (so the count includes ~Q/2 wasted
    multiply-adds per step and head). The per-step recurrence needs ``recurrence_flops`` =
    4 b l h n p for the same result; at Q = n = p this count is ~ 1.5x that.
    """
    Q = min(chunk_size, l)
    c = -(-l // Q)
    return 2.0 * b * l * Q * n * g + 2.0 * b * l * Q * h * p + 4.0 * b * l * h * n * p + 2.0 * b * c * h * n * p


def recurrence_flops(b: int, l: int, h: int, p: int, n: int) -> float:
    """Flops of the per-step recurrence: state update (2 p n) + output (2 p n) per step and head."""
    return 4.0 * b * l * h * p * n
