"""Hydra, the bidirectional SSM mixer of the AMP block, and its unidirectional (Mamba-2) variant.

Re-implemented in plain PyTorch from the maths of goombalab/hydra (hieramamba-reference.md §2,
§2.1); parameter names, shapes and initialisation match goombalab's ``Hydra`` so the authors'
checkpoints load by name, and the scan runs on CPU (``hieramamba.models.ssd``) as well as on CUDA
with mamba_ssm's Triton kernel.

Bidirectional (``Hydra``, the default), for one sequence u (L, d_model), d_inner = expand * d_model,
H = d_inner / headdim heads of size P = headdim, G = ngroups, N = d_state:

    z, xBC, dt = split(in_proj(u), [d_inner, d_inner + 4GN, 2H])
    xBC        = silu(depthwise_conv1d(xBC, kernel d_conv, padding d_conv // 2))   # symmetric
    x, Bf, Cf, Bb, Cb = split(xBC, [d_inner, GN, GN, GN, GN])
    dtf = softplus(dt[:, :H] + dt_bias);  dtb = softplus(dt[:, H:] + dt_bias)       # shared dt_bias
    A   = -exp(A_log)                                                              # shared A
    yf  = S(x, dtf, Bf, Cf);  yb = flip(S(flip x, flip dtb, flip Bb, flip Cb))     # S reversed
    y_t = yf_{t-1} + yb_{t+1} + (fc_D(x_t) + D) * x_t       # one-step shift each way, 0 at the ends
    out = out_proj(rmsnorm(y) * norm.weight * silu(z))      # eps 1e-5, float32, norm before gate

where S is the causal SSD scan of ``hieramamba.models.ssd``. Equivalently y = M x per head with the
quasiseparable matrix M[t, s] = (Cf[t-1].Bf[s]) exp(A sum_{s<r<t} dtf[r]) dtf[s] for s < t,
(Cb[t+1].Bb[s]) exp(A sum_{t<r<s} dtb[r]) dtb[s] for s > t, and fc_D(x_t) + D on the diagonal.

Unidirectional (``bidirectional=False``, the "mamba" global mixer of the ablations): the block of
mamba_ssm's ``Mamba2`` (what the authors' code instantiates when ``bidirectional=False``), with the
same scan code:

    z, xBC, dt = split(in_proj(u), [d_inner, d_inner + 2GN, H])
    xBC   = silu(causal depthwise_conv1d(xBC, kernel d_conv))    # padding d_conv - 1, cut to L
    x, B, C = split(xBC, [d_inner, GN, GN])
    y     = S(x, softplus(dt + dt_bias), B, C) + D * x            # no shift; D is one scalar per head
    out   = out_proj(rmsnorm(y * silu(z)) * norm.weight)          # gate before the norm, as Mamba2

Parameters ``in_proj.weight`` (2 d_inner + 2GN + H, d_model), ``conv1d.weight`` (d_inner + 2GN, 1,
d_conv), ``conv1d.bias``, ``dt_bias`` (H), ``A_log`` (H, init log U(1, 16)), ``D`` (H),
``norm.weight`` (d_inner), ``out_proj.weight``: the names and shapes of ``Mamba2``. The conv is
causal (unlike Hydra's symmetric one) so that the variant is unidirectional all the way through;
the authors' ``Mamba2`` call also uses d_conv 4 and headdim 48, which the caller passes if wanted.

Padding (``mask``, True = valid): u is zeroed at padded steps before ``in_proj`` (so the conv sees
zeros there) and dt is zeroed after the softplus (no input and no decay at padded steps), so the
values at padded positions never change any valid output, in either direction; a sequence with
appended padding gives exactly the outputs of the unpadded sequence. **The authors' Hydra leaks
padding** (hieramamba-reference.md §1.10-2): nothing inside it masks, and its backward scan and the
conv carry padded values (conv bias, dt > 0) into valid outputs. ``mask=None`` reproduces that;
the AMP block calls its mixer so under ``model.backbone.reference_padding_leak``.

Precision. The scan always accumulates in float32 (float64 stays float64). Default: the scan
output stays in float32 through the shift, the diagonal term and the gated RMSNorm; only
``out_proj`` runs in the autocast dtype. ``reference_precision=True`` reproduces the authors'
dtype round-trips instead: ``A = -exp(A_log.float())``, the scan output cast back to the
activation dtype (as the Triton kernel returns x's dtype), the shift / diagonal sums in that dtype,
and the float32 RMSNorm cast back to it. Identical in float32; they differ under bf16 autocast.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from hieramamba.models.conv_ops import depthwise_conv_channels_last
from hieramamba.models.ssd import BACKENDS, DEFAULT_CHUNK_SIZE, RECOMPUTE_MIN_ELEMENTS, resolve_backend, ssd_scan


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for half / bfloat16 / float32 activations, float64 for float64 ones."""
    return torch.promote_types(dtype, torch.float32)


