"""1-D IoU / DIoU losses on offset pairs against hand values."""

from __future__ import annotations

import pytest
import torch

from hieramamba.losses import diou_loss, iou_loss, offset_iou, regression_loss


def t(*rows):
    return torch.tensor(rows, dtype=torch.float64)


def test_iou_by_hand():
    # pred (1, 3) -> [c-1, c+3]; gt (2, 2) -> [c-2, c+2]; inter 1 + 2 = 3, union 4 + 4 - 3 = 5
    assert offset_iou(t([1.0, 3.0]), t([2.0, 2.0])).item() == pytest.approx(0.6)
    assert iou_loss(t([1.0, 3.0]), t([2.0, 2.0])).item() == pytest.approx(0.4)


def test_diou_by_hand():
    # centres 1 and 0 -> rho = 1; enclosing [c-2, c+3] -> len_c 5; 1 - 0.6 + (1/5)^2
    assert diou_loss(t([1.0, 3.0]), t([2.0, 2.0])).item() == pytest.approx(0.44)
    # same centre, different lengths: rho = 0 -> DIoU == IoU loss
    assert diou_loss(t([1.0, 1.0]), t([3.0, 3.0])).item() == pytest.approx(1 - 2 / 6)


def test_identical_zero_and_degenerate():
    pred = t([1.0, 2.0], [0.5, 0.5])
    assert iou_loss(pred, pred.clone()).item() == pytest.approx(0.0)
    assert diou_loss(pred, pred.clone()).item() == pytest.approx(0.0)
    # a zero-length prediction at the point: IoU 0, centre offset 0 -> both losses 1
    assert iou_loss(t([0.0, 0.0]), t([1.0, 1.0])).item() == pytest.approx(1.0)
    assert diou_loss(t([0.0, 0.0]), t([1.0, 1.0])).item() == pytest.approx(1.0)
    # both zero: eps keeps it finite
    assert torch.isfinite(diou_loss(t([0.0, 0.0]), t([0.0, 0.0])))


def test_reductions_and_empty_input():
    pred, gt = t([1.0, 3.0], [2.0, 2.0]), t([2.0, 2.0], [2.0, 2.0])
    per = iou_loss(pred, gt, reduction="none")
    assert per.tolist() == pytest.approx([0.4, 0.0])
    assert iou_loss(pred, gt).item() == pytest.approx(0.4)
    assert iou_loss(pred, gt, reduction="mean").item() == pytest.approx(0.2)
    empty = torch.zeros(0, 2, dtype=torch.float64)
    assert iou_loss(empty, empty).item() == 0.0
    assert diou_loss(empty, empty, reduction="mean").item() == 0.0


def test_dispatch_and_gradients():
    pred = torch.rand(5, 2, dtype=torch.float64, requires_grad=True)
    gt = torch.rand(5, 2, dtype=torch.float64) + 0.1
    assert regression_loss("iou", pred, gt).item() == pytest.approx(iou_loss(pred, gt).item())
    loss = regression_loss("diou", pred, gt)
    loss.backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="reg_loss"):
        regression_loss("giou", pred, gt)
    with pytest.raises(ValueError, match="offsets"):
        iou_loss(torch.zeros(3, 3), torch.zeros(3, 3))
