"""Prediction files: the Ego4D challenge layout (what the official scorer reads) and the generic one."""

from __future__ import annotations

import json

import pytest

from hieramamba.errors import DataError
from hieramamba.evaluation import (
    ego4d_ground_truth,
    ranked,
    read_ego4d_predictions,
    read_generic_predictions,
    read_predictions,
    recall_at_iou,
    write_ego4d_predictions,
    write_generic_predictions,
)

# a minimal NLQ annotation file (invented ids); video_start_sec / video_end_sec differ from the
# clip-relative times on purpose: the scorer compares clip-relative seconds
NLQ = {
    "version": "v1",
    "videos": [
        {
            "video_uid": "vid-0",
            "clips": [
                {
                    "clip_uid": "clip-a",
                    "video_start_sec": 100.0,
                    "annotations": [
                        {
                            "annotation_uid": "ann-1",
                            "language_queries": [
                                {"clip_start_sec": 0.0, "clip_end_sec": 2.0, "video_start_sec": 100.0,
                                 "video_end_sec": 102.0, "query": "where was the cup?"},
                                {"clip_start_sec": 10.0, "clip_end_sec": 10.0, "video_start_sec": 110.0,
                                 "video_end_sec": 110.0},
                            ],
                        }
                    ],
                },
                {
                    "clip_uid": "clip-b",
                    "annotations": [
                        {"annotation_uid": "ann-2", "language_queries": [
                            {"clip_start_sec": 4.0, "clip_end_sec": 8.0, "query": "who did I talk to?"}]}
                    ],
                },
            ],
        }
    ],
}


def test_ground_truth_lookup_uses_clip_relative_times():
    gt = ego4d_ground_truth(NLQ)
    assert gt == {
        ("clip-a", "ann-1", 0): (0.0, 2.0),
        ("clip-a", "ann-1", 1): (10.0, 10.0),
        ("clip-b", "ann-2", 0): (4.0, 8.0),
    }
    with pytest.raises(DataError, match="not an Ego4D NLQ annotation file"):
        ego4d_ground_truth(
            {"videos": [{"clips": [{"annotations": [{"language_queries": [{"clip_start_sec": 0.0}]}]}]}]}, "bad.json"
        )


def test_ego4d_layout_is_exactly_the_challenge_format(tmp_path):
    path = tmp_path / "out" / "predictions.json"
    preds = {
        ("clip-a", "ann-1", 0): [(5.0, 6.0, 0.2), (0.0, 2.0, 0.9), (1.0, 3.0, 0.5)],
        ("clip-b", "ann-2", 0): [(4.0, 8.0, 0.7)],
    }
    write_ego4d_predictions(path, preds)
    obj = json.loads(path.read_text())
    assert obj["version"] == "1.0" and obj["challenge"] == "ego4d_nlq_challenge"
    first = obj["results"][0]
    assert set(first) == {"clip_uid", "annotation_uid", "query_idx", "predicted_times", "predicted_scores"}
    assert first["clip_uid"] == "clip-a" and first["annotation_uid"] == "ann-1" and first["query_idx"] == 0
    # ranked best first, nested [s, e] pairs
    assert first["predicted_times"] == [[0.0, 2.0], [1.0, 3.0], [5.0, 6.0]]
    assert first["predicted_scores"] == [0.9, 0.5, 0.2]
    assert not list(path.parent.glob(".*.tmp"))  # atomic write leaves no temporary file


def test_identity_mapping_and_round_trip_through_the_official_protocol(tmp_path):
    path = tmp_path / "p.json"
    identity = {"q0": ("clip-a", "ann-1", 0), "q1": ("clip-a", "ann-1", 1), "q2": ("clip-b", "ann-2", 0)}
    preds = {"q0": [(0.0, 4.0, 0.9)], "q1": [(10.0, 10.0, 0.9)], "q2": [(0.0, 1.0, 0.3), (4.0, 8.0, 0.8)]}
    write_ego4d_predictions(path, preds, identity)
    entries = read_ego4d_predictions(path)
    assert [e[0] for e in entries] == [identity[q] for q in preds]
    assert entries[2][1] == [(4.0, 8.0, 0.8), (0.0, 1.0, 0.3)]
    res = recall_at_iou(entries, ego4d_ground_truth(NLQ), (1, 5), (0.3, 0.5), protocol="official")
    # q0: [0,4] vs [0,2] -> 0.5 (> 0.3 only); q1: 0/0 NaN -> miss; q2: [4,8] exact -> hit
    assert res.n_queries == 3
    assert res.metrics["R1@0.3"] == pytest.approx(200 / 3)
    assert res.metrics["R1@0.5"] == pytest.approx(100 / 3)
    assert read_predictions(path) == entries


