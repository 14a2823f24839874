"""Vim's bidirectional Mamba-1 mixer ("bimamba v2") and its pre-norm residual stack.

Both seed backbones (MS-Temba, VideoMamba) use this mixer (seed-backbones.md §1). One mixer has a
shared input projection (giving x and the gate z), two direction-specific branches (causal
depthwise conv, x_proj -> (dt, B, C), dt_proj, A_log, D) and a shared output projection:

    [x ; z] = u W_in                                              u (L, D), x, z (L, E), E = expand*D
    S(v)    = selective_scan(silu(conv(v)), dt, A = -exp(A_log), B, C, D)      (Mamba-1, §1.2)
    y       = (S_f(x) + rev(S_b(rev(x)))) * silu(z)               (``combine="sum"``: VideoMamba)
    y       = 0.5 * (S_f(x) + rev(S_b(rev(x)))) * silu(z)         (``combine="mean"``: Vim / MS-Temba)
    out     = y W_out

Difference from the public code: in the Vim / VideoMamba / MS-Temba forks the non-fused path of
``Mamba.forward`` (taken without the CUDA kernels) computes only the forward direction and silently
ignores the ``_b`` parameters. Here both directions always run: the chunked pure-PyTorch selective
scan on CPU (``hieramamba.models.selective_scan``), mamba_ssm's kernel on CUDA when installed.

Padding (§4.2): with a mask, (1) the mixer input is zeroed at padded steps (``in_proj`` has no bias,
so x = z = 0 there and the backward conv's look-ahead reads zeros) and (2) silu(conv(x)) is zeroed
at padded steps before each scan, so the backward scan's state stays exactly 0 through the padded
prefix of the reversed sequence. Valid outputs then equal those of the unpadded sequence.

Parameter names mirror the forks (``in_proj``, ``conv1d``, ``x_proj``, ``dt_proj``, ``A_log``, ``D``,
``conv1d_b``, ``x_proj_b``, ``dt_proj_b``, ``A_b_log``, ``D_b``, ``out_proj``).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from hieramamba.models.norms import RMSNorm, drop_path
from hieramamba.models.selective_scan import BACKENDS, resolve_backend, selective_scan

COMBINE = ("sum", "mean")


class BiMambaMixer(nn.Module):
    """Bidirectional Mamba-1 mixer. ``forward(u (B, L, D), mask (B, L) bool | None) -> (B, L, D)``.

    Constructor init is Mamba's / Vim's (§1.3): forward ``dt_proj`` weight U(+-dt_rank^-1/2) and
    bias softplus^-1(dt), dt log-uniform in [dt_min, dt_max]; backward ``dt_proj_b`` keeps PyTorch's
    default Linear init; A_log = log(1..N) and D = 1 in both directions. The backbones apply their
    own model-level init on top (see ``videomamba.py`` / ``mstemba.py``).
    """

    def __init__(self, d_model: int, d_state: int = 16, d_conv: int = 4, expand: int = 2,
                 dt_rank: int | str = "auto", dt_min: float = 1e-3, dt_max: float = 1e-1,
                 dt_init_floor: float = 1e-4, combine: str = "sum", chunk_size: int = 8,
                 backend: str = "auto"):
        super().__init__()
        if combine not in COMBINE:
            raise ValueError(f"combine must be one of {COMBINE}, got {combine!r}")
        if backend not in BACKENDS:
            raise ValueError(f"unknown selective-scan backend {backend!r}; expected one of {BACKENDS}")
        self.d_model = d_model
        self.d_state = d_state
        self.d_conv = d_conv
        self.d_inner = expand * d_model
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        self.combine = combine
        self.chunk_size = chunk_size
        self.backend = backend
        e, n, r = self.d_inner, d_state, self.dt_rank

        self.in_proj = nn.Linear(d_model, 2 * e, bias=False)
        self.out_proj = nn.Linear(e, d_model, bias=False)
        # Direction-specific parameters: forward (no suffix) and backward ("_b").
        self.conv1d = nn.Conv1d(e, e, d_conv, groups=e, padding=d_conv - 1, bias=True)
        self.conv1d_b = nn.Conv1d(e, e, d_conv, groups=e, padding=d_conv - 1, bias=True)
        self.x_proj = nn.Linear(e, r + 2 * n, bias=False)
        self.x_proj_b = nn.Linear(e, r + 2 * n, bias=False)
        self.dt_proj = nn.Linear(r, e, bias=True)
        self.dt_proj_b = nn.Linear(r, e, bias=True)
        a_log = torch.log(torch.arange(1, n + 1, dtype=torch.float32)).repeat(e, 1)  # (E, N)
        self.A_log = nn.Parameter(a_log.clone())
        self.A_b_log = nn.Parameter(a_log.clone())
        self.D = nn.Parameter(torch.ones(e))
        self.D_b = nn.Parameter(torch.ones(e))
        for p in (self.A_log, self.A_b_log, self.D, self.D_b):
            p._no_weight_decay = True

        # Mamba's dt init, forward branch only (as in the forks).
        std = r ** -0.5
        nn.init.uniform_(self.dt_proj.weight, -std, std)
        dt = torch.exp(torch.rand(e) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=dt_init_floor)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # softplus^-1(dt)
        self.dt_proj.bias._no_reinit = True

    @property
    def backend_name(self) -> str:
        """Which scan runs for this module's parameters' device ("torch" or "mamba_ssm")."""
        return resolve_backend(self.backend, self.in_proj.weight.device)

    def direction_params(self, backward: bool) -> tuple[nn.Conv1d, nn.Linear, nn.Linear, nn.Parameter, nn.Parameter]:
        """(conv, x_proj, dt_proj, A_log, D) of one direction."""
        if backward:
            return self.conv1d_b, self.x_proj_b, self.dt_proj_b, self.A_b_log, self.D_b
        return self.conv1d, self.x_proj, self.dt_proj, self.A_log, self.D

    def scan_direction(self, x: torch.Tensor, z: torch.Tensor, mask: Optional[torch.Tensor],
                       backward: bool) -> torch.Tensor:
        """One branch on a sequence already in its scan order: S(x) * silu(z), all ``(B, E, L)``.

        ``mask`` (B, 1, L) float (or None) in the same order; the caller reverses for the backward
        branch.
        """
        conv, x_proj, dt_proj, a_log, d_skip = self.direction_params(backward)
        length = x.shape[-1]
        xc = F.silu(conv(x)[..., :length])  # (B, E, L): causal depthwise conv
        if mask is not None:
            xc = xc * mask  # recipe step 2: no input reaches the state at padded steps
        x_dbl = x_proj(xc.transpose(1, 2))  # (B, L, R + 2N)
        dt, b_seq, c_seq = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = (dt @ dt_proj.weight.t()).transpose(1, 2)  # (B, E, L); bias added inside the scan
        # SSM parameters in float32 (the forks keep A_log and D in fp32); float64 stays float64.
        pdt = torch.float64 if xc.dtype == torch.float64 else torch.float32
        a = -torch.exp(a_log.to(pdt))  # (E, N)
        return selective_scan(
            xc, delta, a, b_seq.transpose(1, 2).contiguous(), c_seq.transpose(1, 2).contiguous(),
            D=d_skip.to(pdt), z=z, delta_bias=dt_proj.bias.to(pdt), delta_softplus=True,
            chunk_size=self.chunk_size, backend=self.backend,
        )

    def forward(self, u: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        # u (B, L, D), mask (B, L) bool -> (B, L, D)
        mask_f = None
        if mask is not None:
            mask_f = mask[:, None, :].to(u.dtype)  # (B, 1, L)
            u = u * mask_f.transpose(1, 2)  # recipe step 1
        xz = self.in_proj(u).transpose(1, 2)  # (B, 2E, L)
        x, z = xz.chunk(2, dim=1)  # (B, E, L) each
        y_f = self.scan_direction(x, z, mask_f, backward=False)
        rev_mask = None if mask_f is None else mask_f.flip(-1)
        y_b = self.scan_direction(x.flip(-1), z.flip(-1), rev_mask, backward=True).flip(-1)
        y = y_f + y_b
        if self.combine == "mean":
            y = 0.5 * y
        return self.out_proj(y.transpose(1, 2))  # (B, L, D)


def drop_path_rates(depth: int, rate: float) -> list[float]:
    """Drop probability of each mixer output in a Vim stack of ``depth`` blocks (§1.4).

    linspace(0, rate, depth), except that the last mixer output always goes through the final
    add, which uses the full ``rate`` (this only matters for depth 1, where linspace gives 0).
    """
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    rates = torch.linspace(0, rate, depth).tolist()
    rates[-1] = float(rate)
    return rates


class VimStack(nn.Module):
    """``depth`` pre-RMSNorm bidirectional Mamba blocks with a float32 residual stream and a final
    RMSNorm (Vim's residual block, §1.4). ``forward(x (B, L, D), mask (B, L) | None) -> (B, L, D)``.

    r_0 = x;  r_{j+1} = r_j + DropPath_{p_j}(Mixer_j(RMSNorm_j(r_j)));  out = RMSNorm_f(r_depth).
    This equals the forks' fused "add -> norm -> mixer" ordering. The residual stream r is kept in
    float32 (float64 stays float64) whatever the activation dtype (``residual_in_fp32``). Outputs
    at padded steps are set to zero.
    """

    def __init__(self, d_model: int, depth: int, drop_path_rate: float = 0.0, norm_eps: float = 1e-5,
                 **mixer_kwargs):
        super().__init__()
        self.norms = nn.ModuleList(RMSNorm(d_model, eps=norm_eps) for _ in range(depth))
        self.mixers = nn.ModuleList(BiMambaMixer(d_model, **mixer_kwargs) for _ in range(depth))
        self.norm_f = RMSNorm(d_model, eps=norm_eps)
        self.drop_rates = drop_path_rates(depth, drop_path_rate)

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        res_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        r = x.to(res_dtype)  # (B, L, D) residual stream
        for norm, mixer, p in zip(self.norms, self.mixers, self.drop_rates):
            h = mixer(norm(r), mask)
            r = r + drop_path(h, p, self.training).to(res_dtype)
        out = self.norm_f(r).to(x.dtype)
        if mask is not None:
            out = out * mask[..., None].to(out.dtype)
        return out
