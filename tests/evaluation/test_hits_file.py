"""Per-query hits: `hits_at_iou` is what `recall_at_iou` averages (both protocols), and the
hits file round-trips (with each query's video), is byte-deterministic, names itself when
malformed and refuses a file written before the video column with the remedy."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from hieramamba.errors import DataError
from hieramamba.evaluation import hits_at_iou, recall_at_iou
from hieramamba.evaluation.hits_file import read_hits, write_hits

GT = {"a": (0.0, 10.0), "b": (20.0, 30.0), "c": (5.0, 5.0), "d": (40.0, 50.0)}
PREDS = {
    "a": [(0.0, 9.0, 0.9), (50.0, 60.0, 0.8)],  # top-1 IoU 0.9
    "b": [(50.0, 60.0, 0.9), (22.0, 30.0, 0.5)],  # top-1 miss, top-2 IoU 0.8
    "c": [(5.0, 6.0, 0.5)],  # zero-length ground truth: dropped under snag
    # "d": missing -> a miss under snag, ignored under official
}


def test_snag_hits_per_query_and_their_mean_is_the_recall():
    hits = hits_at_iou(PREDS, GT, ranks=(1, 5), iou_thresholds=(0.5,))
    assert hits.ids == ["a", "b", "d"] and hits.n_dropped == 1 and hits.n_missing == 1
    assert hits.hits["R1@0.5"].tolist() == [True, False, False]
    assert hits.hits["R5@0.5"].tolist() == [True, True, False]
    recall = recall_at_iou(PREDS, GT, ranks=(1, 5), iou_thresholds=(0.5,))
    assert recall.metrics == pytest.approx({"R1@0.5": 100 / 3, "R5@0.5": 200 / 3})
    assert hits.summary() == recall


def test_official_hits_follow_submitted_entries():
    preds = {"a": [[0.0, 9.0]], "b": [[22.0, 30.0]]}
    hits = hits_at_iou(preds, GT, ranks=(1,), iou_thresholds=(0.85,), protocol="official")
    assert hits.ids == ["a", "b"] and hits.hits["R1@0.85"].tolist() == [True, False]
    assert hits.summary() == recall_at_iou(preds, GT, ranks=(1,), iou_thresholds=(0.85,), protocol="official")


def test_round_trip_and_deterministic_bytes(tmp_path):
    hits = hits_at_iou(PREDS, GT, ranks=(1, 5), iou_thresholds=(0.3, 0.5))
    kinds = {"a": "plain", "b": "long_range", "c": "plain", "d": "plain"}
    bins = {"a": "0-120s", "b": "120-600s", "d": "0-120s"}
    videos = {"a": "v1", "b": "v2", "c": "v1", "d": "v1"}
    write_hits(tmp_path / "one.csv.gz", hits, kinds, bins, videos)
    write_hits(tmp_path / "two.csv.gz", hits, kinds, bins, videos)
    assert (tmp_path / "one.csv.gz").read_bytes() == (tmp_path / "two.csv.gz").read_bytes()
    ids, read = read_hits(tmp_path / "one.csv.gz")
    assert [r["query_id"] for r in ids] == ["a", "b", "d"]
    assert [r["kind"] for r in ids] == ["plain", "long_range", "plain"]
    assert [r["length_bin"] for r in ids] == ["0-120s", "120-600s", "0-120s"]
    assert [r["video"] for r in ids] == ["v1", "v2", "v1"]
    assert list(read) == ["R1@0.3", "R1@0.5", "R5@0.3", "R5@0.5"]
    for m in read:
        np.testing.assert_array_equal(read[m], hits.hits[m])
    text = gzip.open(tmp_path / "one.csv.gz", "rt").read()
    assert text.splitlines()[0] == "query_id,kind,length_bin,video,R1@0.3,R1@0.5,R5@0.3,R5@0.5"
    assert text.splitlines()[1] == "a,plain,0-120s,v1,1,1,1,1"


def test_every_query_needs_a_kind_a_bin_and_a_video(tmp_path):
    hits = hits_at_iou(PREDS, GT, ranks=(1,), iou_thresholds=(0.5,))
    every = {q: "x" for q in GT}
    with pytest.raises(ValueError, match="'d' has no kind"):
        write_hits(tmp_path / "h.csv.gz", hits, {"a": "plain", "b": "plain"}, every, every)
    with pytest.raises(ValueError, match="'d' has no video"):
        write_hits(tmp_path / "h.csv.gz", hits, every, every, {"a": "v1", "b": "v1"})
    assert not (tmp_path / "h.csv.gz").exists()


def test_file_without_the_video_column_names_the_remedy(tmp_path):
    """A file of the first hits layout (no `video`): one error naming the file and the command
    that rewrites it, not a confusing 'header must start' or 'R{k}@{iou}' message."""
    run = tmp_path / "runs" / "full" / "seed0"
    run.mkdir(parents=True)
    path = run / "hits.csv.gz"
    with gzip.open(path, "wt") as handle:
        handle.write("query_id,kind,length_bin,R1@0.3\nq1,plain,x,1\n")
    with pytest.raises(DataError, match="no `video` column") as err:
        read_hits(path)
    assert str(path) in str(err.value) and f"hieramamba evaluate {run}" in str(err.value)


@pytest.mark.parametrize(
    "body, problem",
    [
        ("query_id,kind,length_bin,video,R1@0.3\nq1,plain,x,v,2\n", "must be 0 or 1"),
        ("query_id,kind,R1@0.3\nq1,plain,1\n", "header must start"),
        ("query_id,kind,length_bin,video,recall\nq1,plain,x,v,1\n", "R{k}@{iou}"),
        ("query_id,kind,length_bin,video,R1@0.3\nq1,plain,x,v,1\nq1,plain,x,v,0\n", "more than once"),
        ("query_id,kind,length_bin,video,R1@0.3\nq1,plain,v,1\n", "line 2 has 4 fields"),
    ],
)
def test_malformed_file_is_named(tmp_path, body, problem):
    path = tmp_path / "hits.csv.gz"
    with gzip.open(path, "wt") as handle:
        handle.write(body)
    with pytest.raises(DataError, match=problem) as err:
        read_hits(path)
    assert str(path) in str(err.value)


def test_not_gzip_is_named(tmp_path):
    path = tmp_path / "hits.csv.gz"
    path.write_text("plain text")
    with pytest.raises(DataError, match="not a readable gzip CSV"):
        read_hits(path)
