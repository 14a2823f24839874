"""The parity checks: our pure-PyTorch kernels against mamba_ssm's, outputs and gradients.

Each check builds random inputs from a seed, runs ours and theirs on the same tensors, pulls the
same random cotangent back through both, and compares every output and input gradient by the
max-normalised error max|ours - theirs| / max|theirs|; checks of whole modules also compare every
parameter gradient. A check passes when every compared tensor is within its tolerance
(``TOLERANCES``). The upstream functions come from ``hieramamba.parity.upstream`` (CUDA kernels, or
the same Triton kernels interpreted on CPU).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch

from hieramamba.models.selective_scan import selective_scan_chunked
from hieramamba.models.ssd import ssd_scan_chunked
from hieramamba.models.ssm import GatedRMSNorm
from hieramamba.parity.upstream import Upstream

# Tolerances on the max-normalised error, float32 inputs, by upstream mode and by whether the
# tensor is a sum over batch and time (a parameter's gradient: cancellation leaves its largest entry
# small against the terms it sums, so the same rounding weighs more; measured up to 4e-6 for d_A of
# a 77-step scan, against <= 7e-7 for every per-element tensor). Interpreted Triton computes its
# dots in float32, so only the summation order differs (~1e-7); on the GPU Triton's float32 dots
# run in TF32 (10-bit mantissa). An error in the maths (a missing term, a wrong decay or sign) shows
# up as 1e-2 or more.
TOLERANCES = {"interpreter": (1e-5, 1e-4), "cuda": (1e-3, 1e-2)}  # mode -> (per element, reduced)


@dataclass
class CheckResult:
    name: str
    params: dict
    device: str
    errors: dict[str, float]  # tensor name -> max-normalised error
    tols: dict[str, float]  # tensor name -> tolerance
    seconds: float
    passed: bool = field(init=False)

    def __post_init__(self) -> None:
        self.passed = all(err <= self.tols[name] for name, err in self.errors.items())

    @property
    def worst(self) -> tuple[str, float]:
        """The tensor closest to (or furthest past) its tolerance, and its error."""
        name = max(self.errors, key=lambda k: self.errors[k] / self.tols[k])
        return name, self.errors[name]

    def as_dict(self) -> dict:
        return dict(asdict(self), worst=list(self.worst))


def normalised_error(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    """max|ours - theirs| / max|theirs| in float64; inf for a shape mismatch or a non-finite value."""
    if ours.shape != theirs.shape:
        return float("inf")
    a, b = ours.detach().double(), theirs.detach().double()
    if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
        return float("inf")
    scale = b.abs().max().item() if b.numel() else 0.0
    return (a - b).abs().max().item() / max(scale, 1e-30) if b.numel() else 0.0


def compare_with_grads(
    ours: Callable[..., torch.Tensor],
    theirs: Callable[..., torch.Tensor],
    inputs: dict[str, torch.Tensor],
    seed: int,
) -> dict[str, float]:
    """Run both on copies of ``inputs`` (floating ones require grad), back-propagate one random
    cotangent through both, and return the error of the output and of every input gradient."""
    runs = []
    for fn in (ours, theirs):
        args = {k: v.detach().clone().requires_grad_(v.is_floating_point()) for k, v in inputs.items()}
        out = fn(**args)
        runs.append((out, args))
    gen = torch.Generator().manual_seed(seed + 1)
    cotangent = torch.randn(runs[0][0].shape, generator=gen, dtype=torch.float32).to(runs[0][0].device)
    errors = {"out": normalised_error(runs[0][0], runs[1][0])}
    for out, _ in runs:
        (out.float() * cotangent).sum().backward()
    for name, value in inputs.items():
        if value.is_floating_point():
            g_ours, g_theirs = runs[0][1][name].grad, runs[1][1][name].grad
            if g_ours is None or g_theirs is None:
                errors[f"d_{name}"] = float("inf")  # one side does not differentiate this input
            else:
                errors[f"d_{name}"] = normalised_error(g_ours, g_theirs)
    return errors


def parameter_grad_errors(ours: torch.nn.Module, theirs: torch.nn.Module) -> dict[str, float]:
    """``d_param.<name>`` -> error of that parameter's gradient, matched by name (after a backward)."""
    theirs_params = dict(theirs.named_parameters())
    return {f"d_param.{name}": normalised_error(p.grad, theirs_params[name].grad) for name, p in ours.named_parameters()}


