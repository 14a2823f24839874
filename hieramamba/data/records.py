"""The one internal representation every reader produces.

dataset -> splits -> videos -> queries. Times are seconds (video-relative; Ego4D: clip-relative),
features are reached through lazy handles so that nothing is read before it is needed.

Identity of the source records is kept end to end in `Query.identity` (Ego4D: clip_uid,
annotation_uid, query_idx; MAD: annotation_id; TACoS: video key and sentence index) so that
predictions can be written back in each dataset's official format.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Protocol

import numpy as np

from hieramamba.errors import DataError

PLAIN = "plain"


class FeatureHandle(Protocol):
    """Where one video's features live; nothing is read until `load()`."""

    path: str  # file holding the features (for messages)

    def exists(self) -> bool: ...

    def shape(self) -> tuple[int, ...]:
        """Stored shape, read without loading the array where the format allows it."""
        ...

    def load(self) -> np.ndarray:
        """The stored array, float32 (T, C)."""
        ...


@dataclass
class Query:
    query_id: str
    video_id: str
    sentence: str  # stripped
    segment: tuple[float, float] | None  # seconds, clamped to [0, duration]; None: unannotated test
    kind: str = PLAIN  # planted query kind (synthetic benchmark), "plain" otherwise
    index: int = 0  # position in the source list of its video (before any filtering)
    identity: dict[str, Any] = field(default_factory=dict)  # dataset-specific ids

    @property
    def annotated(self) -> bool:
        return self.segment is not None


@dataclass
class Video:
    video_id: str
    duration: float  # seconds
    fps: float  # frame rate of the frame grid the features were cut from
    num_frames: int  # frames of that grid (targets are clamped to it)
    num_clips: int | None = None  # stored feature vectors before down-sampling, when the source says
    feature: FeatureHandle | None = None
    queries: list[Query] = field(default_factory=list)
    identity: dict[str, Any] = field(default_factory=dict)

    def segments(self) -> np.ndarray:
        """(n, 2) float64 seconds of the annotated queries, in query order."""
        segs = [q.segment for q in self.queries if q.segment is not None]
        return np.asarray(segs, dtype=np.float64).reshape(-1, 2)


@dataclass
class QuirkCounter:
    """Known quirks of real data, counted per split; each one follows the reference protocol."""

    counts: dict[str, Counter] = field(default_factory=dict)  # split -> quirk -> n
    examples: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # first few record ids

    def add(self, split: str, quirk: str, record: object, n: int = 1, max_examples: int = 5) -> None:
        self.counts.setdefault(split, Counter())[quirk] += n
        ex = self.examples.setdefault(split, {}).setdefault(quirk, [])
        if len(ex) < max_examples:
            ex.append(str(record))

    def get(self, split: str, quirk: str) -> int:
        return int(self.counts.get(split, Counter()).get(quirk, 0))

    def as_dict(self) -> dict[str, dict[str, int]]:
        return {s: dict(sorted(c.items())) for s, c in self.counts.items()}


# Quirks that follow the reference protocol (description used in the data report). Strict mode
# turns every one of them into an error.
QUIRKS: dict[str, str] = {
    "zero_length_dropped": "zero-length window (end == start) after clamping: dropped (SnAG/HieraMamba)",
    "reversed_dropped": "reversed window (end < start): dropped (SnAG/HieraMamba)",
    "empty_query_dropped": "empty query text: dropped (official Ego4D prep, SnAG/HieraMamba)",
    "end_past_video_clamped": "end past the end of the video: clamped to the duration",
    "start_before_zero_clamped": "start before 0: clamped to 0",
    "start_past_video_dropped": "start at or past the end of the video: dropped after clamping",
    "exact_duplicate_kept": "exact duplicate (same video, window, sentence): kept (every entry is evaluated)",
    "whitespace_stripped": "leading/trailing whitespace in the sentence: stripped",
    "video_without_queries": "video with no usable query: skipped (SnAG/HieraMamba)",
    "duplicate_json_key_dropped": "the same key twice in one JSON object: the earlier value is lost, the last kept "
                                  "(as Python's json, and so the authors' loaders, do)",
}


@dataclass
class Split:
    name: str
    videos: dict[str, Video] = field(default_factory=dict)
    source: str = ""  # annotation file of this split

    def queries(self) -> Iterator[Query]:
        for v in self.videos.values():
            yield from v.queries

    @property
    def num_queries(self) -> int:
        return sum(len(v.queries) for v in self.videos.values())

    def query(self, query_id: str) -> Query:
        for q in self.queries():
            if q.query_id == query_id:
                return q
        raise KeyError(query_id)


@dataclass
class DatasetRecords:
    name: str
    format: str
    splits: dict[str, Split] = field(default_factory=dict)
    quirks: QuirkCounter = field(default_factory=QuirkCounter)

    def split(self, name: str) -> Split:
        if name not in self.splits:
            raise DataError(self.name, f"split {name!r} not found; available: {sorted(self.splits)}")
        return self.splits[name]

    def video(self, video_id: str) -> Video:
        for s in self.splits.values():
            if video_id in s.videos:
                return s.videos[video_id]
        raise KeyError(video_id)


def count_exact_duplicates(split: Split, quirks: QuirkCounter, raw: dict[str, list[tuple]] | None = None) -> None:
    """Count exact (window, sentence) duplicates inside each video (kept, counted).

    `raw` maps video id -> list of hashable source keys (raw window + raw sentence) when the reader
    wants duplicates counted on the source values; otherwise the parsed queries are used.
    """
    for vid, video in split.videos.items():
        keys = raw[vid] if raw is not None and vid in raw else [(q.segment, q.sentence) for q in video.queries]
        for key, n in Counter(keys).items():
            if n > 1:
                quirks.add(split.name, "exact_duplicate_kept", f"{vid}: {key}", n=n - 1)


def load_query_kinds(path: str | Path | None) -> dict[str, str]:
    """The optional sidecar {query_id: kind} written by the synthetic generator ({} when absent)."""
    if path is None:
        return {}
    path = Path(path)
    if not path.is_file():
        return {}
    from hieramamba.data.jsonfile import read_json  # lazy: records.py stays free of file formats

    kinds = read_json(path)  # a duplicate query id is an error here: the file is generated, never hand-made
    if not isinstance(kinds, dict) or not all(isinstance(v, str) for v in kinds.values()):
        raise DataError(path, "query-kinds file must be a JSON object {query_id: kind (str)}")
    return {str(k): v for k, v in kinds.items()}


def apply_query_kinds(records: DatasetRecords, kinds: dict[str, str]) -> None:
    for split in records.splits.values():
        for q in split.queries():
            kind = kinds.get(q.query_id)
            if kind is None and "alt_query_id" in q.identity:  # e.g. TACoS ids without ".avi"
                kind = kinds.get(q.identity["alt_query_id"])
            q.kind = kind or PLAIN
