"""Ask a trained model where in one video each query happens: `hieramamba.predict(...)`.

The evaluation's code path, called, not copied: the video's features are checked and sub-sampled
as the dataset reader does (`checked_video_features`), padded whole to a multiple of the coarsest
stride (`eval_video_batch`: no sliding window, so a 2-hour MAD movie is one call), the queries go
through the model `eval.query_chunk` at a time and are post-processed (`predict_video`: pre-NMS
top-k, soft-NMS, voting, with the run's `eval.*` settings), and grid units become seconds with the
dataset's grid (`grid_to_seconds`). On an evaluation video with its duration, the answer is the
one `evaluate` wrote to predictions.json.

Query text is encoded the way the model's dataset does it: GloVe word vectors from the user's
GloVe file (TACoS-style models; words GloVe lacks embed to zero, as in training, and are counted),
or precomputed token features `(t, C)` from a `.npy` / `.pt` file per query (Ego4D / MAD-style).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hieramamba.engine.loading import LoadedModel, load_model
from hieramamba.errors import ConfigError, DataError

H5_SUFFIXES = (".h5", ".hdf5")
Row = tuple[float, float, float]


@dataclass
class QueryPrediction:
    """One query's answer: `moments` [(start_s, end_s, score)] ranked by score (at most top_k)."""

    query_id: str
    query: str
    moments: list[Row]
    unknown_words: list[str] = field(default_factory=list)  # GloVe models: words GloVe lacks
    ground_truth: tuple[float, float] | None = None  # when the query came with a segment


@dataclass
class VideoPrediction:
    """All queries' answers on one video, and the facts needed to read them."""

    model: str
    video: str
    duration_s: float
    fps: float
    num_features: int  # feature steps the model saw (after down-sampling)
    queries: list[QueryPrediction]
    video_key: str | None = None  # the dataset inside an h5 feature file

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model, "video": self.video, "video_key": self.video_key, "duration_s": self.duration_s, "fps": self.fps,
            "num_features": self.num_features,
            "queries": [{"query_id": q.query_id, "query": q.query,
                         "moments": [[s, e, c] for s, e, c in q.moments],
                         "n_unknown_words": len(q.unknown_words), "unknown_words": q.unknown_words,
                         "ground_truth": None if q.ground_truth is None else list(q.ground_truth)}
                        for q in self.queries],
        }

    def table(self) -> str:
        """The answers as a plain-text table (one row per moment) for a terminal."""
        name = self.video + (f" [{self.video_key}]" if self.video_key else "")
        lines = [f"{name}: {self.duration_s:.1f} s, {self.num_features} feature steps ({self.model})"]
        for q in self.queries:
            gt = "" if q.ground_truth is None else f"   ground truth {q.ground_truth[0]:.1f}-{q.ground_truth[1]:.1f} s"
            lines.append(f"\n[{q.query_id}] {q.query}{gt}")
            if q.unknown_words:
                lines.append(f"  {len(q.unknown_words)} word(s) not in GloVe (zero vectors): {', '.join(q.unknown_words)}")
            lines.append(f"  {'rank':>4}  {'start_s':>9}  {'end_s':>9}  {'score':>7}")
            for rank, (s, e, c) in enumerate(q.moments, 1):
                lines.append(f"  {rank:>4}  {s:>9.2f}  {e:>9.2f}  {c:>7.4f}")
            if not q.moments:
                lines.append("  (no moment above the score threshold)")
        return "\n".join(lines)


# ---------------------------------------------------------------- inputs


def read_video_features(path: str | Path, key: str | None = None) -> np.ndarray:
    """Stored (T, C) float32 features of one video: a `.npy` / `.pt` file, or one dataset of an h5
    file (`key`; may be left out when the file holds exactly one dataset)."""
    from hieramamba.data.features import FileFeature, H5Feature

    path = Path(path)
    if not path.is_file():
        raise DataError(path, "video feature file not found")
    if path.suffix in H5_SUFFIXES:
        if key is None:
            import h5py

            with h5py.File(path, "r") as f:
                names = [k for k in f.keys() if isinstance(f[k], h5py.Dataset)]
            if len(names) != 1:
                raise DataError(path, f"{len(names)} datasets in the h5 file (e.g. {names[:3]}); name one with "
                                "--video-key / video_key=")
            key = names[0]
        return H5Feature(str(path), key).load()
    if key is not None:
        raise ConfigError(f"--video-key / video_key={key!r} is for h5 files; {path} is a {path.suffix} file")
    if path.suffix not in (".npy", ".pt"):
        raise DataError(path, "unknown video feature file type; expected .npy, .pt, .h5 or .hdf5")
    return FileFeature(str(path)).load()