class _GatedRMSNormFn(torch.autograd.Function):
    """The gated RMSNorm of ``GatedRMSNorm`` with a hand-written backward that saves only x, z and
    the per-row 1 / rms (autograd's chain would keep four (B, L, d_inner) intermediates alive until
    the backward: silu(z), the normalised rows and two products). Forward: the same operations in
    the same order as the plain formula, so the same numbers. Backward, with r = 1 / rms(h),
    n = h r w, D = d_inner:  dh = r (dn w) - r^3 / D * h * sum(dn w h),  dw = sum(dn h r),
    silu'(z) = s (1 + z (1 - s)) with s = sigmoid(z).
    """

    @staticmethod
    def forward(ctx, x, z, weight, eps: float, norm_before_gate: bool):
        acc = _compute_dtype(x.dtype)
        with torch.autocast(device_type=x.device.type, enabled=False):
            h, gate, w = x.to(acc), F.silu(z.to(acc)), weight.to(acc)
            if not norm_before_gate:
                h = h * gate
            r = torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)  # (..., 1)
            h = h * r * w
            if norm_before_gate:
                h = h * gate
        ctx.save_for_backward(x, z, weight, r)
        ctx.norm_before_gate = norm_before_gate
        return h.to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        x, z, weight, r = ctx.saved_tensors
        acc = r.dtype
        with torch.autocast(device_type=x.device.type, enabled=False):
            g, x_, z_, w = grad.to(acc), x.to(acc), z.to(acc), weight.to(acc)
            sig = torch.sigmoid(z_)
            gate = z_ * sig  # silu(z)
            if ctx.norm_before_gate:  # out = (h r w) * gate, h = x
                h = x_
                d_gate = g * (h * r * w)
                dn = g * gate
            else:  # out = h r w, h = x * gate
                h = x_ * gate
                dn = g
            dnw = dn * w
            dh = r * dnw - (r.pow(3) / h.shape[-1]) * h * (dnw * h).sum(-1, keepdim=True)
            if ctx.norm_before_gate:
                dx = dh
            else:
                dx, d_gate = dh * gate, dh * x_
            dz = d_gate * sig * (1 + z_ * (1 - sig))
            dw = (dn * h * r).reshape(-1, h.shape[-1]).sum(0) if ctx.needs_input_grad[2] else None
        return dx.to(x.dtype), dz.to(z.dtype), None if dw is None else dw.to(weight.dtype), None, None


