"""Optimiser decay groups, warm-up schedule, EMA maths, atomic checkpoints and RNG round trips."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
from torch import nn

from hieramamba.engine.checkpoint import capture_rng, load_checkpoint, restore_rng, save_checkpoint
from hieramamba.engine.ema import ModelEMA
from hieramamba.engine.optim import anneal_factor, build_optimizer, build_scheduler, split_decay, warmup_factor


class FakeHydra(nn.Module):
    def __init__(self):
        super().__init__()
        self.in_proj = nn.Linear(4, 8, bias=False)
        self.conv1d = nn.Conv1d(8, 8, 3, groups=8)
        self.dt_bias = nn.Parameter(torch.zeros(2))
        self.A_log = nn.Parameter(torch.zeros(2))
        self.D = nn.Parameter(torch.ones(2))
        self.norm = nn.LayerNorm(8)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.ssm = FakeHydra()
        self.head = nn.Linear(8, 1)
        self.scale = nn.Parameter(torch.ones(1))
        self.bg_token = nn.Parameter(torch.zeros(1, 8))
        self.frozen = nn.Parameter(torch.ones(1), requires_grad=False)


def test_decay_rules():
    _, _, table = split_decay([Net()])
    decays = {k.split(".", 1)[1] for k, v in table.items() if v}
    no_decay = {k.split(".", 1)[1] for k, v in table.items() if not v}
    assert decays == {"ssm.in_proj.weight", "ssm.conv1d.weight", "ssm.A_log", "ssm.D", "head.weight"}
    assert no_decay == {"ssm.conv1d.bias", "ssm.dt_bias", "ssm.norm.weight", "ssm.norm.bias", "head.bias", "scale", "bg_token"}


def test_optimizer_groups_cover_every_trainable_parameter_once():
    net, proj = Net(), nn.Sequential(nn.Linear(8, 8, bias=False), nn.LayerNorm(8))
    opt = build_optimizer([net, proj], lr=1e-3, weight_decay=0.05)
    ids = [id(p) for g in opt.param_groups for p in g["params"]]
    trainable = [p for m in (net, proj) for p in m.parameters() if p.requires_grad]
    assert len(ids) == len(set(ids)) == len(trainable)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.05, 0.0]
    assert opt.defaults["betas"] == (0.9, 0.999)


def test_warmup_is_linear_from_zero_then_constant():
    assert [warmup_factor(i, 5) for i in range(7)] == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert warmup_factor(0, 0) == 1.0
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=2.0)
    sched = build_scheduler(opt, 3)
    lrs = []
    for _ in range(4):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == [0.0, 1.0, 2.0, 2.0]


def test_anneal_is_a_half_cosine_to_zero_over_the_final_iterations():
    # 10 iterations, the last 4 annealed: 1 until iteration 6, then 0.5 (1 + cos(pi k / 4)), k = 0..3
    expected = [1.0] * 6 + [0.5 * (1 + math.cos(math.pi * k / 4)) for k in range(4)]
    assert [anneal_factor(i, 10, 4) for i in range(10)] == pytest.approx(expected)
    assert anneal_factor(9, 10, 4) == pytest.approx(0.5 * (1 - math.sqrt(0.5)))  # small, not yet 0
    assert anneal_factor(10, 10, 4) == pytest.approx(0.0)  # past the end (never stepped)
    assert [anneal_factor(i, 10, 0) for i in range(12)] == [1.0] * 12  # off: the authors' constant lr
    # warm-up 2, constant, anneal 3 of 8 iterations: the two multiply
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=2.0)
    sched = build_scheduler(opt, 2, 8, 3)
    lrs = []
    for _ in range(8):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.0, 2.0, 2.0, 2.0, 2.0, 2.0, 1.5, 0.5])
    with pytest.raises(ValueError, match="anneal"):
        build_scheduler(opt, 5, 8, 4)  # 4 annealed iterations do not fit after 5 of warm-up


def test_ema_update_maths():
    model = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema = ModelEMA(model, beta=0.9)
    with torch.no_grad():
        model.weight.fill_(2.0)
    ema.update(model)
    assert torch.allclose(ema.module.weight, torch.full((1, 2), 1.1))
    assert not ema.module.weight.requires_grad
    with pytest.raises(ValueError):
        ModelEMA(model, beta=1.0)


def test_checkpoint_round_trip_with_weights_only(tmp_path):
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    net = Net()
    opt = build_optimizer([net], 1e-3, 0.05)
    net.head(torch.randn(3, 8)).sum().backward()
    opt.step()
    state = {"model": net.state_dict(), "optimizer": opt.state_dict(), "rng": capture_rng(), "epoch": 3,
             "loss_norm": {"value": 12.5, "momentum": 0.9}, "config_yaml": "a: 1\n"}
    path = tmp_path / "ck" / "last.pth"
    save_checkpoint(path, state)
    assert path.is_file() and [p.name for p in path.parent.iterdir()] == ["last.pth"]  # no temp left
    expect = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(99), np.random.seed(99), random.seed(99)
    back = load_checkpoint(path)
    restore_rng(back["rng"])
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expect[0], got[0]) and np.array_equal(expect[1], got[1]) and expect[2] == got[2]
    net2 = Net()
    net2.load_state_dict(back["model"])
    opt2 = build_optimizer([net2], 1e-3, 0.05)
    opt2.load_state_dict(back["optimizer"])
    assert back["epoch"] == 3 and back["config_yaml"] == "a: 1\n"
    for a, b in zip(net.parameters(), net2.parameters()):
        assert torch.equal(a, b)


class Evil:
    """Not on the weights_only allow-list."""


def test_checkpoint_refuses_arbitrary_objects(tmp_path):
    path = tmp_path / "x.pth"
    torch.save({"obj": Evil()}, path)
    with pytest.raises(Exception):
        load_checkpoint(path)