def read_queries_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """One JSON object per line: {"query": text, optional "query_id", "text_features" (a file,
    relative to the JSONL's folder), "segment": [start_s, end_s] (ground truth, drawn by --plot)}."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "queries file not found")
    out = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(path, f"line {lineno}: not JSON ({exc.msg})") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("query"), str):
            raise DataError(path, f"line {lineno}: expected an object with a \"query\" string")
        seg = obj.get("segment")
        if seg is not None and not (isinstance(seg, list) and len(seg) == 2 and all(isinstance(x, (int, float)) for x in seg)):
            raise DataError(path, f"line {lineno}: \"segment\" must be [start_s, end_s]", record=obj.get("query_id"))
        if obj.get("text_features") is not None:
            obj["text_features"] = str(path.parent / obj["text_features"])
        obj.setdefault("query_id", f"q{len(out)}")
        obj["_where"] = f"{path}:{lineno}"
        out.append(obj)
    if not out:
        raise DataError(path, "no queries in the file")
    return out


def _as_query_dicts(queries, text_features) -> list[dict[str, Any]]:
    """str | [str | dict] (+ a parallel list of token-feature files) -> query dicts."""
    if isinstance(queries, str):
        queries = [queries]
    queries = list(queries)
    if not queries:
        raise ConfigError("no query given (--query TEXT or --queries FILE.jsonl)")
    files = [text_features] if isinstance(text_features, (str, Path)) else list(text_features or [])
    if files and len(files) != len(queries):
        raise ConfigError(f"{len(files)} text feature file(s) for {len(queries)} queries: give one per query")
    out = []
    for i, q in enumerate(queries):
        d = dict(q) if isinstance(q, dict) else {"query": q}
        if not isinstance(d.get("query"), str):
            raise ConfigError(f"query #{i + 1}: expected text, got {d.get('query')!r}")
        d.setdefault("query_id", f"q{i}")
        d.setdefault("_where", f"query #{i + 1}")
        if files:
            d["text_features"] = str(files[i])
        out.append(d)
    return out


def _encode_queries(loaded: LoadedModel, queries: list[dict], glove: str | Path | None) -> tuple[list[np.ndarray], list[list[str]]]:
    """Per query (t, C) token features and the words GloVe lacks (checked as the dataset does)."""
    from hieramamba.data.dataset import checked_text_features
    from hieramamba.data.features import load_array_file, to_float32_2d
    from hieramamba.data.text import GloVe, tokenize

    for q in queries:
        if not tokenize(q["query"]):
            raise DataError(q["_where"], "empty query: no words to look for", record=q["query_id"])
    need_glove = [q for q in queries if q.get("text_features") is None]
    vectors = None
    if need_glove:
        glove = glove if glove is not None else loaded.cfg.dataset.get("glove")
        if glove is None:
            raise ConfigError(f"{loaded.source}: no token features for {need_glove[0]['_where']}: pass --glove FILE "
                              "(TACoS-style models) or --text-features FILE per query (Ego4D / MAD-style models)")
        vectors = GloVe(glove, vocab={w for q in need_glove for w in tokenize(q["query"])})
    texts, unknown = [], []
    for q in queries:
        if q.get("text_features") is not None:
            path = q["text_features"]
            feats, missing = to_float32_2d(load_array_file(path, q["query_id"]), path, q["query_id"]), []
        else:
            path = vectors.path
            feats, missing = vectors.embed(q["query"]), vectors.unknown_words(q["query"])
        texts.append(checked_text_features(feats, path, q["query"], q["query_id"], loaded.parts.text_dim))
        unknown.append(missing)
    return texts, unknown


# ---------------------------------------------------------------- the call


def predict(
    model: str | Path | LoadedModel,
    video: str | Path | np.ndarray,
    queries,
    *,
    top_k: int = 5,
    glove: str | Path | None = None,
    text_features=None,
    video_key: str | None = None,
    duration: float | None = None,
    fps: float | None = None,
    overrides: list[str] | None = None,
    device: str | torch.device | None = None,
) -> VideoPrediction:
    """Top-`top_k` moments `(start_s, end_s, score)` of each query in one video.

    model: a run directory, a checkpoint file (ours, or an authors' last.pth with `overrides` such
    as ["dataset=tacos", "scale=paper"]) or a `load_model` result (to load once, ask many times).
    video: stored features (T, C) as an array, or a `.npy` / `.pt` / h5 file (`video_key`: the
    dataset in the h5). queries: a text, or a list of texts or dicts {"query", "query_id",
    "text_features", "segment"} (`read_queries_jsonl`). text_features: one `(t, C)` token-feature
    file per query for models whose dataset uses precomputed text features; glove: the GloVe
    file for GloVe models (default: the run's `dataset.glove`). duration: seconds (default: what
    the features cover, ((T - 1) * clip_stride + clip_size) / fps); fps: of the frame grid the
    features were cut from (default: the dataset config's `features.fps`).
    """
    from hieramamba.data.dataset import VideoSample, checked_video_features
    from hieramamba.data.features import to_float32_2d
    from hieramamba.data.grid import grid_to_seconds
    from hieramamba.engine.batching import eval_video_batch
    from hieramamba.engine.inference import eval_truncates_text, postprocess_config, predict_video, query_chunk

    if int(top_k) < 1:
        raise ConfigError(f"top_k must be >= 1, got {top_k}")
    if isinstance(model, LoadedModel) and (overrides or device is not None):
        raise ConfigError("overrides= and device= apply when loading: pass them to load_model, not with a loaded model")
    loaded = model if isinstance(model, LoadedModel) else load_model(model, overrides, device)
    qs = _as_query_dicts(queries, text_features)
    name = "<array>" if isinstance(video, np.ndarray) else str(video)
    stored = to_float32_2d(video, name) if isinstance(video, np.ndarray) else read_video_features(video, video_key)
    grid, parts = loaded.grid, loaded.parts
    feats = checked_video_features(stored, name, video_key, parts.video_dim, grid)  # (T, C) as the model sees it
    if fps is None:
        if grid.fps is None:
            raise ConfigError(f"{loaded.source}: the dataset config's features.fps is null; pass --fps / fps=")
        fps = grid.fps
    if not float(fps) > 0:
        raise ConfigError(f"fps must be positive, got {fps}")
    fps = float(fps)
    if duration is None:
        duration = ((len(stored) - 1) * float(grid.clip_stride) + float(grid.clip_size)) / fps
    if not duration > 0:
        raise ConfigError(f"duration must be positive, got {duration}")
    texts, unknown = _encode_queries(loaded, qs, glove)
    if parts.max_text_len is not None and eval_truncates_text(loaded.cfg):  # as the evaluation feeds them
        texts = [t[: parts.max_text_len] for t in texts]

    sample = VideoSample(video_id=name, video=feats, texts=texts, targets=np.zeros((0, 2)), segments=np.zeros((0, 2)),
                         query_ids=[q["query_id"] for q in qs], kinds=["plain"] * len(qs), duration=float(duration),
                         fps=fps, num_frames=int(round(duration * fps)), crop=(0, len(feats)))
    batch = eval_video_batch(sample, parts.pad_multiple, parts.vid_stride).to(loaded.device)
    eval_cfg = loaded.cfg.eval
    # soft-NMS picks greedily, so keeping more segments leaves the first max_num_segs as they were
    pp = postprocess_config(eval_cfg)
    pp = dataclasses.replace(pp, max_num_segs=max(pp.max_num_segs, int(top_k)))
    autocast = bool(loaded.cfg.train.get("bf16", False)) and loaded.device.type == "cuda"
    per_query = predict_video(parts.model, batch, points_for=parts.points_for, pp=pp, chunk=query_chunk(eval_cfg),
                              device=loaded.device, autocast=autocast)
    answers = []
    for q, missing, (segs, scores) in zip(qs, unknown, per_query):
        secs = grid_to_seconds(segs.double().numpy(), fps, duration, grid, parts.vid_stride) if len(segs) else np.zeros((0, 2))
        rows = [(float(s), float(e), float(c)) for (s, e), c in zip(secs, scores.tolist())][: int(top_k)]
        seg = q.get("segment")
        answers.append(QueryPrediction(str(q["query_id"]), q["query"], rows, missing,
                                       None if seg is None else (float(seg[0]), float(seg[1]))))
    return VideoPrediction(model=loaded.source, video=name, duration_s=float(duration), fps=fps,
                           num_features=int(len(feats)), queries=answers, video_key=video_key)
