"""Recall broken down by video-length bin and by query kind (e.g. the synthetic long-range queries).

Each group is scored with `recall_at_iou` on the group's queries only, under the same protocol, and
reported as {"n_queries": int, "metrics": {...}} (the `by_length_bin` / `by_query_kind` blocks of
metrics.json). An empty group reports n_queries 0 and empty metrics. Every query must fall in a
group: a duration outside the bins or a query without a kind raises instead of being dropped.
numpy only.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from hieramamba.evaluation.recall import Predictions, _entries, recall_at_iou

__all__ = ["DEFAULT_BIN_EDGES_S", "bin_label", "length_bin_labels", "assign_length_bins", "recall_by_group",
           "recall_by_length_bin", "recall_by_query_kind"]

DEFAULT_BIN_EDGES_S = (0.0, 120.0, 600.0, 1800.0, math.inf)
DEFAULT_KINDS = ("plain", "long_range")


def bin_label(lo: float, hi: float) -> str:
    """(0, 120) -> "0-120s"; (600, inf) -> "600s+"."""
    if math.isinf(hi):
        return f"{lo:g}s+"
    return f"{lo:g}-{hi:g}s"


def length_bin_labels(edges: Sequence[float]) -> list[str]:
    edges = [float(e) for e in edges]
    if len(edges) < 2 or any(b <= a for a, b in zip(edges, edges[1:])):
        raise ValueError(f"bin edges must be at least two strictly increasing numbers, got {edges}")
    return [bin_label(lo, hi) for lo, hi in zip(edges, edges[1:])]


def assign_length_bins(durations: Mapping[Hashable, float], edges: Sequence[float]) -> dict[Hashable, str]:
    """Each query's video duration (s) -> the label of the bin [lo, hi) holding it."""
    labels = length_bin_labels(edges)
    edges = [float(e) for e in edges]
    out = {}
    for qid, dur in durations.items():
        dur = float(dur)
        for lo, hi, label in zip(edges, edges[1:], labels):
            if lo <= dur < hi:
                out[qid] = label
                break
        else:
            raise ValueError(f"query {qid!r}: video duration {dur} s lies outside the length bins {edges}")
    return out


def recall_by_group(
    predictions: Predictions,
    ground_truth: Mapping[Hashable, Sequence[float]],
    groups: Mapping[Hashable, str],
    labels: Sequence[str] = (),
    *,
    ranks: Sequence[int] = (1, 5),
    iou_thresholds: Sequence[float] = (0.3, 0.5),
    protocol: str = "snag",
) -> dict[str, dict[str, Any]]:
    """{label: {"n_queries", "metrics"}} for the groups of `groups` ({query_id: label}, covering every
    ground-truth query). `labels` fixes the order and lists groups to report even when empty;
    groups not in `labels` follow in first-seen order."""
    missing = [q for q in ground_truth if q not in groups]
    if missing:
        raise ValueError(f"{len(missing)} quer(y/ies) have no group, e.g. {missing[0]!r}")
    order = list(labels) + [g for g in dict.fromkeys(groups[q] for q in ground_truth) if g not in labels]
    entries = _entries(predictions)
    out: dict[str, dict[str, Any]] = {}
    for label in order:
        gt = {q: seg for q, seg in ground_truth.items() if groups[q] == label}
        preds = [(q, rows) for q, rows in entries if q in gt]
        if not gt or (protocol == "official" and not preds):
            out[label] = {"n_queries": 0, "metrics": {}}
            continue
        res = recall_at_iou(preds, gt, ranks, iou_thresholds, protocol)
        if res.n_queries == 0:
            out[label] = {"n_queries": 0, "metrics": {}}
            continue
        out[label] = {"n_queries": res.n_queries, "metrics": dict(res.metrics)}
    return out


def recall_by_length_bin(
    predictions: Predictions,
    ground_truth: Mapping[Hashable, Sequence[float]],
    durations: Mapping[Hashable, float],
    edges: Sequence[float] = DEFAULT_BIN_EDGES_S,
    **kwargs: Any,
) -> dict[str, dict[str, Any]]:
    """Recall per video-length bin; `durations` = {query_id: its video's duration in seconds}."""
    groups = assign_length_bins({q: durations[q] for q in ground_truth}, edges)
    return recall_by_group(predictions, ground_truth, groups, length_bin_labels(edges), **kwargs)


def recall_by_query_kind(
    predictions: Predictions,
    ground_truth: Mapping[Hashable, Sequence[float]],
    kinds: Mapping[Hashable, str],
    labels: Sequence[str] = DEFAULT_KINDS,
    **kwargs: Any,
) -> dict[str, dict[str, Any]]:
    """Recall per query kind; `kinds` = {query_id: kind} (e.g. "plain", "long_range")."""
    return recall_by_group(predictions, ground_truth, kinds, labels, **kwargs)
