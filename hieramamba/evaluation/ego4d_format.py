"""Prediction files: the Ego4D NLQ challenge layout, and a generic layout for MAD / TACoS.

Ego4D (read by the official `evaluate_ego4d_nlq.py`):

    {"version": "1.0", "challenge": "ego4d_nlq_challenge",
     "results": [{"clip_uid": str, "annotation_uid": str, "query_idx": int,
                  "predicted_times": [[s, e], ...], "predicted_scores": [...]}, ...]}

`predicted_times` are clip-relative seconds, ranked best first (the scorer never sorts);
`predicted_scores` is our addition (the scorer ignores unknown keys). A query is identified by the
tuple (clip_uid, annotation_uid, query_idx).

Generic (MAD, MAD-v2, TACoS, synthetic sets):

    {"version": "1.0", "dataset": str,
     "results": [{"query_id": str, "video_id": str,
                  "predicted_times": [[s, e], ...], "predicted_scores": [...]}, ...]}

with the dataset's own ids (MAD: annotation key and movie id; TACoS: the reader's query id and
video id). Times are seconds relative to the video, ranked best first.

Writers are atomic (temporary file + rename); readers validate and raise `DataError` naming the
file, the entry and the problem. numpy / json only.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from hieramamba.atomic import atomic_write_json
from hieramamba.errors import DataError

__all__ = [
    "EGO4D_VERSION",
    "EGO4D_CHALLENGE",
    "ranked",
    "write_ego4d_predictions",
    "read_ego4d_predictions",
    "write_generic_predictions",
    "read_generic_predictions",
    "read_predictions",
    "ego4d_ground_truth",
]

EGO4D_VERSION = "1.0"
EGO4D_CHALLENGE = "ego4d_nlq_challenge"
GENERIC_VERSION = "1.0"

Ego4DId = tuple[str, str, int]
Rows = Sequence[Sequence[float]]


def ranked(rows: Rows) -> list[tuple[float, float, float]]:
    """(start, end, score) rows sorted by score, descending; ties keep their order (stable)."""
    rows = [tuple(float(v) for v in r) for r in rows]
    for r in rows:
        if len(r) != 3:
            raise ValueError(f"prediction rows must be (start, end, score), got {r!r}")
    return sorted(rows, key=lambda r: -r[2])


def _atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_json(path, obj, indent=None, allow_nan=False)


def _result_times(rows: Rows) -> tuple[list[list[float]], list[float]]:
    rows = ranked(rows)
    for s, e, score in rows:
        if not all(math.isfinite(v) for v in (s, e, score)):
            raise ValueError(f"non-finite prediction {(s, e, score)!r}")
    return [[s, e] for s, e, _ in rows], [score for _, _, score in rows]


def write_ego4d_predictions(
    path: str | os.PathLike,
    predictions: Mapping[Hashable, Rows],
    identity: Mapping[Hashable, Ego4DId] | None = None,
) -> None:
    """Write {query_id: [(start_s, end_s, score), ...]} (clip-relative seconds, any order) as an
    Ego4D challenge file, ranked by score. `identity` maps our query ids to
    (clip_uid, annotation_uid, query_idx); without it the query ids must be those tuples."""
    results = []
    for qid, rows in predictions.items():
        ident = identity[qid] if identity is not None else qid
        if not (isinstance(ident, tuple) and len(ident) == 3):
            raise ValueError(
                f"query {qid!r}: Ego4D identity must be (clip_uid, annotation_uid, query_idx), got {ident!r}"
            )
        if len(rows) == 0:
            raise ValueError(f"query {qid!r}: no predictions; the official scorer crashes on an empty predicted_times")
        times, scores = _result_times(rows)
        clip_uid, annotation_uid, query_idx = ident
        results.append(
            {
                "clip_uid": str(clip_uid),
                "annotation_uid": str(annotation_uid),
                "query_idx": int(query_idx),
                "predicted_times": times,
                "predicted_scores": scores,
            }
        )
    _atomic_write_json(path, {"version": EGO4D_VERSION, "challenge": EGO4D_CHALLENGE, "results": results})


def _load(path: str | os.PathLike) -> Any:
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as exc:
        raise DataError(path, f"not valid JSON ({exc})") from exc


def _read_rows(path, where: object, entry: Mapping[str, Any]) -> list[tuple[float, float, float]]:
    times = entry.get("predicted_times")
    if not isinstance(times, list) or not times:
        raise DataError(path, "predicted_times must be a non-empty list of [start, end]", where)
    if any(not isinstance(t, list) or len(t) != 2 for t in times):
        raise DataError(path, "predicted_times must be a list of [start, end] pairs (not a flat list)", where)
    scores = entry.get("predicted_scores")
    if scores is None:
        # ranked only: synthesise decreasing scores so the rank order survives a score sort
        scores = [float(len(times) - i) for i in range(len(times))]
    if not isinstance(scores, list) or len(scores) != len(times):
        raise DataError(path, "predicted_scores must have one score per predicted time", where)
    return [(float(s), float(e), float(c)) for (s, e), c in zip(times, scores)]


def read_ego4d_predictions(path: str | os.PathLike) -> list[tuple[Ego4DId, list[tuple[float, float, float]]]]:
    """Read an Ego4D challenge file -> list of ((clip_uid, annotation_uid, query_idx), rows) in file
    order (duplicates kept, for the official protocol). Rows are (start, end, score) in rank order;
    without `predicted_scores` the scores are decreasing rank numbers."""
    obj = _load(path)
    if not isinstance(obj, dict) or obj.get("version") != EGO4D_VERSION:
        raise DataError(path, f"Ego4D version must be {EGO4D_VERSION!r} (the official scorer asserts it)")
    if obj.get("challenge") != EGO4D_CHALLENGE:
        raise DataError(path, f"challenge must be {EGO4D_CHALLENGE!r} (the official scorer asserts it)")
    results = obj.get("results")
    if not isinstance(results, list):
        raise DataError(path, "'results' must be a list")
    out = []
    for i, entry in enumerate(results):
        try:
            ident = (str(entry["clip_uid"]), str(entry["annotation_uid"]), int(entry["query_idx"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(path, f"entry needs clip_uid, annotation_uid and an integer query_idx ({exc})", i) from exc
        out.append((ident, _read_rows(path, ident, entry)))
    return out


def write_generic_predictions(
    path: str | os.PathLike,
    dataset: str,
    predictions: Mapping[Hashable, Rows],
    video_ids: Mapping[Hashable, str],
) -> None:
    """Write {query_id: [(start_s, end_s, score), ...]} (video-relative seconds) for MAD / TACoS /
    synthetic sets, ranked by score, with each query's video id."""
    results = []
    for qid, rows in predictions.items():
        if len(rows) == 0:
            raise ValueError(f"query {qid!r}: no predictions to write")
        times, scores = _result_times(rows)
        results.append(
            {
                "query_id": str(qid),
                "video_id": str(video_ids[qid]),
                "predicted_times": times,
                "predicted_scores": scores,
            }
        )
    _atomic_write_json(path, {"version": GENERIC_VERSION, "dataset": str(dataset), "results": results})