def tolerances(mode: str, errors: dict[str, float], reduced: tuple[str, ...]) -> dict[str, float]:
    """Each compared tensor's tolerance: ``reduced`` names the input gradients that are sums over
    batch and time; parameter gradients (``d_param.*``) always are."""
    per_element, summed = TOLERANCES[mode]
    return {name: summed if name in reduced or name.startswith("d_param.") else per_element for name in errors}


def _randn(gen: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=gen)


def ssd_scan_check(upstream: Upstream, device: str, b: int, l: int, h: int, p: int, g: int, n: int,
                   chunk_size: int = 64, seed: int = 0) -> CheckResult:
    """``ssd_scan_chunked`` vs ``mamba_chunk_scan_combined`` (dt already positive, no D, no z)."""
    gen = torch.Generator().manual_seed(seed)
    inputs = {
        "x": _randn(gen, b, l, h, p),
        "dt": torch.rand(b, l, h, generator=gen) * 0.2 + 1e-3,
        "A": -(torch.rand(h, generator=gen) * 2.0 + 0.1),
        "B": _randn(gen, b, l, g, n),
        "C": _randn(gen, b, l, g, n),
    }
    inputs = {k: v.to(device) for k, v in inputs.items()}
    t0 = time.perf_counter()
    errors = compare_with_grads(
        lambda **kw: ssd_scan_chunked(**kw, chunk_size=chunk_size),
        lambda **kw: upstream.chunk_scan(kw["x"], kw["dt"], kw["A"], kw["B"], kw["C"], chunk_size=chunk_size, D=None, z=None),
        inputs, seed,
    )
    params = {"b": b, "l": l, "h": h, "p": p, "g": g, "n": n, "chunk_size": chunk_size, "seed": seed}
    tols = tolerances(upstream.mode, errors, reduced=("d_A",))
    return CheckResult("ssd_scan", params, device, errors, tols, time.perf_counter() - t0)


def gated_rmsnorm_check(upstream: Upstream, device: str, rows: int, d: int, norm_before_gate: bool,
                        eps: float = 1e-5, seed: int = 0) -> CheckResult:
    """``GatedRMSNorm`` (Hydra: norm before gate; Mamba2: gate before norm) vs ``rmsnorm_fn``."""
    gen = torch.Generator().manual_seed(seed)
    inputs = {"x": _randn(gen, rows, d), "z": _randn(gen, rows, d), "weight": 1.0 + 0.1 * _randn(gen, d)}
    inputs = {k: v.to(device) for k, v in inputs.items()}

    norm = GatedRMSNorm(d, eps=eps, norm_before_gate=norm_before_gate).to(device)

    def ours(x, z, weight):  # the weight passed in, so that its gradient is compared too
        return torch.func.functional_call(norm, {"weight": weight}, (x, z))

    def theirs(x, z, weight):
        return upstream.rmsnorm(x, weight, None, z=z, eps=eps, group_size=None, norm_before_gate=norm_before_gate)

    t0 = time.perf_counter()
    errors = compare_with_grads(ours, theirs, inputs, seed)
    params = {"rows": rows, "d": d, "norm_before_gate": norm_before_gate, "eps": eps, "seed": seed}
    tols = tolerances(upstream.mode, errors, reduced=("d_weight",))
    return CheckResult("gated_rmsnorm", params, device, errors, tols, time.perf_counter() - t0)


