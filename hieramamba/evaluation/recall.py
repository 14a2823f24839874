"""Recall@k at temporal IoU thresholds, under two protocols. numpy only.

`snag` — what SnAG / HieraMamba's `Evaluator.run` computes (the paper's numbers):
  * predictions are sorted by score, descending; ties keep their input order (a stable sort; the
    authors' `argsort(descending=True)` leaves tie order unspecified); the top max(ranks) are kept;
  * IoU = inter / (len_p + len_g - inter), inter = max(0, min(e_p, e_g) - max(s_p, s_g));
  * a query is a hit at (k, t) iff the max IoU over its first k predictions is >= t. The max
    propagates NaN (torch's `max` does): a NaN IoU in the first k (only possible for an inverted
    prediction with len_p = -len_g) makes the query a miss at that k;
  * ground truth with end - start <= 0 is dropped (the authors drop it at load time, after clamping
    to [0, duration], which is the data reader's job here) and counted in `n_dropped`;
  * recall = hits / number of remaining ground-truth queries (NaN when none remain);
  * a query with no prediction (missing or empty) counts as a miss and is counted in `n_missing`;
    the authors' code crashes there (max of an empty tensor).

`official` — the Ego4D NLQ challenge scorer (`evaluate_ego4d_nlq.py`), reproduced exactly:
  * `predicted_times` are taken in the given order (never sorted);
  * IoU = inter / hull, hull = max(0, max(e_p, e_g) - min(s_p, s_g)); 0/0 gives NaN;
  * hit iff any of the first k IoUs is strictly > t (NaN > t is False);
  * the mean is over the *submitted prediction entries*: a query submitted twice counts twice,
    ground-truth queries with no entry are ignored (reported in `n_missing`, not penalised);
    zero submitted entries give NaN, as the script's `np.mean` of nothing;
  * zero-length ground truth is kept (never a hit, or NaN when the prediction is the same point);
  * "mIoU" = mean IoU of the top-1 prediction (the script's `overlap[0]` idiom), NaN if any is NaN;
  * a flat `[s, e]` or an empty `predicted_times` raise `ValueError` (the script crashes with
    `AxisError` / `IndexError`); an entry for a query absent from the ground truth raises
    (the script's "Instance not present!" assertion). The snag protocol raises on unknown ids too.

Metric keys are `R{k}@{t}` with t written by `format_threshold` ("R1@0.3"); values in percent.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["PROTOCOLS", "QueryHits", "RecallResult", "hits_at_iou", "format_threshold", "metric_key", "recall_at_iou", "iou_snag", "iou_official"]

PROTOCOLS = ("snag", "official")
METRIC_KEY_RE = re.compile(r"^R(\d+)@([0-9.]+)$")  # what metric_key writes

Predictions = Mapping[Hashable, Sequence[Sequence[float]]] | Iterable[tuple[Hashable, Sequence[Sequence[float]]]]


def format_threshold(t: float) -> str:
    """0.3 -> "0.3", 0.30000000000000004 -> "0.3", 0.25 -> "0.25"."""
    return f"{float(t):g}"


def metric_key(k: int, t: float) -> str:
    return f"R{int(k)}@{format_threshold(t)}"


@dataclass(frozen=True)
class RecallResult:
    """Recall@k at IoU thresholds in percent, keyed `R{k}@{t}`.

    n_queries: the denominator (snag: ground-truth queries left after dropping zero-length ones;
    official: submitted prediction entries). n_dropped: zero-length ground truth dropped (snag only).
    n_missing: ground-truth queries with no prediction (snag: counted as misses; official: ignored).
    miou: official only, the scorer's "mIoU" (mean top-1 IoU) in percent, possibly NaN.
    """

    protocol: str
    metrics: dict[str, float]
    n_queries: int
    n_dropped: int = 0
    n_missing: int = 0
    miou: float | None = None
    ranks: tuple[int, ...] = field(default_factory=tuple)
    iou_thresholds: tuple[float, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "protocol": self.protocol,
            "metrics": dict(self.metrics),
            "n_queries": self.n_queries,
            "n_dropped": self.n_dropped,
            "n_missing": self.n_missing,
        }
        if self.miou is not None:
            out["mIoU"] = self.miou
        return out


@dataclass(frozen=True)
class QueryHits:
    """Per-query hits behind a RecallResult: `ids[i]` is the i-th query of the denominator (snag:
    annotated queries with a positive-length segment; official: submitted entries, in order) and
    `hits[R{k}@{t}][i]` whether it is a hit. recall = 100 * mean(hits)."""

    protocol: str
    ids: list[Hashable]
    hits: dict[str, np.ndarray]  # metric -> (Q,) bool
    n_dropped: int = 0
    n_missing: int = 0
    miou: float | None = None
    ranks: tuple[int, ...] = field(default_factory=tuple)
    iou_thresholds: tuple[float, ...] = field(default_factory=tuple)

    def summary(self) -> RecallResult:
        n = len(self.ids)
        if not n:
            metrics = {m: math.nan for m in self.hits}
        elif self.protocol == "official":  # the scorer's np.mean, bit for bit
            metrics = {m: 100.0 * float(h.mean()) for m, h in self.hits.items()}
        else:
            metrics = {m: 100.0 * float(h.sum()) / n for m, h in self.hits.items()}
        return RecallResult(self.protocol, metrics, n, self.n_dropped, self.n_missing, self.miou,
                            self.ranks, self.iou_thresholds)


def iou_snag(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """(..., 2) x (..., 2) -> (...): inter / (len_p + len_g - inter) (SnAG's `train_utils.iou`)."""
    inter = np.clip(np.minimum(pred[..., 1], gt[..., 1]) - np.maximum(pred[..., 0], gt[..., 0]), 0.0, None)
    union = (pred[..., 1] - pred[..., 0]) + (gt[..., 1] - gt[..., 0]) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return inter / union


def iou_official(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """(..., 2) x (..., 2) -> (...): inter / hull (the Ego4D script's `compute_IoU`)."""
    inter = np.maximum(0.0, np.minimum(pred[..., 1], gt[..., 1]) - np.maximum(pred[..., 0], gt[..., 0]))
    hull = np.maximum(0.0, np.maximum(pred[..., 1], gt[..., 1]) - np.minimum(pred[..., 0], gt[..., 0]))
    with np.errstate(divide="ignore", invalid="ignore"):
        return inter / hull


def _entries(predictions: Predictions) -> list[tuple[Hashable, Sequence]]:
    if isinstance(predictions, Mapping):
        return list(predictions.items())
    return [(qid, preds) for qid, preds in predictions]


def _is_number(x: object) -> bool:
    return isinstance(x, numbers.Real) or (isinstance(x, np.ndarray) and x.ndim == 0)


def _as_rows(qid: Hashable, preds: Sequence, protocol: str) -> np.ndarray:
    """A query's predictions -> (n, 2 or 3) float array, with clear errors for malformed lists."""
    if isinstance(preds, np.ndarray):
        preds = preds.tolist()
    preds = list(preds)
    if len(preds) == 0:
        if protocol == "official":
            raise ValueError(
                f"query {qid!r}: predicted_times is empty; the official Ego4D scorer crashes on this "
                "(IndexError), give at least one [start, end]"
            )
        return np.zeros((0, 3))
    if any(_is_number(p) for p in preds):
        raise ValueError(
            f"query {qid!r}: predictions must be a list of [start, end(, score)] rows, got a flat list "
            f"{preds[:4]!r}; the official Ego4D scorer crashes on a flat predicted_times (AxisError)"
        )
    widths = {len(p) for p in preds}
    need = (3,) if protocol == "snag" else (2, 3)
    if len(widths) != 1 or next(iter(widths)) not in need:
        want = "(start, end, score)" if protocol == "snag" else "[start, end] (optionally a score)"
        raise ValueError(f"query {qid!r}: every prediction must be {want}, got rows of lengths {sorted(widths)}")
    return np.asarray(preds, dtype=np.float64)


def _validate(
    ranks: Sequence[int], iou_thresholds: Sequence[float], protocol: str
) -> tuple[tuple[int, ...], tuple[float, ...]]:
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    ranks = tuple(int(k) for k in ranks)
    thresholds = tuple(float(t) for t in iou_thresholds)
    if not ranks or min(ranks) < 1:
        raise ValueError(f"ranks must be positive integers, got {ranks}")
    if not thresholds:
        raise ValueError("iou_thresholds must not be empty")
    return ranks, thresholds


def _gt_array(ground_truth: Mapping[Hashable, Sequence[float]]) -> tuple[list[Hashable], np.ndarray]:
    ids = list(ground_truth)
    gt = np.asarray([list(ground_truth[q]) for q in ids], dtype=np.float64).reshape(len(ids), 2)
    return ids, gt


def _padded(rows: list[np.ndarray], width: int) -> tuple[np.ndarray, np.ndarray]:
    """Stack per-query (n_i, 2) rows into (Q, width, 2) with a validity mask (Q, width)."""
    out = np.zeros((len(rows), width, 2))
    valid = np.zeros((len(rows), width), dtype=bool)
    for i, r in enumerate(rows):
        n = min(len(r), width)
        out[i, :n] = r[:n, :2]
        valid[i, :n] = True
    return out, valid


def recall_at_iou(
    predictions: Predictions,
    ground_truth: Mapping[Hashable, Sequence[float]],
    ranks: Sequence[int] = (1, 5),
    iou_thresholds: Sequence[float] = (0.3, 0.5),
    protocol: str = "snag",
) -> RecallResult:
    """R@k at IoU under `protocol` ("snag" or "official"; see the module docstring).

    predictions: {query_id: rows} or an iterable of (query_id, rows) entries (needed to submit the
        same query twice under "official"). Rows are (start_s, end_s, score) for "snag" (any order;
        sorted here), and ranked [start_s, end_s] (a trailing score is ignored) for "official".
    ground_truth: {query_id: (start_s, end_s)}.
    """
    return hits_at_iou(predictions, ground_truth, ranks, iou_thresholds, protocol).summary()


def hits_at_iou(
    predictions: Predictions,
    ground_truth: Mapping[Hashable, Sequence[float]],
    ranks: Sequence[int] = (1, 5),
    iou_thresholds: Sequence[float] = (0.3, 0.5),
    protocol: str = "snag",
) -> QueryHits:
    """Per-query hit vectors under `protocol`, one row per query of the recall's denominator
    (arguments as `recall_at_iou`, which is the mean of these vectors in percent)."""
    ranks, thresholds = _validate(ranks, iou_thresholds, protocol)
    entries = _entries(predictions)
    unknown = [qid for qid, _ in entries if qid not in ground_truth]
    if unknown:
        raise ValueError(
            f"{len(unknown)} prediction(s) for queries absent from the ground truth, e.g. {unknown[0]!r} "
            "(the official scorer fails with 'Instance not present!')"
        )
    if protocol == "snag":
        return _hits_snag(entries, ground_truth, ranks, thresholds)
    return _hits_official(entries, ground_truth, ranks, thresholds)


def _hits_snag(entries, ground_truth, ranks, thresholds) -> QueryHits:
    seen: dict[Hashable, np.ndarray] = {}
    for qid, preds in entries:
        if qid in seen:
            raise ValueError(f"query {qid!r} has two prediction entries; the snag protocol takes one per query")
        seen[qid] = _as_rows(qid, preds, "snag")
    ids, gt = _gt_array(ground_truth)
    keep = (gt[:, 1] - gt[:, 0]) > 0
    n_dropped = int((~keep).sum())
    ids = [q for q, k in zip(ids, keep) if k]
    gt = gt[keep]
    top = max(ranks)
    rows = []
    n_missing = 0
    for qid in ids:
        r = seen.get(qid)
        if r is None or len(r) == 0:
            n_missing += 1
            rows.append(np.zeros((0, 3)))
            continue
        order = np.argsort(-r[:, 2], kind="stable")  # score descending, ties in input order
        rows.append(r[order[:top]])
    preds, valid = _padded(rows, top)  # (Q, top, 2)
    iou = iou_snag(preds, gt[:, None, :])  # (Q, top)
    hits: dict[str, np.ndarray] = {}
    n = len(ids)
    for k in ranks:
        # max over the first k real predictions; padding is -inf (never a hit), NaN propagates
        head = np.where(valid[:, :k], iou[:, :k], -np.inf)
        best = np.max(head, axis=1) if n else np.zeros(0)
        for t in thresholds:
            with np.errstate(invalid="ignore"):
                hits[metric_key(k, t)] = best >= t  # (Q,) bool; NaN >= t is False
    return QueryHits("snag", ids, hits, n_dropped, n_missing, None, ranks, thresholds)


def _hits_official(entries, ground_truth, ranks, thresholds) -> QueryHits:
    ids = [qid for qid, _ in entries]
    rows = [_as_rows(qid, preds, "official") for qid, preds in entries]
    gt = np.asarray([list(ground_truth[q]) for q in ids], dtype=np.float64).reshape(len(ids), 2)
    width = max([max(ranks)] + [len(r) for r in rows])
    preds, valid = _padded(rows, width)  # (E, width, 2)
    iou = iou_official(preds, gt[:, None, :])  # (E, width)
    n = len(ids)
    hits: dict[str, np.ndarray] = {}
    for k in ranks:
        for t in thresholds:
            with np.errstate(invalid="ignore"):
                hits[metric_key(k, t)] = ((iou[:, :k] > t) & valid[:, :k]).any(axis=1)  # (E,) bool
    miou = 100.0 * float(np.mean(iou[:, 0])) if n else math.nan
    n_missing = len(set(ground_truth) - set(ids))
    return QueryHits("official", ids, hits, 0, n_missing, miou, ranks, thresholds)
