"""Exponential moving average of the model parameters; evaluation runs on the EMA copy."""

from __future__ import annotations

import copy

import torch
from torch import nn


class ModelEMA:
    """ema <- beta * ema + (1 - beta) * p after every optimiser step (parameters only).

    Buffers are copied from the live model (the authors never update them; our models keep no
    trained buffers, so copying only keeps derived tables such as position encodings in step).
    """

    def __init__(self, model: nn.Module, beta: float = 0.999):
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"EMA beta must be in [0, 1), got {beta}")
        self.beta = float(beta)
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        ema_params = list(self.module.parameters())
        live_params = list(model.parameters())
        if len(ema_params) != len(live_params):
            raise RuntimeError("EMA and model have different parameter lists")
        # the same two ops per tensor as e.mul_(beta).add_(p, alpha=1 - beta), as multi-tensor kernels
        torch._foreach_mul_(ema_params, self.beta)
        torch._foreach_add_(ema_params, [p.detach() for p in live_params], alpha=1.0 - self.beta)
        for e, b in zip(self.module.buffers(), model.buffers()):
            e.copy_(b)

    def state_dict(self) -> dict:
        return self.module.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state)
