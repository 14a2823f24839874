"""PointGenerator: positions, strides, the authors' regression ranges, eval buffer."""

import pytest
import torch

from hieramamba.models.points import PointGenerator, regression_ranges


def test_authors_regression_ranges():
    ranges = regression_ranges(2304, 8, regression_range=4, sigma=0.5)
    assert ranges[:4] == [(0, 4), (2, 8), (4, 16), (8, 32)]
    assert ranges[6] == (64, 256)
    assert ranges[-1] == (128, 2305)  # the last level's max is max_seq_len + 1


def test_points_rows_and_levels():
    gen = PointGenerator(64, 4)
    pts = gen([64, 32, 16, 8])
    assert [p.shape for p in pts] == [(64, 4), (32, 4), (16, 4), (8, 4)]
    assert torch.equal(pts[2][:3, 0], torch.tensor([0.0, 4.0, 8.0]))  # no half-stride offset
    assert torch.all(pts[1][:, 1:] == torch.tensor([2.0, 8.0, 2.0]))
    assert torch.all(pts[3][:, 2] == 65.0) and torch.all(pts[3][:, 3] == 8.0)
    assert pts[0].dtype == torch.float32


def test_eval_buffer_and_longer_requests():
    gen = PointGenerator(16, 2)
    assert len(gen.points_0) == 64  # 4x the training length, as the authors' eval buffer
    assert "points_0" not in gen.state_dict()
    long = gen([100, 50])
    assert long[0].shape == (100, 4) and long[1][-1, 0] == 98.0
    with pytest.raises(ValueError):
        gen([10])


def test_other_anchor_stride():
    gen = PointGenerator(27, 3, stride=3)
    pts = gen([27, 9, 3])
    assert pts[1][1, 0] == 3.0 and pts[2][1, 0] == 9.0
    assert gen.regression_range == [(0, 4), (2, 12), (6, 36)]
