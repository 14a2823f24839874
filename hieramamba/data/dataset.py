"""A grounding dataset built from a config (a `hieramamba/conf/dataset/*.yaml` or a dict).

Config keys (every reader):

    name: tacos
    format: tacos            # ego4d_nlq | mad | tacos | snag
    root: null               # the dataset folder; the path keys below default to ${.root}/...
    annotations: ${.root}    # directory of the split files (ego4d_nlq, mad, tacos) or the JSON (snag)
    video_features: ...      # directory / h5 file (or a list of dirs for snag); null: not checked
    text_features: ...       # directory / dict .pt|.npy / h5; null when glove is used
    glove: ...               # glove.*.txt (tacos; snag with a GloVe tokenizer)
    query_kinds: ...         # optional {query_id: kind} sidecar (synthetic benchmark)
    features:
      fps: 29.4              # frame grid the features were cut from (when the annotation lacks it)
      clip_size: 16
      clip_stride: 4
      downsample_rate: 4
      video_dim: 4096        # optional: checked when given
      text_dim: 300          # optional: checked when given
      layout: per_clip       # ego4d_nlq only: per_clip | per_video (official <video_uid>.pt, cut at 1.875/s)
    splits: {train: ..., val: ..., test: ...}   # optional: our split name -> file (or JSON key for snag)
    eval_split: test
    protocol: snag           # snag | official

A path written `${.root}/...` becomes null when `root` is null.
`${data_root}` in a path is interpolated from the composed run config, or from `data_root=` /
`$HIERAMAMBA_DATA_ROOT` (default `data`) when a dataset YAML is loaded on its own.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hieramamba.data.grid import FeatureGrid, grid_to_seconds, seconds_to_grid
from hieramamba.data.records import DatasetRecords, Query, Split, Video, apply_query_kinds, load_query_kinds
from hieramamba.data.sampling import CropError, Sample, eval_samples, random_crop, train_samples
from hieramamba.data.text import make_text_source, tokenize
from hieramamba.errors import ConfigError, DataError

CONF_DIR = Path(__file__).resolve().parents[1] / "conf" / "dataset"
FORMATS = ("ego4d_nlq", "mad", "tacos", "snag")
PROTOCOLS = ("snag", "official")


PATH_KEYS = ("annotations", "video_features", "text_features", "glove", "query_kinds")


def parse_override(text: str) -> tuple[str, Any]:
    """`key=value` -> (key, YAML-parsed value)."""
    import yaml

    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {text!r}: expected key=value")
    try:
        return key.strip(), yaml.safe_load(value) if value != "" else None
    except yaml.YAMLError:
        return key.strip(), value


def load_dataset_config(spec: Any, data_root: str | Path | None = None, overrides: dict[str, Any] | None = None) -> dict:
    """A plain dict from a dataset name (conf/dataset/<name>.yaml), a YAML path, a dict or a
    DictConfig (a node of a composed run config resolves against its own root).

    `overrides` ({dotted key: value}, e.g. {"root": "results/data/synth_tacos"}) apply before
    interpolation. Paths written as `${.root}/...` become null when `root` is null.
    """
    from omegaconf import DictConfig, OmegaConf

    if data_root is None:
        data_root = os.environ.get("HIERAMAMBA_DATA_ROOT", "data")
    source = "<config>"
    if isinstance(spec, DictConfig) and spec._get_parent() is not None:
        node = spec
        if overrides:
            node = OmegaConf.create(OmegaConf.to_container(spec, resolve=True))
    else:
        if isinstance(spec, (dict, DictConfig)):
            raw = spec if isinstance(spec, dict) else OmegaConf.to_container(spec)
            loaded = OmegaConf.create(raw)
        else:
            path = Path(spec)
            if not path.is_file():
                named = CONF_DIR / f"{spec}.yaml"
                if not named.is_file():
                    known = sorted(p.stem for p in CONF_DIR.glob("*.yaml"))
                    raise ConfigError(f"dataset {str(spec)!r}: neither a YAML file nor one of {known}")
                path = named
            try:
                loaded = OmegaConf.load(path)
            except Exception as exc:  # noqa: BLE001 - unreadable / malformed YAML
                raise DataError(path, f"unreadable dataset config: {exc}") from None
            source = str(path)
        node = OmegaConf.create({"data_root": str(data_root), "dataset": loaded}).dataset
    for key, value in (overrides or {}).items():
        OmegaConf.update(node, key, value, merge=True)
    try:
        raw = OmegaConf.to_container(node, resolve=False)
        root = node.get("root")
        cfg = OmegaConf.to_container(node, resolve=True)
    except Exception as exc:  # noqa: BLE001 - bad interpolation
        raise DataError(source, f"cannot resolve the dataset config: {exc}") from None
    if root is None:
        for key in PATH_KEYS:
            if isinstance(raw.get(key), str) and "${.root}" in raw[key]:
                cfg[key] = None
    cfg.setdefault("_source", source)
    return cfg


def grid_from_config(features: dict, where: str) -> FeatureGrid:
    """The dataset's `features:` mapping -> FeatureGrid, or a ConfigError naming the key."""
    try:
        return FeatureGrid(
            fps=features.get("fps"),
            clip_size=features["clip_size"],
            clip_stride=features["clip_stride"],
            downsample_rate=features.get("downsample_rate", 1),
        )
    except KeyError as exc:
        raise ConfigError(f"{where}: features.{exc.args[0]} is required") from None
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def checked_video_features(feats: np.ndarray, path: object, record: object, video_dim: int | None,
                           grid: FeatureGrid) -> np.ndarray:
    """Stored (T_stored, C) features -> the (T, C) the model sees (every `downsample_rate`-th row),
    after checking they are non-empty, `video_dim` wide (when given) and finite."""
    if len(feats) == 0:
        raise DataError(path, "empty feature array", record=record)
    if video_dim is not None and feats.shape[1] != video_dim:
        raise DataError(path, f"feature dimension {feats.shape[1]}, expected {video_dim}", record=record)
    if not np.isfinite(feats).all():
        bad = int((~np.isfinite(feats)).any(axis=1).sum())
        raise DataError(path, f"NaN/Inf in {bad} feature rows", record=record)
    ds = grid.downsample_rate
    return np.ascontiguousarray(feats[::ds]) if ds > 1 else feats


