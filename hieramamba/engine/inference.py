"""Whole-video inference, prediction files and the metrics of one split.

Per video (reference §1.8): the whole video at once, zero-padded to a multiple of the coarsest
pyramid stride; its queries go through the model in chunks of `eval.query_chunk` (memory is then
bounded by one video's length times the chunk, however many queries a video has; null: all of a
video's queries in one batch, as the authors do for Ego4D and TACoS; 1: one query at a time, as
they do for MAD). The chunking matters for the results only under `reference_mask_quirk`. Per query:
`engine.postprocess` (pre-NMS top-k, Gaussian soft-NMS, voting) in model-grid units, then
grid -> seconds with the data helper's grid module (`GroundingDataset.to_seconds`).

`prior_predictions` is the trivial baseline the model must beat: a fixed prior over (start, end)
learned from the training split's normalised segments.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from hieramamba.data.dataset import GroundingDataset
from hieramamba.engine.batching import Batch, eval_video_batch
from hieramamba.engine.postprocess import PostprocessConfig, postprocess_batch
from hieramamba.evaluation import assign_length_bins, hits_at_iou, recall_by_length_bin, recall_by_query_kind
from hieramamba.evaluation.hits_file import write_hits

Rows = list[tuple[float, float, float]]


@dataclass
class SplitPredictions:
    """Predictions of one split: {query_id: [(start_s, end_s, score), ...] ranked by score}."""

    split: str
    rows: dict[str, Rows] = field(default_factory=dict)
    video_of: dict[str, str] = field(default_factory=dict)
    ground_truth: dict[str, tuple[float, float]] = field(default_factory=dict)  # annotated queries
    durations: dict[str, float] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)
    identity: dict[str, dict[str, Any]] = field(default_factory=dict)


def postprocess_config(eval_cfg) -> PostprocessConfig:
    return PostprocessConfig(
        pre_nms_thresh=float(eval_cfg.pre_nms_thresh),
        pre_nms_topk=int(eval_cfg.pre_nms_topk),
        seg_len_thresh=float(eval_cfg.seg_len_thresh),
        sigma=float(eval_cfg.nms_sigma),
        min_score=float(eval_cfg.min_score),
        max_num_segs=int(eval_cfg.max_num_segs),
        voting_thresh=float(eval_cfg.voting_thresh),
    )


def query_chunk(eval_cfg) -> int | None:
    """Queries per forward (`eval.query_chunk`); None: all of a video's queries at once."""
    return None if eval_cfg.query_chunk is None else max(1, int(eval_cfg.query_chunk))


def _register(out: SplitPredictions, data: GroundingDataset, video_id: str, query) -> None:
    video = data.video(video_id)
    out.video_of[query.query_id] = video_id
    out.durations[query.query_id] = float(video.duration)
    out.kinds[query.query_id] = query.kind
    out.identity[query.query_id] = dict(query.identity)
    if query.segment is not None:
        out.ground_truth[query.query_id] = (float(query.segment[0]), float(query.segment[1]))


def eval_truncates_text(cfg) -> bool:
    """Whether evaluation cuts queries to the model's `max_text_len` (what training saw, and a
    200k-word query cannot blow up memory): `eval.truncate_text`, default true; false is the
    authors' evaluation (whole queries, the text PE interpolated past its table)."""
    return bool(cfg.eval.get("truncate_text", True))


@torch.no_grad()
def predict_split(
    model: torch.nn.Module,
    data: GroundingDataset,
    split: str,
    *,
    points_for: Callable[[list[int]], list[torch.Tensor]],
    pad_multiple: int,
    vid_stride: int,
    eval_cfg,
    device: torch.device,
    autocast: bool = False,
    progress: bool = False,
    max_text_len: int | None = None,
) -> SplitPredictions:
    """Run `model` on every video of `split` and post-process every query.

    `points_for(level lengths)` gives the per-level point tables (T_l, 4) of the model's point
    generator; `pad_multiple` is the coarsest level's stride in feature steps; queries are cut to
    `max_text_len` tokens when it is given (`eval_truncates_text`).
    """
    model.eval()
    pp = postprocess_config(eval_cfg)
    chunk = query_chunk(eval_cfg)
    out = SplitPredictions(split)
    samples = data.eval_samples(split)
    iterator = samples
    if progress:
        from tqdm import tqdm

        iterator = tqdm(samples, desc=f"eval {split}", unit="video", leave=False)
    for sample in iterator:
        vs = data.load_sample(sample, max_text_len=max_text_len)
        batch = eval_video_batch(vs, pad_multiple, vid_stride).to(device)
        per_query = predict_video(model, batch, points_for=points_for, pp=pp, chunk=chunk, device=device,
                                  autocast=autocast)
        for query, (segs, scores) in zip(vs.queries, per_query):
            secs = data.to_seconds(vs.video_id, segs.double().numpy(), vid_stride) if len(segs) else np.zeros((0, 2))
            out.rows[query.query_id] = [(float(s), float(e), float(c)) for (s, e), c in zip(secs, scores.tolist())]
            _register(out, data, vs.video_id, query)
    return out