Row = tuple[float, float, float]


def read_generic_predictions(path: str | os.PathLike) -> tuple[str, list[tuple[str, list[Row]]], dict[str, str]]:
    """Read a generic file -> (dataset, [(query_id, rows)], {query_id: video_id})."""
    obj = _load(path)
    if not isinstance(obj, dict) or obj.get("version") != GENERIC_VERSION or "dataset" not in obj:
        raise DataError(path, f"not a generic prediction file (needs version {GENERIC_VERSION!r} and 'dataset')")
    results = obj.get("results")
    if not isinstance(results, list):
        raise DataError(path, "'results' must be a list")
    entries, videos = [], {}
    for i, entry in enumerate(results):
        if "query_id" not in entry or "video_id" not in entry:
            raise DataError(path, "entry needs query_id and video_id", i)
        qid = str(entry["query_id"])
        entries.append((qid, _read_rows(path, qid, entry)))
        videos[qid] = str(entry["video_id"])
    return str(obj["dataset"]), entries, videos


def read_predictions(path: str | os.PathLike) -> list[tuple[Hashable, list[tuple[float, float, float]]]]:
    """Either layout -> [(query_id, rows)] for `recall_at_iou` (Ego4D ids are 3-tuples)."""
    obj = _load(path)
    if isinstance(obj, dict) and "challenge" in obj:
        return list(read_ego4d_predictions(path))
    return list(read_generic_predictions(path)[1])


def ego4d_ground_truth(
    nlq: Mapping[str, Any], path: str | os.PathLike = "<nlq json>"
) -> dict[Ego4DId, tuple[float, float]]:
    """Official NLQ annotation JSON (videos -> clips -> annotations -> language_queries) ->
    {(clip_uid, annotation_uid, query_idx): (clip_start_sec, clip_end_sec)}, the scorer's lookup."""
    gt: dict[Ego4DId, tuple[float, float]] = {}
    try:
        for video in nlq["videos"]:
            for clip in video["clips"]:
                for ann in clip["annotations"]:
                    for idx, query in enumerate(ann["language_queries"]):
                        key = (str(clip["clip_uid"]), str(ann["annotation_uid"]), idx)
                        gt[key] = (float(query["clip_start_sec"]), float(query["clip_end_sec"]))
    except (KeyError, TypeError) as exc:
        raise DataError(path, f"not an Ego4D NLQ annotation file (missing {exc})") from exc
    return gt