def checked_text_features(feats: np.ndarray, where: object, sentence: str, record: object,
                          text_dim: int | None) -> np.ndarray:
    """A query's (t, C) token features, checked: at least one token, `text_dim` wide, finite."""
    if len(feats) == 0:
        raise DataError(where, f"no tokens for the sentence {sentence!r}", record=record)
    if text_dim is not None and feats.shape[1] != text_dim:
        raise DataError(where, f"text feature dimension {feats.shape[1]}, expected {text_dim}", record=record)
    if not np.isfinite(feats).all():
        raise DataError(where, "NaN/Inf in the text features", record=record)
    return feats


def _require(cfg: dict, key: str, where: str) -> Any:
    value = cfg.get(key)
    if value is None:
        raise ConfigError(f"{where}: {key} is not set (null); set root (or {key}) to your copy of the data")
    return value


@dataclass
class VideoSample:
    """What the engine needs for one video-centric sample. Shapes: channels-last numpy."""

    video_id: str
    video: np.ndarray  # (T, C) float32 (cropped in training)
    texts: list[np.ndarray]  # per query (t_i, C_t) float32
    targets: np.ndarray  # (n, 2) float64, feature-grid units (relative to the crop start); NaN: unannotated
    segments: np.ndarray  # (n, 2) float64 seconds (uncropped ground truth); NaN: unannotated
    query_ids: list[str]
    kinds: list[str]
    duration: float
    fps: float
    num_frames: int
    crop: tuple[int, int]  # (ws, we) feature rows of the crop in the full video
    queries: list[Query] = field(default_factory=list)