@torch.no_grad()
def predict_video(
    model: torch.nn.Module,
    batch: Batch,
    *,
    points_for: Callable[[list[int]], list[torch.Tensor]],
    pp: PostprocessConfig,
    chunk: int | None,
    device: torch.device,
    autocast: bool = False,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One evaluation batch (one whole padded video, `eval_video_batch`) -> per query, in order,
    (segments (K, 2) in model-grid units, scores (K,)) ranked by score. The queries go through
    the model `chunk` at a time (None: all at once). `hieramamba predict` calls this too, so its
    answers are the evaluation's."""
    n = batch.text.shape[0]
    step = n if chunk is None else chunk
    out: list[tuple[torch.Tensor, torch.Tensor]] = []
    for q0 in range(0, n, step):
        q1 = min(q0 + step, n)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            res = model(batch.vid, batch.vid_mask, batch.text[q0:q1], batch.text_mask[q0:q1],
                        torch.tensor([q1 - q0], dtype=torch.long, device=device))
        lengths = [int(x.shape[-1]) for x in res.logits]
        points = [p.to("cpu") for p in points_for(lengths)]
        out.extend(postprocess_batch(points, res.logits, res.offsets, res.masks, pp))
    return out


# ------------------------------------------------------------------------------ prior baseline


def fit_prior(data: GroundingDataset, split: str = "train", k: int = 5, bins: int = 10) -> list[tuple[float, float, float]]:
    """A fixed prior over normalised (start, end), fitted on `split`: rank 1 is the mean normalised
    (start, end); ranks 2..k are segments of the mean normalised length centred on the most
    frequent cells of a `bins`-cell histogram of the segment centres. Rows (start_frac, end_frac,
    score), ranked."""
    pairs = []
    for video in data.split(split).videos.values():
        for q in video.queries:
            if q.segment is not None and video.duration > 0:
                pairs.append((q.segment[0] / video.duration, q.segment[1] / video.duration))
    if not pairs:
        raise ValueError(f"no annotated queries in split {split!r} to fit the prior on")
    arr = np.clip(np.asarray(pairs, dtype=np.float64), 0.0, 1.0)
    rows = [(float(arr[:, 0].mean()), float(arr[:, 1].mean()), 1.0)]
    half = 0.5 * float((arr[:, 1] - arr[:, 0]).mean())
    centres = arr.mean(axis=1)
    counts = np.bincount(np.minimum((centres * bins).astype(int), bins - 1), minlength=bins)
    order = np.lexsort((np.arange(bins), -counts))  # most frequent first, ties by position
    for rank, cell in enumerate(order[: max(k - 1, 0)]):
        c = (cell + 0.5) / bins
        rows.append((float(max(c - half, 0.0)), float(min(c + half, 1.0)), 1.0 / (rank + 2)))
    return rows


def prior_predictions(data: GroundingDataset, split: str, prior: list[tuple[float, float, float]]) -> SplitPredictions:
    """Every query of `split` gets the same normalised segments, scaled to its video's duration."""
    out = SplitPredictions(split)
    for video_id, video in data.split(split).videos.items():
        for q in video.queries:
            out.rows[q.query_id] = [(s * video.duration, e * video.duration, c) for s, e, c in prior]
            _register(out, data, video_id, q)
    return out


# ------------------------------------------------------------------------------ scoring


def score(preds: SplitPredictions, eval_cfg, protocol: str) -> dict[str, Any]:
    """metrics, n_queries, n_dropped, by_length_bin, by_query_kind for the annotated queries."""
    return score_with_hits(preds, eval_cfg, protocol)[0]


def score_with_hits(preds: SplitPredictions, eval_cfg, protocol: str) -> tuple[dict[str, Any], Callable[[Any], None]]:
    """`score`'s record and a writer of the per-query hits file behind it (`writer(path)`:
    hieramamba.evaluation.hits_file, one row per scored query with its kind, length bin and video)."""
    ranks = [int(r) for r in eval_cfg.ranks]
    ious = [float(t) for t in eval_cfg.iou_thresholds]
    gt = preds.ground_truth
    entries = {q: rows for q, rows in preds.rows.items() if q in gt}
    kwargs = dict(ranks=ranks, iou_thresholds=ious, protocol=protocol)
    hits = hits_at_iou(entries, gt, **kwargs)
    result = hits.summary()
    edges = [float(e) for e in eval_cfg.length_bins]
    if not math.isinf(edges[-1]):
        edges.append(math.inf)
    scored = {
        "metrics": {k: float(v) for k, v in result.metrics.items()},
        "n_queries": int(result.n_queries),
        "n_dropped": int(result.n_dropped),
        "by_length_bin": recall_by_length_bin(entries, gt, preds.durations, edges, **kwargs),
        "by_query_kind": recall_by_query_kind(entries, gt, preds.kinds, **kwargs),
    }
    bins = assign_length_bins({q: preds.durations[q] for q in hits.ids}, edges)

    def write(path) -> None:
        write_hits(path, hits, preds.kinds, bins, preds.video_of)

    return scored, write


def write_predictions(path, preds: SplitPredictions, data: GroundingDataset) -> None:
    """Ego4D challenge layout for Ego4D-format datasets, the generic layout otherwise (atomic)."""
    from hieramamba.evaluation import write_ego4d_predictions, write_generic_predictions

    rows = {q: r for q, r in preds.rows.items() if r}
    if data.config.get("format") == "ego4d_nlq":
        ident = {q: (preds.identity[q]["clip_uid"], preds.identity[q]["annotation_uid"], preds.identity[q]["query_idx"]) for q in rows}
        write_ego4d_predictions(path, rows, ident)
    else:
        write_generic_predictions(path, data.name, rows, {q: preds.video_of[q] for q in rows})