def selective_scan_check(upstream: Upstream, device: str, b: int, d: int, n: int, l: int,
                         against: str = "ref", seed: int = 0) -> CheckResult:
    """``selective_scan_chunked`` vs mamba_ssm's ``selective_scan_ref`` or its CUDA ``selective_scan_fn``
    (D, z, delta_bias and softplus all on: every term of the signature is exercised)."""
    fn = upstream.selective_scan_ref if against == "ref" else upstream.selective_scan_fn
    if fn is None:
        raise ValueError(f"mamba_ssm's selective_scan_{against} is not available in {upstream.mode} mode")
    gen = torch.Generator().manual_seed(seed)
    inputs = {
        "u": _randn(gen, b, d, l),
        "delta": _randn(gen, b, d, l) * 0.5 - 1.0,
        "A": -(torch.rand(d, n, generator=gen) * 2.0 + 0.1),
        "B": _randn(gen, b, n, l),
        "C": _randn(gen, b, n, l),
        "D": _randn(gen, d),
        "z": _randn(gen, b, d, l),
        "delta_bias": torch.rand(d, generator=gen) * 0.5,
    }
    inputs = {k: v.to(device) for k, v in inputs.items()}

    def ours(**kw):
        return selective_scan_chunked(**kw, delta_softplus=True)

    def theirs(u, delta, A, B, C, D, z, delta_bias):
        if against == "fn":  # the kernel wants contiguous inputs and float32 A, D, delta_bias
            u, delta, B, C, z = (t.contiguous() for t in (u, delta, B, C, z))
        return fn(u, delta, A, B, C, D, z, delta_bias, True)

    t0 = time.perf_counter()
    errors = compare_with_grads(ours, theirs, inputs, seed)
    params = {"b": b, "d": d, "n": n, "l": l, "seed": seed}
    tols = tolerances(upstream.mode, errors, reduced=("d_A", "d_D", "d_delta_bias"))
    return CheckResult(f"selective_scan_vs_{against}", params, device, errors, tols, time.perf_counter() - t0)


def hydra_backend_check(device: str, d_model: int, l: int, b: int = 2, seed: int = 0) -> CheckResult:
    """A whole ``Hydra`` layer, backend "torch" vs "mamba_ssm" with the same weights (CUDA only)."""
    from hieramamba.models.ssm import Hydra

    torch.manual_seed(seed)
    ref = Hydra(d_model, backend="torch").to(device)
    fast = Hydra(d_model, backend="mamba_ssm").to(device)
    fast.load_state_dict(ref.state_dict())
    gen = torch.Generator().manual_seed(seed)
    inputs = {"u": _randn(gen, b, l, d_model).to(device)}
    t0 = time.perf_counter()
    errors = compare_with_grads(ref, fast, inputs, seed)
    errors.update(parameter_grad_errors(ref, fast))
    params = {"d_model": d_model, "l": l, "b": b, "seed": seed, "backends": [ref.backend_name, fast.backend_name]}
    tols = tolerances("cuda", errors, reduced=())
    return CheckResult("hydra_layer", params, device, errors, tols, time.perf_counter() - t0)


def mamba2_block_check(upstream: Upstream, device: str, d_model: int, l: int, b: int = 2, d_state: int = 16,
                       headdim: int = 16, seed: int = 0) -> CheckResult:
    """Our unidirectional variant (``Hydra(bidirectional=False)``, torch scan) vs mamba_ssm's ``Mamba2``
    module with the same weights. Loading our state_dict into theirs with ``strict=True`` checks the
    parameter names and shapes; then the output, the input gradient and every parameter gradient
    are compared. Theirs folds D, dt_bias and the softplus into the kernel; ours computes them outside."""
    from hieramamba.models.ssm import Hydra

    if upstream.mamba2 is None:
        raise ValueError("mamba_ssm's Mamba2 module did not import")
    torch.manual_seed(seed)
    ours = Hydra(d_model, d_state=d_state, d_conv=4, headdim=headdim, bidirectional=False, backend="torch").to(device)
    theirs = upstream.mamba2(d_model, d_state=d_state, d_conv=4, headdim=headdim, chunk_size=64,
                             use_mem_eff_path=False).to(device)
    theirs.load_state_dict(ours.state_dict(), strict=True)
    gen = torch.Generator().manual_seed(seed)
    inputs = {"u": _randn(gen, b, l, d_model).to(device)}
    t0 = time.perf_counter()
    errors = compare_with_grads(ours, theirs, inputs, seed)
    errors.update(parameter_grad_errors(ours, theirs))
    params = {"d_model": d_model, "l": l, "b": b, "d_state": d_state, "headdim": headdim, "seed": seed}
    tols = tolerances(upstream.mode, errors, reduced=())
    return CheckResult("mamba2_block", params, device, errors, tols, time.perf_counter() - t0)