class GroundingDataset:
    """Readers' records + lazy features + the grid, behind one interface for the engine."""

    def __init__(
        self,
        records: DatasetRecords,
        grid: FeatureGrid,
        text_source=None,
        *,
        eval_split: str = "test",
        protocol: str = "snag",
        video_dim: int | None = None,
        text_dim: int | None = None,
        config: dict | None = None,
    ):
        self.records = records
        self.grid = grid
        self.text_source = text_source
        self.eval_split = eval_split
        self.protocol = protocol
        self.video_dim = video_dim
        self.text_dim = text_dim
        self.config = config or {}
        self.name = records.name
        self._videos: dict[str, Video] = {}
        for split in records.splits.values():
            seen: set[str] = set()
            for vid, video in split.videos.items():
                self._videos.setdefault(vid, video)
                for q in video.queries:
                    if q.query_id in seen:
                        raise DataError(split.source, "query id appears twice in the split", record=q.query_id)
                    seen.add(q.query_id)

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_config(cls, spec: Any, data_root: str | Path | None = None, overrides: dict[str, Any] | None = None) -> "GroundingDataset":
        cfg = load_dataset_config(spec, data_root, overrides)
        where = f"dataset {cfg.get('name', '?')!r} ({cfg.get('_source', '<config>')})"
        fmt = cfg.get("format")
        if fmt not in FORMATS:
            raise ConfigError(f"{where}: format must be one of {FORMATS}, got {fmt!r}")
        protocol = cfg.get("protocol", "snag")
        if protocol not in PROTOCOLS:
            raise ConfigError(f"{where}: protocol must be one of {PROTOCOLS}, got {protocol!r}")
        feats = dict(cfg.get("features") or {})
        grid = grid_from_config(feats, where)
        paths = {k: cfg.get(k) for k in PATH_KEYS}
        ann = _require(cfg, "annotations", where)
        vfeat = paths.get("video_features")
        splits = cfg.get("splits")
        name = cfg.get("name", fmt)
        if fmt == "tacos":
            from hieramamba.data.tacos import read_tacos

            records = read_tacos(ann, vfeat, splits=splits, name=name)
        elif fmt == "ego4d_nlq":
            from hieramamba.data.ego4d import CANONICAL_FPS, read_ego4d

            records = read_ego4d(ann, vfeat, layout=feats.get("layout", "per_clip"), splits=splits, fps=feats.get("fps") or CANONICAL_FPS, name=name)
        elif fmt == "mad":
            from hieramamba.data.mad import FPS, read_mad

            records = read_mad(ann, vfeat, splits=splits, fps=feats.get("fps") or FPS, name=name)
        else:
            from hieramamba.data.snag_format import read_snag

            records = read_snag(ann, vfeat, splits=splits, name=name)
        apply_query_kinds(records, load_query_kinds(paths.get("query_kinds")))
        vocab = None
        if paths.get("glove") is not None:
            vocab = {w for s in records.splits.values() for q in s.queries() for w in tokenize(q.sentence)}
        text_source = make_text_source(paths.get("text_features"), paths.get("glove"), stem_of=lambda q: q.query_id, vocab=vocab)
        eval_split = cfg.get("eval_split", "test")
        if eval_split not in records.splits:
            raise ConfigError(f"{where}: eval_split {eval_split!r} is not one of the read splits {sorted(records.splits)}")
        return cls(
            records,
            grid,
            text_source,
            eval_split=eval_split,
            protocol=protocol,
            video_dim=feats.get("video_dim"),
            text_dim=feats.get("text_dim"),
            config=cfg,
        )

    # ---------------------------------------------------------------- records
    def split(self, name: str) -> Split:
        return self.records.split(name)

    def video(self, video_id: str, split: str | None = None) -> Video:
        """The video record (of `split` when given: a video id may occur in several splits)."""
        if split is not None:
            videos = self.split(split).videos
            if video_id not in videos:
                raise KeyError(f"video {video_id!r} not in split {split!r} of dataset {self.name!r}")
            return videos[video_id]
        try:
            return self._videos[video_id]
        except KeyError:
            raise KeyError(f"video {video_id!r} not in dataset {self.name!r}") from None

    # ---------------------------------------------------------------- features
    def load_video_features(self, video_id: str) -> np.ndarray:
        """(T, C) float32 after down-sampling (every `downsample_rate`-th stored row)."""
        video = self.video(video_id)
        if video.feature is None:
            raise DataError(self.config.get("_source", self.name), "no video features configured (video_features)", record=video_id)
        return checked_video_features(video.feature.load(), video.feature.path, video_id, self.video_dim, self.grid)

    def load_text_features(self, query: Query | str, split: str | None = None) -> np.ndarray:
        """(t, C) float32 token features of one query (a Query, or a query id looked up in `split`)."""
        if isinstance(query, str):
            query = self.records.split(split or self.eval_split).query(query)
        if self.text_source is None:
            raise DataError(self.config.get("_source", self.name), "no text features configured (text_features or glove)", record=query.query_id)
        feats = self.text_source.load(query)
        return checked_text_features(feats, self.text_source.locate(query), query.sentence, query.query_id, self.text_dim)

    # ---------------------------------------------------------------- grid
    def targets(self, video_id: str, query_indices=None, split: str | None = None) -> np.ndarray:
        """(n, 2) float64 ground truth of a video's queries in feature-grid units."""
        video = self.video(video_id, split)
        qs = video.queries if query_indices is None else [video.queries[i] for i in query_indices]
        segs = np.asarray([q.segment for q in qs], dtype=np.float64).reshape(-1, 2)
        return seconds_to_grid(segs, video.fps, video.num_frames, self.grid)

    def to_seconds(self, video_id: str, g, vid_stride: int = 1, split: str | None = None) -> np.ndarray:
        """Model-grid units (feature grid / vid_stride) -> seconds, clamped to the video."""
        video = self.video(video_id, split)
        return grid_to_seconds(g, video.fps, video.duration, self.grid, vid_stride)

    # ---------------------------------------------------------------- sampling
    def train_samples(self, rng: np.random.Generator, max_vid_len: int, max_num_text: int | None, crop_ratio=None, split: str = "train") -> list[Sample]:
        return train_samples(self.split(split), self.grid, max_vid_len, max_num_text, rng, crop_ratio)

    def eval_samples(self, split: str | None = None) -> list[Sample]:
        return eval_samples(self.split(split or self.eval_split))

    def load_sample(
        self,
        sample: Sample,
        *,
        train: bool = False,
        rng: np.random.Generator | None = None,
        max_vid_len: int | None = None,
        crop_ratio=None,
        trunc_thresh: float = 0.5,
        max_text_len: int | None = None,
    ) -> VideoSample:
        """Features, text and targets of one sample; in training, the SnAG random crop."""
        video = self.video(sample.video_id, sample.split)
        queries = [video.queries[i] for i in sample.query_indices]
        feats = self.load_video_features(video.video_id)
        # unannotated queries (Ego4D test) have NaN segments and targets
        segs = np.asarray([q.segment if q.segment is not None else (np.nan, np.nan) for q in queries], dtype=np.float64).reshape(-1, 2)
        targets = seconds_to_grid(segs, video.fps, video.num_frames, self.grid)
        if train and np.isnan(segs).any():
            raise DataError(self.config.get("_source", self.name), "training sample with unannotated queries", record=video.video_id)
        ws, we = 0, len(feats)
        if train:
            if rng is None or max_vid_len is None:
                raise ValueError("training samples need rng and max_vid_len")
            try:
                ws, we, targets = random_crop(len(feats), targets, max_vid_len, rng, crop_ratio, trunc_thresh, self.grid.offset)
            except CropError as exc:
                raise DataError(video.feature.path, str(exc), record=video.video_id) from None
            feats = feats[ws:we]
        texts = [self.load_text_features(q) for q in queries]
        if max_text_len is not None:  # training always; evaluation unless eval.truncate_text=false
            texts = [t[:max_text_len] for t in texts]
        return VideoSample(
            video_id=video.video_id,
            video=feats,
            texts=texts,
            targets=targets,
            segments=segs,
            query_ids=[q.query_id for q in queries],
            kinds=[q.kind for q in queries],
            duration=video.duration,
            fps=video.fps,
            num_frames=video.num_frames,
            crop=(ws, we),
            queries=queries,
        )


def build_dataset(spec: Any, data_root: str | Path | None = None, overrides: dict[str, Any] | None = None) -> GroundingDataset:
    """Shorthand for `GroundingDataset.from_config`."""
    return GroundingDataset.from_config(spec, data_root, overrides)
