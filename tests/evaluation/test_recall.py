"""R@k at IoU under the snag and official protocols: hand-computed cases and every edge case of
datasets.md §1.4 (official scorer table) and §7 (boundary cases)."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from hieramamba.evaluation import RecallResult, format_threshold, iou_official, iou_snag, metric_key, recall_at_iou


def snag(preds, gt, ranks=(1, 5), ious=(0.3, 0.5)) -> RecallResult:
    return recall_at_iou(preds, gt, ranks, ious, protocol="snag")


def official(preds, gt, ranks=(1, 5), ious=(0.3, 0.5)) -> RecallResult:
    return recall_at_iou(preds, gt, ranks, ious, protocol="official")


# ---------------------------------------------------------------- keys and IoU definitions


def test_metric_keys_are_written_as_in_the_protocol():
    assert metric_key(1, 0.3) == "R1@0.3"
    assert metric_key(50, 0.1) == "R50@0.1"
    assert metric_key(5, 0.1 + 0.2) == "R5@0.3"  # 0.30000000000000004 still prints as 0.3
    assert format_threshold(0.25) == "0.25"
    res = recall_at_iou({"q": [(0, 1, 1.0)]}, {"q": (0, 1)}, (1, 5, 10, 50), (0.1, 0.3, 0.5))
    assert list(res.metrics) == [f"R{k}@{t}" for k in (1, 5, 10, 50) for t in ("0.1", "0.3", "0.5")]
    assert res.protocol == "snag" and res.ranks == (1, 5, 10, 50)


def test_iou_definitions_by_hand():
    p = np.array([[0.0, 2.0], [0.0, 10.0], [3.0, 1.0], [2.0, 6.0], [5.0, 5.0]])
    g = np.array([[0.0, 1.0], [0.0, 3.0], [0.0, 4.0], [0.0, 4.0], [5.0, 5.0]])
    snag_iou = iou_snag(p, g)
    off_iou = iou_official(p, g)
    # [0,2] vs [0,1]: 1 / (2 + 1 - 1) = 0.5 both ways (overlapping, ordered: union == hull)
    assert snag_iou[0] == 0.5 and off_iou[0] == 0.5
    assert snag_iou[1] == 0.3 and off_iou[1] == 0.3
    # inverted [3,1] vs [0,4]: inter clamps to 0 -> 0
    assert snag_iou[2] == 0.0 and off_iou[2] == 0.0
    # [2,6] vs [0,4]: inter 2, union 4 + 4 - 2 = 6, hull 6
    assert snag_iou[3] == pytest.approx(2 / 6) and off_iou[3] == pytest.approx(2 / 6)
    # identical zero-length: 0 / 0
    assert math.isnan(snag_iou[4]) and math.isnan(off_iou[4])
    # disjoint: the hull is larger than len_p + len_g but inter is 0 anyway
    assert iou_official(np.array([0.0, 1.0]), np.array([3.0, 4.0])) == 0.0
    assert iou_snag(np.array([0.0, 1.0]), np.array([3.0, 4.0])) == 0.0


# ---------------------------------------------------------------- thresholds: >= vs >


def test_iou_exactly_at_threshold_counts_for_snag_not_official():
    gt = {"a": (0.0, 1.0), "b": (0.0, 3.0)}
    preds = {"a": [(0.0, 2.0, 0.9)], "b": [(0.0, 10.0, 0.9)]}
    s = snag(preds, gt)
    assert s.metrics["R1@0.5"] == 50.0  # a: 0.5 >= 0.5
    assert s.metrics["R1@0.3"] == 100.0  # a: 0.5, b: 0.3 >= 0.3
    o = official({"a": [[0.0, 2.0]], "b": [[0.0, 10.0]]}, gt)
    assert o.metrics["R1@0.5"] == 0.0  # 0.5 > 0.5 is False
    assert o.metrics["R1@0.3"] == 50.0  # a: 0.5 > 0.3; b: 0.3 > 0.3 is False
    # the docs' example: pred [0,2] vs GT [0,1] -> official R@1@0.3 = 1, R@1@0.5 = 0
    o1 = official({"a": [[0.0, 2.0]]}, {"a": (0.0, 1.0)})
    assert o1.metrics["R1@0.3"] == 100.0 and o1.metrics["R1@0.5"] == 0.0


# ---------------------------------------------------------------- snag protocol


def test_snag_sorts_by_score_and_uses_top_k():
    gt = {"q": (10.0, 20.0)}
    # the hit has the 3rd best score, given first in the list
    preds = {"q": [(10.0, 20.0, 0.5), (0.0, 1.0, 0.9), (30.0, 40.0, 0.7), (50.0, 60.0, 0.1)]}
    res = snag(preds, gt, ranks=(1, 2, 3))
    assert res.metrics["R1@0.5"] == 0.0
    assert res.metrics["R2@0.5"] == 0.0
    assert res.metrics["R3@0.5"] == 100.0


def test_snag_ties_keep_input_order():
    gt = {"q": (0.0, 1.0)}
    hit_first = {"q": [(0.0, 1.0, 0.5), (5.0, 6.0, 0.5)]}
    hit_second = {"q": [(5.0, 6.0, 0.5), (0.0, 1.0, 0.5)]}
    assert snag(hit_first, gt).metrics["R1@0.5"] == 100.0
    assert snag(hit_second, gt).metrics["R1@0.5"] == 0.0
    assert snag(hit_second, gt).metrics["R5@0.5"] == 100.0


def test_snag_fewer_than_k_predictions_uses_what_is_there():
    gt = {"a": (0.0, 1.0), "b": (0.0, 1.0)}
    preds = {"a": [(5.0, 6.0, 0.9), (0.0, 1.0, 0.8)], "b": [(5.0, 6.0, 0.9)]}
    res = snag(preds, gt, ranks=(1, 5, 50))
    assert res.metrics["R1@0.5"] == 0.0
    assert res.metrics["R5@0.5"] == 50.0
    assert res.metrics["R50@0.5"] == 50.0


def test_snag_drops_zero_length_ground_truth_and_counts_it():
    gt = {"a": (0.0, 1.0), "zero": (5.0, 5.0), "neg": (7.0, 6.0)}
    preds = {"a": [(0.0, 1.0, 0.9)], "zero": [(5.0, 5.0, 0.9)], "neg": [(6.0, 7.0, 0.9)]}
    res = snag(preds, gt)
    assert res.n_dropped == 2
    assert res.n_queries == 1
    assert res.metrics["R1@0.5"] == 100.0  # 1 hit / 1 remaining query (not / 3)


def test_snag_missing_or_empty_prediction_is_a_miss():
    # the authors crash here (max of an empty tensor); we count a miss and report it
    gt = {"a": (0.0, 1.0), "b": (0.0, 1.0), "c": (0.0, 1.0), "d": (0.0, 1.0)}
    preds = {"a": [(0.0, 1.0, 0.9)], "b": [], "d": [(0.0, 1.0, 0.1)]}
    res = snag(preds, gt)
    assert res.n_queries == 4 and res.n_missing == 2
    assert res.metrics["R1@0.3"] == 50.0


def test_snag_counts_duplicate_ground_truth_separately():
    # TACoS has repeated (video, segment) annotations under different sentences
    gt = {"s1": (0.0, 4.0), "s2": (0.0, 4.0), "s3": (10.0, 12.0)}
    preds = {q: [(0.0, 4.0, 0.9)] for q in gt}
    res = snag(preds, gt)
    assert res.metrics["R1@0.5"] == pytest.approx(200.0 / 3)


def test_snag_inverted_predictions():
    gt = {"q": (0.0, 4.0)}
    # inverted [3, 1]: IoU 0, the second prediction hits at rank 2
    res = snag({"q": [(3.0, 1.0, 0.9), (0.0, 4.0, 0.8)]}, gt, ranks=(1, 2))
    assert res.metrics["R1@0.3"] == 0.0 and res.metrics["R2@0.3"] == 100.0
    # inverted [4, 0]: len_p + len_g - inter = -4 + 4 - 0 = 0 -> NaN, and the max over the top-k
    # propagates it (torch's max does), so even the later hit does not count
    res = snag({"q": [(4.0, 0.0, 0.9), (0.0, 4.0, 0.8)]}, gt, ranks=(1, 2))
    assert res.metrics["R1@0.3"] == 0.0 and res.metrics["R2@0.3"] == 0.0


def test_snag_rejects_duplicate_entries_unknown_ids_and_flat_lists():
    gt = {"q": (0.0, 1.0)}
    with pytest.raises(ValueError, match="two prediction entries"):
        snag([("q", [(0.0, 1.0, 0.9)]), ("q", [(0.0, 1.0, 0.9)])], gt)
    with pytest.raises(ValueError, match="absent from the ground truth"):
        snag({"x": [(0.0, 1.0, 0.9)]}, gt)
    with pytest.raises(ValueError, match="flat"):
        snag({"q": [0.0, 1.0, 0.9]}, gt)
    with pytest.raises(ValueError, match="start, end, score"):
        snag({"q": [(0.0, 1.0)]}, gt)


def test_protocol_and_ranks_are_validated():
    with pytest.raises(ValueError, match="protocol"):
        recall_at_iou({}, {}, protocol="2dtan")
    with pytest.raises(ValueError, match="ranks"):
        recall_at_iou({}, {}, ranks=(0,))


# ---------------------------------------------------------------- official protocol (datasets.md §1.4)


def test_official_uses_the_given_order_not_scores():
    gt = {"q": (0.0, 1.0)}
    # a trailing score is ignored: the list order is the ranking
    res = official({"q": [[5.0, 6.0, 0.9], [0.0, 1.0, 0.95]]}, gt, ranks=(1, 2))
    assert res.metrics["R1@0.5"] == 0.0 and res.metrics["R2@0.5"] == 100.0


def test_official_fewer_than_k_predictions():
    res = official({"q": [[9.0, 10.0], [0.0, 1.0]]}, {"q": (0.0, 1.0)}, ranks=(1, 5))
    assert res.metrics["R1@0.3"] == 0.0 and res.metrics["R5@0.3"] == 100.0


def test_official_duplicate_entries_count_twice():
    gt = {"a": (0.0, 1.0), "b": (0.0, 1.0)}
    entries = [("a", [[0.0, 1.0]]), ("a", [[0.0, 1.0]]), ("b", [[5.0, 6.0]])]
    res = official(entries, gt)
    assert res.n_queries == 3
    assert res.metrics["R1@0.5"] == pytest.approx(200.0 / 3)


def test_official_missing_query_is_ignored():
    gt = {"a": (0.0, 1.0), "b": (0.0, 1.0), "c": (0.0, 1.0)}
    res = official({"a": [[0.0, 1.0]]}, gt)
    assert res.n_queries == 1 and res.n_missing == 2
    assert res.metrics["R1@0.5"] == 100.0  # 1 / 1 submitted, not 1 / 3


def test_official_duplicate_windows_occupy_rank_slots():
    res = official({"q": [[5.0, 6.0], [5.0, 6.0], [0.0, 1.0]]}, {"q": (0.0, 1.0)}, ranks=(1, 2, 3))
    assert res.metrics["R2@0.5"] == 0.0 and res.metrics["R3@0.5"] == 100.0


def test_official_zero_length_ground_truth_is_kept_and_never_a_hit():
    gt = {"z": (5.0, 5.0), "a": (0.0, 1.0)}
    res = official({"z": [[4.0, 6.0]], "a": [[0.0, 1.0]]}, gt, ious=(0.0, 0.5))
    assert res.n_dropped == 0 and res.n_queries == 2
    # covering prediction: inter 0 / hull 2 = 0, not > 0 even at threshold 0
    assert res.metrics["R1@0"] == 50.0
    assert res.miou == pytest.approx(50.0)  # (0 + 1) / 2


def test_official_nan_from_zero_over_zero():
    gt = {"z": (5.0, 5.0), "a": (0.0, 1.0)}
    res = official({"z": [[5.0, 5.0], [4.0, 6.0]], "a": [[0.0, 1.0]]}, gt, ranks=(1, 5), ious=(0.0, 0.3))
    # NaN > t is False: z is a miss at every (k, t); a hits
    assert res.metrics["R1@0"] == 50.0 and res.metrics["R5@0.3"] == 50.0
    assert math.isnan(res.miou)  # the top-1 IoU of z is NaN, so the mean is NaN


def test_official_inverted_prediction_is_iou_zero():
    res = official({"q": [[3.0, 1.0]]}, {"q": (0.0, 4.0)}, ious=(0.0,))
    assert res.metrics["R1@0"] == 0.0
    assert res.miou == 0.0
    # hull-based IoU never becomes NaN for an inverted prediction against a real segment
    res = official({"q": [[4.0, 0.0], [0.0, 4.0]]}, {"q": (0.0, 4.0)}, ranks=(2,), ious=(0.5,))
    assert res.metrics["R2@0.5"] == 100.0


def test_official_flat_or_empty_predicted_times_raise():
    gt = {"q": (0.0, 1.0)}
    with pytest.raises(ValueError, match="flat"):
        official({"q": [0.0, 1.0]}, gt)
    with pytest.raises(ValueError, match="empty"):
        official({"q": []}, gt)


def test_official_unknown_query_raises():
    with pytest.raises(ValueError, match="Instance not present"):
        official({"x": [[0.0, 1.0]]}, {"q": (0.0, 1.0)})


def test_official_no_entries_gives_nan():
    res = official({}, {"q": (0.0, 1.0)})
    assert res.n_queries == 0 and res.n_missing == 1
    assert all(math.isnan(v) for v in res.metrics.values()) and math.isnan(res.miou)


def test_miou_is_the_mean_top1_iou():
    gt = {"a": (0.0, 4.0), "b": (0.0, 4.0)}
    res = official({"a": [[0.0, 2.0], [0.0, 4.0]], "b": [[0.0, 1.0]]}, gt)
    assert res.miou == pytest.approx(100.0 * (0.5 + 0.25) / 2)  # not the mean of the top-3
    assert res.to_dict()["mIoU"] == res.miou
    assert "mIoU" not in snag({"a": [(0.0, 1.0, 1.0)]}, gt).to_dict()


# ---------------------------------------------------------------- randomised cross-check


def _loop_reference(preds, gt, ranks, ious, protocol):
    """Plain-Python re-statement of each protocol, one query at a time."""
    hits = {(k, t): 0 for k in ranks for t in ious}
    n = 0
    for qid, (gs, ge) in gt.items():
        if protocol == "snag" and ge - gs <= 0:
            continue
        rows = preds.get(qid, [])
        if protocol == "official" and not rows:
            continue
        n += 1
        if protocol == "snag":
            rows = sorted(rows, key=lambda r: -r[2])
        vals = []
        for s, e, *_ in rows[: max(ranks)]:
            inter = max(0.0, min(e, ge) - max(s, gs))
            den = (e - s) + (ge - gs) - inter if protocol == "snag" else max(0.0, max(e, ge) - min(s, gs))
            vals.append(math.nan if den == 0 and inter == 0 else inter / den)
        for k in ranks:
            for t in ious:
                head = vals[:k]
                if protocol == "snag":
                    ok = bool(head) and not any(math.isnan(v) for v in head) and max(head) >= t
                else:
                    ok = any(v > t for v in head)
                hits[(k, t)] += ok
    return {metric_key(k, t): 100.0 * hits[(k, t)] / n for k in ranks for t in ious}, n


@pytest.mark.parametrize("protocol", ["snag", "official"])
def test_random_cases_match_a_loop_reference(protocol):
    rng = random.Random(7)
    gt, preds = {}, {}
    for q in range(60):
        s = rng.choice([0.0, 1.0, 2.5, 4.0])
        gt[q] = (s, s + rng.choice([0.0, 0.5, 1.0, 3.0]))
        if rng.random() < 0.9:
            rows = []
            for _ in range(rng.randint(1, 7)):
                a = rng.choice([0.0, 0.5, 1.0, 2.0, 3.0, 4.0])
                rows.append((a, a + rng.choice([0.5, 1.0, 2.0, 4.0]), rng.choice([0.1, 0.5, 0.9])))
            preds[q] = rows
    ranks, ious = (1, 3, 5), (0.1, 0.3, 0.5, 0.7)
    expected, n = _loop_reference(preds, gt, ranks, ious, protocol)
    given = preds if protocol == "snag" else {q: [r[:2] for r in rows] for q, rows in preds.items()}
    res = recall_at_iou(given, gt, ranks, ious, protocol)
    assert res.n_queries == n
    assert res.metrics == pytest.approx(expected)


def test_evaluation_package_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, hieramamba.evaluation; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
