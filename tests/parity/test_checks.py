"""The parity harness itself: its error measure, and that it passes a faithful upstream and fails a
wrong one. The upstream here is made of plain-PyTorch stand-ins, so these run everywhere; the real
kernels are exercised by test_upstream.py where triton / mamba_ssm are there."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from hieramamba.models.selective_scan import selective_scan_reference
from hieramamba.models.ssd import ssd_scan_reference
from hieramamba.models.ssm import Hydra
from hieramamba.parity import checks
from hieramamba.parity.upstream import Upstream


def _rmsnorm(x, weight, bias, z=None, eps=1e-6, group_size=None, norm_before_gate=True):
    """mamba_ssm's ``rms_norm_ref`` semantics, written out."""
    assert bias is None and group_size is None
    h = x if norm_before_gate else x * F.silu(z)
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps) * weight
    return h * F.silu(z) if norm_before_gate else h


class _Mamba2StandIn(Hydra):
    """Mamba2's constructor over our unidirectional block; ``gate_order_wrong`` plants an error."""

    gate_order_wrong = False

    def __init__(self, d_model, d_state, d_conv, headdim, chunk_size, use_mem_eff_path):
        super().__init__(d_model, d_state=d_state, d_conv=d_conv, headdim=headdim, bidirectional=False, backend="torch")
        self.norm.norm_before_gate = self.gate_order_wrong


class _Mamba2WrongGateOrder(_Mamba2StandIn):
    gate_order_wrong = True


def _fake_upstream(chunk_scan=None, rmsnorm=None, selective_scan_ref=None, mamba2=_Mamba2StandIn) -> Upstream:
    def scan(x, dt, A, B, C, chunk_size, D=None, z=None):
        return ssd_scan_reference(x, dt, A, B, C)

    def sel(u, delta, A, B, C, D, z, delta_bias, delta_softplus):
        return selective_scan_reference(u, delta, A, B, C, D, z, delta_bias, delta_softplus).float()

    return Upstream("fake", None, "interpreter", chunk_scan or scan, rmsnorm or _rmsnorm, selective_scan_ref or sel, None,
                    mamba2)


def test_normalised_error():
    a = torch.tensor([1.0, -2.0, 4.0])
    assert checks.normalised_error(a, a) == 0.0
    assert math.isclose(checks.normalised_error(a + torch.tensor([0.0, 0.0, 0.4]), a), 0.1, rel_tol=1e-6)
    assert checks.normalised_error(a[:2], a) == math.inf
    assert checks.normalised_error(a, torch.tensor([1.0, float("nan"), 4.0])) == math.inf


def test_faithful_stand_ins_pass():
    up = _fake_upstream()
    results = [
        checks.ssd_scan_check(up, "cpu", 2, 45, 4, 8, 2, 4, chunk_size=16),
        checks.gated_rmsnorm_check(up, "cpu", 8, 32, True),
        checks.gated_rmsnorm_check(up, "cpu", 8, 32, False),
        checks.selective_scan_check(up, "cpu", 2, 6, 4, 30),
        checks.mamba2_block_check(up, "cpu", 16, 20, d_state=4, headdim=8),
    ]
    for result in results:
        assert result.passed, (result.name, result.errors)
        assert set(result.errors) >= {"out"} and any(k.startswith("d_") for k in result.errors)


def test_wrong_upstreams_fail():
    def scan_with_wrong_decay(x, dt, A, B, C, chunk_size, D=None, z=None):
        return ssd_scan_reference(x, dt, A * 1.05, B, C)

    def norm_ignoring_order(x, weight, bias, z=None, eps=1e-6, group_size=None, norm_before_gate=True):
        return _rmsnorm(x, weight, bias, z, eps, group_size, True)

    def scan_without_softplus(u, delta, A, B, C, D, z, delta_bias, delta_softplus):
        return selective_scan_reference(u, delta, A, B, C, D, z, delta_bias, False).float()

    up = _fake_upstream(scan_with_wrong_decay, norm_ignoring_order, scan_without_softplus)
    assert not checks.ssd_scan_check(up, "cpu", 1, 40, 2, 8, 1, 4, chunk_size=16).passed
    assert checks.gated_rmsnorm_check(up, "cpu", 8, 32, True).passed  # the order it does implement
    assert not checks.gated_rmsnorm_check(up, "cpu", 8, 32, False).passed
    assert not checks.selective_scan_check(up, "cpu", 2, 6, 4, 30).passed
    wrong_block = _fake_upstream(mamba2=_Mamba2WrongGateOrder)
    assert not checks.mamba2_block_check(wrong_block, "cpu", 16, 20, d_state=4, headdim=8).passed


def test_a_gradient_the_upstream_lacks_fails():
    def detached_scan(x, dt, A, B, C, chunk_size, D=None, z=None):
        return ssd_scan_reference(x, dt, A.detach(), B, C)

    result = checks.ssd_scan_check(_fake_upstream(chunk_scan=detached_scan), "cpu", 1, 20, 2, 4, 1, 4, chunk_size=8)
    assert not result.passed and result.errors["d_A"] == math.inf


def test_reduced_gradients_get_the_looser_tolerance():
    errors = {"out": 0.0, "d_x": 0.0, "d_A": 0.0, "d_param.norm.weight": 0.0}
    tols = checks.tolerances("interpreter", errors, reduced=("d_A",))
    per_element, summed = checks.TOLERANCES["interpreter"]
    assert tols == {"out": per_element, "d_x": per_element, "d_A": summed, "d_param.norm.weight": summed}