def test_writer_refuses_what_the_scorer_cannot_read(tmp_path):
    with pytest.raises(ValueError, match="empty predicted_times"):
        write_ego4d_predictions(tmp_path / "p.json", {("c", "a", 0): []})
    with pytest.raises(ValueError, match="identity"):
        write_ego4d_predictions(tmp_path / "p.json", {"q": [(0.0, 1.0, 1.0)]})
    with pytest.raises(ValueError):
        write_ego4d_predictions(tmp_path / "p.json", {("c", "a", 0): [(0.0, float("nan"), 1.0)]})
    assert not (tmp_path / "p.json").exists()


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ({"version": "2.0", "challenge": "ego4d_nlq_challenge", "results": []}, "version"),
        ({"version": "1.0", "challenge": "other", "results": []}, "challenge"),
        ({"version": "1.0", "challenge": "ego4d_nlq_challenge",
          "results": [{"clip_uid": "c", "annotation_uid": "a", "query_idx": 0, "predicted_times": [0.0, 1.0]}]}, "flat"),
        ({"version": "1.0", "challenge": "ego4d_nlq_challenge",
          "results": [{"clip_uid": "c", "annotation_uid": "a", "query_idx": 0, "predicted_times": []}]}, "non-empty"),
        ({"version": "1.0", "challenge": "ego4d_nlq_challenge",
          "results": [{"clip_uid": "c", "query_idx": 0, "predicted_times": [[0.0, 1.0]]}]}, "annotation_uid"),
    ],
)
def test_reader_errors_name_the_file_and_problem(tmp_path, obj, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(obj))
    with pytest.raises(DataError, match=message) as info:
        read_ego4d_predictions(path)
    assert "bad.json" in str(info.value)


def test_reader_accepts_files_without_scores_and_keeps_their_rank_order(tmp_path):
    path = tmp_path / "official.json"
    path.write_text(json.dumps({"version": "1.0", "challenge": "ego4d_nlq_challenge", "results": [
        {"clip_uid": "c", "annotation_uid": "a", "query_idx": 2, "predicted_times": [[3.0, 4.0], [0.0, 1.0]]}]}))
    (ident, rows), = read_ego4d_predictions(path)
    assert ident == ("c", "a", 2)
    assert [r[:2] for r in ranked(rows)] == [(3.0, 4.0), (0.0, 1.0)]  # a score sort keeps the ranks


def test_generic_layout_round_trip(tmp_path):
    path = tmp_path / "mad.json"
    preds = {"1001": [(3.0, 9.0, 0.1), (10.0, 20.0, 0.6)], "1002": [(0.0, 5.0, 0.4)]}
    write_generic_predictions(path, "mad", preds, {"1001": "0001_Movie", "1002": "0002_Other"})
    obj = json.loads(path.read_text())
    assert obj["dataset"] == "mad" and obj["version"] == "1.0"
    assert obj["results"][0] == {"query_id": "1001", "video_id": "0001_Movie",
                                 "predicted_times": [[10.0, 20.0], [3.0, 9.0]], "predicted_scores": [0.6, 0.1]}
    dataset, entries, videos = read_generic_predictions(path)
    assert dataset == "mad" and videos == {"1001": "0001_Movie", "1002": "0002_Other"}
    assert dict(entries)["1001"] == [(10.0, 20.0, 0.6), (3.0, 9.0, 0.1)]
    assert read_predictions(path) == entries
    res = recall_at_iou(dict(entries), {"1001": (10.0, 20.0), "1002": (0.0, 5.0)}, (1,), (0.5,))
    assert res.metrics["R1@0.5"] == 100.0
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        read_predictions(bad)
