"""Sigmoid focal loss with label smoothing against hand computations."""

from __future__ import annotations

import math

import pytest
import torch

from hieramamba.losses import sigmoid_focal_loss, smooth_labels


def _hand(x: float, y: int, alpha=0.5, gamma=2.0, smoothing=0.2) -> float:
    ys = y * (1 - smoothing) + smoothing / 2
    p = 1 / (1 + math.exp(-x))
    bce = -(ys * math.log(p) + (1 - ys) * math.log(1 - p))
    p_t = p * ys + (1 - p) * (1 - ys)
    a_t = alpha if ys >= 0.5 else 1 - alpha
    return a_t * bce * (1 - p_t) ** gamma


def test_smoothed_targets():
    out = smooth_labels(torch.tensor([True, False]), 0.2, torch.float64)
    assert out.tolist() == pytest.approx([0.9, 0.1])


def test_zero_logit_by_hand():
    # p = 0.5 -> p_t = 0.5 for either smoothed target, BCE = log 2, alpha_t = 0.5
    loss = sigmoid_focal_loss(torch.zeros(2, dtype=torch.float64), torch.tensor([True, False]))
    assert loss.item() == pytest.approx(2 * 0.5 * math.log(2) * 0.25)


def test_matches_hand_computation_and_sums():
    xs = [-3.0, -0.5, 0.0, 1.2, 4.0]
    ys = [0, 1, 1, 0, 1]
    logits = torch.tensor(xs, dtype=torch.float64)
    labels = torch.tensor(ys, dtype=torch.bool)
    per = sigmoid_focal_loss(logits, labels, reduction="none")
    assert per.tolist() == pytest.approx([_hand(x, y) for x, y in zip(xs, ys)], rel=1e-12)
    assert sigmoid_focal_loss(logits, labels).item() == pytest.approx(sum(_hand(x, y) for x, y in zip(xs, ys)))
    assert sigmoid_focal_loss(logits, labels, reduction="mean").item() == pytest.approx(per.mean().item())


def test_p_t_uses_the_smoothed_target():
    # a confident correct positive still pays: p_t = 0.9 p + 0.1 (1 - p) < 1 even as p -> 1
    loss = sigmoid_focal_loss(torch.tensor([20.0], dtype=torch.float64), torch.tensor([True]))
    assert loss.item() == pytest.approx(_hand(20.0, 1))
    assert loss.item() > 0.5 * 0.1 * 20 * 0.1**2 * 0.9  # far from zero


def test_alpha_and_no_smoothing_reduce_to_retinanet_focal():
    x, logits = 1.5, torch.tensor([1.5, 1.5], dtype=torch.float64)
    per = sigmoid_focal_loss(logits, torch.tensor([1, 0]), alpha=0.25, smoothing=0.0, reduction="none")
    p = 1 / (1 + math.exp(-x))
    assert per[0].item() == pytest.approx(0.25 * -math.log(p) * (1 - p) ** 2)
    assert per[1].item() == pytest.approx(0.75 * -math.log(1 - p) * p**2)
    no_alpha = sigmoid_focal_loss(logits, torch.tensor([1, 0]), alpha=-1, smoothing=0.0, reduction="none")
    assert no_alpha[0].item() == pytest.approx(-math.log(p) * (1 - p) ** 2)


def test_half_precision_is_computed_in_float32_and_gradients_flow():
    logits = torch.randn(7, dtype=torch.bfloat16, requires_grad=True)
    loss = sigmoid_focal_loss(logits, torch.rand(7) > 0.5)
    assert loss.dtype == torch.float32
    loss.backward()
    assert torch.isfinite(logits.grad.float()).all()


def test_bad_arguments():
    with pytest.raises(ValueError, match="shape"):
        sigmoid_focal_loss(torch.zeros(3), torch.zeros(2))
    with pytest.raises(ValueError, match="reduction"):
        sigmoid_focal_loss(torch.zeros(3), torch.zeros(3), reduction="avg")
