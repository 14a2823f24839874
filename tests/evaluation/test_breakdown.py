"""Recall by video-length bin and by query kind."""

from __future__ import annotations

import math

import pytest

from hieramamba.evaluation import (
    assign_length_bins,
    bin_label,
    length_bin_labels,
    recall_by_group,
    recall_by_length_bin,
    recall_by_query_kind,
)

GT = {"a": (0.0, 1.0), "b": (0.0, 1.0), "c": (10.0, 20.0), "d": (10.0, 20.0)}
PREDS = {"a": [(0.0, 1.0, 0.9)], "b": [(5.0, 6.0, 0.9)], "c": [(10.0, 20.0, 0.9)], "d": [(10.0, 20.0, 0.9)]}


def test_bin_labels():
    assert bin_label(0, 120) == "0-120s"
    assert bin_label(600, math.inf) == "600s+"
    assert length_bin_labels([0, 120, 600, math.inf]) == ["0-120s", "120-600s", "600s+"]
    with pytest.raises(ValueError, match="increasing"):
        length_bin_labels([0, 120, 60])


def test_bins_are_half_open_and_never_drop_a_query():
    bins = assign_length_bins({"x": 0.0, "y": 119.9, "z": 120.0}, [0, 120, 600])
    assert bins == {"x": "0-120s", "y": "0-120s", "z": "120-600s"}
    with pytest.raises(ValueError, match="outside the length bins"):
        assign_length_bins({"w": 600.0}, [0, 120, 600])


def test_recall_by_length_bin_scores_each_bin_on_its_own_queries():
    durations = {"a": 60.0, "b": 100.0, "c": 300.0, "d": 4000.0}
    out = recall_by_length_bin(PREDS, GT, durations, [0, 120, 600, 1800, math.inf], ranks=(1,), iou_thresholds=(0.5,))
    assert list(out) == ["0-120s", "120-600s", "600-1800s", "1800s+"]
    assert out["0-120s"] == {"n_queries": 2, "metrics": {"R1@0.5": 50.0}}
    assert out["120-600s"] == {"n_queries": 1, "metrics": {"R1@0.5": 100.0}}
    assert out["600-1800s"] == {"n_queries": 0, "metrics": {}}
    assert out["1800s+"]["n_queries"] == 1


def test_recall_by_query_kind_lists_required_kinds_even_when_empty():
    kinds = {"a": "plain", "b": "plain", "c": "plain", "d": "plain"}
    out = recall_by_query_kind(PREDS, GT, kinds, ranks=(1,), iou_thresholds=(0.5,))
    assert out["plain"] == {"n_queries": 4, "metrics": {"R1@0.5": 75.0}}
    assert out["long_range"] == {"n_queries": 0, "metrics": {}}
    kinds["d"] = "long_range"
    out = recall_by_query_kind(PREDS, GT, kinds, ranks=(1,), iou_thresholds=(0.5,))
    assert out["long_range"] == {"n_queries": 1, "metrics": {"R1@0.5": 100.0}}
    with pytest.raises(ValueError, match="no group"):
        recall_by_query_kind(PREDS, GT, {"a": "plain"})


def test_groups_follow_the_protocol():
    # official: entries counted per group, missing queries ignored; snag: dropped GT per group
    gt = dict(GT, z=(3.0, 3.0))
    groups = {q: ("x" if q in ("a", "b", "z") else "y") for q in gt}
    snag = recall_by_group(PREDS, gt, groups, ["x", "y"], ranks=(1,), iou_thresholds=(0.5,))
    assert snag["x"] == {"n_queries": 2, "metrics": {"R1@0.5": 50.0}}  # z dropped (zero length)
    official_preds = [("a", [[0.0, 1.0]]), ("a", [[0.0, 1.0]]), ("c", [[0.0, 1.0]])]
    off = recall_by_group(official_preds, gt, groups, ["x", "y"], ranks=(1,), iou_thresholds=(0.5,),
                          protocol="official")
    assert off["x"] == {"n_queries": 2, "metrics": {"R1@0.5": 100.0}}
    assert off["y"] == {"n_queries": 1, "metrics": {"R1@0.5": 0.0}}
