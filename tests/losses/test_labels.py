"""Point labelling (centre sampling + regression range), GT span masks and the loss normaliser."""

from __future__ import annotations

import pytest
import torch

from hieramamba.losses import LossNormalizer, gt_span_masks, label_points


def _points():
    """Two levels over a 16-step grid: level 0 stride 1 range [0, 4); level 1 stride 2 range [2, 8)."""
    lvl0 = torch.tensor([[float(t), 0.0, 4.0, 1.0] for t in range(16)])
    lvl1 = torch.tensor([[float(t), 2.0, 8.0, 2.0] for t in range(0, 16, 2)])
    return [lvl0, lvl1]


def _positives(labels_row, points):
    pts = torch.cat(points)
    return [(int(pts[i, 3]), float(pts[i, 0])) for i in labels_row.nonzero().flatten().tolist()]


def test_hand_case_positives_and_offsets():
    points = _points()
    targets = torch.tensor([[4.0, 8.0], [0.0, 8.0], [2.0, 7.0]], dtype=torch.float64)
    labels, offsets = label_points(points, targets)
    assert labels.shape == (3, 24) and offsets.shape == (3, 24, 2)
    # (4, 8): level 0 window [4.5, 7.5] -> 5, 6, 7 (reach 3, 2, 3 < 4); level 1 window [4, 8]
    # clipped to the GT -> only 6 strictly inside, reach 2 == r_min (inclusive)
    assert _positives(labels[0], points) == [(1, 5.0), (1, 6.0), (1, 7.0), (2, 6.0)]
    # (0, 8): level 0 window [2.5, 5.5] -> 3, 4, 5 but reach 5, 4, 5 >= r_max 4 (exclusive);
    # level 1 window [1, 7] -> 2, 4, 6 with reach 6, 4, 6 in [2, 8)
    assert _positives(labels[1], points) == [(2, 2.0), (2, 4.0), (2, 6.0)]
    # (2, 7): level 0 window [3, 6] exactly on points 3 and 6, which are excluded (strictly inside);
    # level 1 window [2, 7] -> 4, 6 (2 is on the edge), reach 3, 4
    assert _positives(labels[2], points) == [(1, 4.0), (1, 5.0), (2, 4.0), (2, 6.0)]
    # offsets in units of the stride, for every point
    lvl1_six = 16 + 3
    assert offsets[0, lvl1_six].tolist() == [1.0, 1.0]
    assert offsets[0, 5].tolist() == [1.0, 3.0]
    assert offsets[1, 0].tolist() == [0.0, 8.0]


def test_vectorised_matches_per_target_definition():
    gen = torch.Generator().manual_seed(0)
    points = _points()
    pts = torch.cat(points).double()
    starts = torch.rand(20, generator=gen, dtype=torch.float64) * 12
    targets = torch.stack([starts, starts + 0.2 + torch.rand(20, generator=gen, dtype=torch.float64) * 6], 1)
    labels, offsets = label_points(pts, targets, center_radius=1.5)
    for b, (s, e) in enumerate(targets.tolist()):
        for p, (tt, lo, hi, stride) in enumerate(pts.tolist()):
            c = (s + e) / 2
            w0, w1 = max(s, c - 1.5 * stride), min(e, c + 1.5 * stride)
            reach = max(tt - s, e - tt)
            expect = (w0 < tt < w1) and (lo <= reach < hi)
            assert bool(labels[b, p]) == expect
            assert offsets[b, p].tolist() == pytest.approx([(tt - s) / stride, (e - tt) / stride])


def test_radius_widens_the_window():
    points = _points()
    targets = torch.tensor([[2.0, 7.0]])
    narrow, _ = label_points(points, targets, center_radius=0.5)
    wide, _ = label_points(points, targets, center_radius=1.5)
    assert narrow.sum() < wide.sum()
    assert (narrow <= wide).all()


def test_bad_shapes():
    with pytest.raises(ValueError, match="points"):
        label_points(torch.zeros(3, 3), torch.zeros(1, 2))
    with pytest.raises(ValueError, match="targets"):
        label_points(torch.zeros(3, 4), torch.zeros(2))


def test_gt_span_masks():
    targets = torch.tensor([[4.2, 8.0], [20.0, 30.0], [4.2, 4.8]], dtype=torch.float64)
    lvl0, lvl1 = gt_span_masks(targets, [16, 8], [1, 2])
    assert lvl0.shape == (3, 16) and lvl1.shape == (3, 8)
    assert lvl0[0].nonzero().flatten().tolist() == [5, 6, 7, 8]  # ceil(4.2) .. floor(8)
    assert lvl1[0].nonzero().flatten().tolist() == [3, 4]  # ceil(2.1) .. floor(4)
    # beyond the end: both indices clamp to T_l - 1, as the authors' clamping does
    assert lvl0[1].nonzero().flatten().tolist() == [15]
    assert lvl1[1].nonzero().flatten().tolist() == [7]
    # shorter than a step: ceil(start) > floor(end) -> empty
    assert not lvl0[2].any()
    with pytest.raises(ValueError, match="levels"):
        gt_span_masks(targets, [16], [1, 2])


def test_loss_normalizer_uses_previous_value_and_updates_with_momentum():
    norm = LossNormalizer(100.0)
    assert norm.value == 100.0
    assert norm.update(50) == pytest.approx(95.0)
    assert norm.update(0) == pytest.approx(0.9 * 95.0 + 0.1 * 1.0)  # max(#pos, 1)
    state = norm.state_dict()
    other = LossNormalizer(10.0)
    other.load_state_dict(state)
    assert other.value == norm.value and other.momentum == 0.9
    with pytest.raises(ValueError):
        LossNormalizer(0.0)