class GatedRMSNorm(nn.Module):
    """RMSNorm over the last axis with a SiLU gate, computed in float32 (mamba_ssm ``RMSNormGated``).

    norm_before_gate=True (Hydra):  x * rsqrt(mean(x^2) + eps) * weight * silu(z)
    norm_before_gate=False (Mamba2): h = x * silu(z); h * rsqrt(mean(h^2) + eps) * weight
    The result has x's dtype (float32 math in between, float64 kept for float64 inputs). The
    backward is ``_GatedRMSNormFn``'s (less memory held for it, same values).
    """

    def __init__(self, hidden_size: int, eps: float = 1e-5, norm_before_gate: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))  # (d_inner,)
        self.eps = eps
        self.norm_before_gate = norm_before_gate

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:  # (..., d), (..., d) -> (..., d)
        return _GatedRMSNormFn.apply(x, z, self.weight, self.eps, self.norm_before_gate)

    def extra_repr(self) -> str:
        return f"{self.weight.numel()}, eps={self.eps}, norm_before_gate={self.norm_before_gate}"


class Hydra(nn.Module):
    """Hydra bidirectional SSM mixer (or its Mamba-2 unidirectional variant); see the module docstring.

    forward(u (B, L, d_model), mask (B, L) bool | None) -> (B, L, d_model). ``backend`` selects the
    scan ("auto" | "torch" | "mamba_ssm"); ``backend_name`` says which one the last forward ran.
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 64,
        d_conv: int = 7,
        expand: int = 2,
        headdim: int = 64,
        ngroups: int = 1,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        backend: str = "auto",
        bidirectional: bool = True,
        reference_precision: bool = False,
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init_floor: float = 1e-4,
    ):
        super().__init__()
        if backend not in BACKENDS:
            raise ValueError(f"unknown SSD scan backend {backend!r}; expected one of {BACKENDS}")
        d_inner = expand * d_model
        if d_inner % headdim != 0:
            raise ValueError(f"expand * d_model = {d_inner} must be a multiple of headdim = {headdim}")
        nheads = d_inner // headdim
        if nheads % ngroups != 0:
            raise ValueError(f"the number of heads ({nheads}) must be a multiple of ngroups ({ngroups})")
        if bidirectional and d_conv % 2 != 1:
            raise ValueError(f"Hydra's symmetric conv needs an odd d_conv, got {d_conv}")
        self.d_model, self.d_state, self.d_conv, self.expand = d_model, d_state, d_conv, expand
        self.d_inner, self.headdim, self.nheads, self.ngroups = d_inner, headdim, nheads, ngroups
        self.chunk_size = chunk_size
        self.backend = backend
        self.bidirectional = bidirectional
        self.reference_precision = reference_precision
        self._last_backend: str | None = None

        # Parameters are created in the reference order so that one seed gives the same init.
        n_dirs = 2 if bidirectional else 1
        gn = ngroups * d_state
        # in_proj output order: [z | x, (B, C) per direction | dt per direction]
        self.in_proj = nn.Linear(d_model, 2 * d_inner + n_dirs * 2 * gn + n_dirs * nheads, bias=False)
        conv_dim = d_inner + n_dirs * 2 * gn
        self.conv1d = nn.Conv1d(
            conv_dim,
            conv_dim,
            kernel_size=d_conv,
            groups=conv_dim,
            padding=d_conv // 2 if bidirectional else d_conv - 1,
            bias=True,
        )
        # dt_bias: inverse softplus of dt ~ exp(U(log dt_min, log dt_max)), clamped >= dt_init_floor
        dt = torch.exp(torch.rand(nheads) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = torch.clamp(dt, min=dt_init_floor)
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))  # (H,)
        self.dt_bias._no_weight_decay = True
        if bidirectional:
            A = torch.ones(nheads)  # Hydra: A = -1 at init
        else:
            A = torch.empty(nheads).uniform_(1.0, 16.0)  # Mamba2: A_init_range (1, 16)
        self.A_log = nn.Parameter(torch.log(A))  # (H,)
        self.A_log._no_weight_decay = True
        self.D = nn.Parameter(torch.ones(nheads))  # (H,)
        self.D._no_weight_decay = True
        if bidirectional:
            self.fc_D = nn.Linear(d_inner, nheads, bias=False)  # input-dependent diagonal
        self.norm = GatedRMSNorm(d_inner, eps=1e-5, norm_before_gate=bidirectional)
        self.out_proj = nn.Linear(d_inner, d_model, bias=False)

    # ----------------------------------------------------------------------------------------

    @property
    def backend_name(self) -> str:
        """The scan the last forward ran ("torch" or "mamba_ssm"); before any forward, the one
        ``backend`` resolves to on the parameters' device."""
        if self._last_backend is not None:
            return self._last_backend
        return resolve_backend(self.backend, self.A_log.device)

    def extra_repr(self) -> str:
        try:
            selected = self.backend_name
        except RuntimeError as err:  # e.g. backend="mamba_ssm" on a CPU module
            selected = f"unavailable: {err}"
        return (
            f"d_model={self.d_model}, d_state={self.d_state}, d_conv={self.d_conv}, expand={self.expand}, "
            f"headdim={self.headdim}, nheads={self.nheads}, ngroups={self.ngroups}, "
            f"chunk_size={self.chunk_size}, bidirectional={self.bidirectional}, "
            f"reference_precision={self.reference_precision}, backend={self.backend} -> {selected}"
        )

    # ----------------------------------------------------------------------------------------

    def _A(self) -> torch.Tensor:  # (H,)
        if self.reference_precision:
            return -torch.exp(self.A_log.float())  # the authors' float32 round trip
        return -torch.exp(self.A_log)

    def _scan(self, x, dt, A, B, C, reverse: bool = False):
        """ssd_scan with the backend recorded; x (b, l, h, p), dt (b, l, h), B/C (b, l, g, n)."""
        name = resolve_backend(self.backend, x.device)
        self._last_backend = name
        return ssd_scan(x, dt, A, B, C, chunk_size=self.chunk_size, backend=name, reverse=reverse)

    def _conv_silu(self, xBC: torch.Tensor) -> torch.Tensor:
        """silu(depthwise conv(xBC)): (B, L, conv_dim) -> (B, L, conv_dim), channels-last; causal:
        the conv's tail cut. Without a graph the silu runs in place on the conv's output."""
        conv = depthwise_conv_channels_last(xBC, self.conv1d)[:, :xBC.shape[1]]
        return F.silu(conv, inplace=not conv.requires_grad)

    def mixer_inputs(self, u: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Everything before the scans (for ``forward`` and for tests that build the matrix M).

        Bidirectional: z (B, L, d_inner); x (B, L, H, P); Bf, Cf, Bb, Cb (B, L, G, N);
        dtf, dtb (B, L, H) after softplus and masking (compute dtype); A (H,); Dt (B, L, H).
        Unidirectional: z, x, B, C, dt, A, D.
        """
        batch, seqlen, _ = u.shape
        if mask is not None:
            if mask.shape != (batch, seqlen):
                raise ValueError(f"mask must be (B, L) = {(batch, seqlen)}, got {tuple(mask.shape)}")
            mask = mask.to(torch.bool)
            u = u.masked_fill(~mask[..., None], 0.0)  # padded steps: zero input to in_proj and conv
        H, G, N, gn = self.nheads, self.ngroups, self.d_state, self.ngroups * self.d_state
        n_dirs = 2 if self.bidirectional else 1
        # in_proj as three GEMMs on the row blocks of its weight, [z | xBC | dt] (the same products):
        # each part is then its own contiguous tensor, so the depthwise conv reads xBC in place
        # instead of copying a column slice of one (B, L, d_in_proj) output, and in training no
        # saved slice keeps that whole output alive
        W_z, W_xBC, W_dt = torch.split(self.in_proj.weight, [self.d_inner, self.d_inner + n_dirs * 2 * gn, n_dirs * H])
        z, xBC, dt = F.linear(u, W_z), F.linear(u, W_xBC), F.linear(u, W_dt)  # (B, L, d_inner), (B, L, conv_dim), (B, L, n_dirs H)
        if xBC.requires_grad and xBC.numel() >= RECOMPUTE_MIN_ELEMENTS:
            # training, long sequence: keep xBC (which the conv's weight gradient needs anyway), not
            # the conv output silu's backward would keep; both are recomputed in the backward
            xBC = checkpoint(self._conv_silu, xBC, use_reentrant=False, preserve_rng_state=False)
        else:
            xBC = self._conv_silu(xBC)  # (B, L, conv_dim)
        acc = _compute_dtype(dt.dtype)
        # softplus in float32, with the one dt_bias shared by both directions
        dt = F.softplus(dt.to(acc).view(batch, seqlen, n_dirs, H) + self.dt_bias.to(acc))  # (B, L, n_dirs, H)
        if mask is not None:
            dt = dt.masked_fill(~mask[..., None, None], 0.0)  # padded steps: no input, no decay
        parts = torch.split(xBC, [self.d_inner] + [gn] * (2 * n_dirs), dim=-1)
        x = parts[0].reshape(batch, seqlen, H, self.headdim)  # (B, L, H, P)
        bc = [t.reshape(batch, seqlen, G, N) for t in parts[1:]]  # each (B, L, G, N)
        if not self.bidirectional:
            return dict(z=z, x=x, B=bc[0], C=bc[1], dt=dt[:, :, 0], A=self._A(), D=self.D)
        Dt = F.linear(parts[0], self.fc_D.weight, self.D)  # (B, L, H) input-dependent diagonal
        return dict(
            z=z, x=x, Bf=bc[0], Cf=bc[1], Bb=bc[2], Cb=bc[3], dtf=dt[:, :, 0], dtb=dt[:, :, 1], A=self._A(), Dt=Dt
        )

    def mix(self, p: dict[str, torch.Tensor]) -> torch.Tensor:
        """The SSM part: scans (+ shift) + diagonal term -> y (B, L, d_inner), before the gated norm."""
        x = p["x"]  # (B, L, H, P)
        batch, seqlen = x.shape[:2]
        # Default: the scan output stays in float32; reference_precision: back in x's dtype.
        x_scan = x if self.reference_precision else x.to(_compute_dtype(x.dtype))
        if not self.bidirectional:
            y = self._scan(x_scan, p["dt"], p["A"], p["B"], p["C"])  # (B, L, H, P)
            y = y + p["D"].to(y.dtype)[:, None] * x.to(y.dtype)
            return y.reshape(batch, seqlen, self.d_inner)

        # The backward direction is the anti-causal scan (``reverse``), in the original time order:
        # the authors flip its inputs and output; the scan does it without full-length copies.
        yf = self._scan(x_scan, p["dtf"], p["A"], p["Bf"], p["Cf"])  # (B, L, H, P)
        yb = self._scan(x_scan, p["dtb"], p["A"], p["Bb"], p["Cb"], reverse=True)  # (B, L, H, P)
        # y_t = yf_{t-1} + yb_{t+1} + Dt_t x_t: the forward scan shifted one step later, the backward
        # one step earlier
        out = p["Dt"].to(yf.dtype)[..., None] * x.to(yf.dtype)  # (B, L, H, P)
        out[:, 1:] += yf[:, :-1]
        out[:, :-1] += yb[:, 1:]
        return out.view(batch, seqlen, self.d_inner)

    def output(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Gated RMSNorm and out_proj: y, z (B, L, d_inner) -> (B, L, d_model)."""
        h = self.norm(y, z)  # (B, L, d_inner), y's dtype
        if not torch.is_autocast_enabled(h.device.type):
            h = h.to(self.out_proj.weight.dtype)  # e.g. a float32 y in a bfloat16 module
        return self.out_proj(h)

    def forward(self, u: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """u (B, L, d_model), mask (B, L) bool (True = valid) or None -> (B, L, d_model)."""
        p = self.mixer_inputs(u, mask)
        return self.output(self.mix(p), p["z"])
