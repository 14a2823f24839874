"""Ego4D-NLQ in the official release: `nlq_{train,val}.json`, `nlq_test_unannotated.json` (v1, v2).

videos -> clips -> annotations -> language_queries. Grounding is inside a clip; targets are the
query's `clip_start_sec` / `clip_end_sec` (clip-relative seconds, the fields the official
evaluator reads). Query identity (clip_uid, annotation_uid, query_idx) is kept end to end;
query_idx is the position in `language_queries` before any filtering, and the query id is
`{clip_uid}_{annotation_uid}_{query_idx}` (also the per-query text feature file stem).

Known quirks (counted, never silent): empty or missing query text (dropped, as the official prep
and SnAG/HieraMamba), zero-length windows (dropped, SnAG/HieraMamba), windows outside the clip
(clamped). The test file carries only `{"query": ...}`: its queries have `segment=None`.

Video features:
- `per_clip`: `<dir>/<clip_uid>.pt|.npy` (EgoVLP 256-d, or SnAG's processed features);
- `per_video`: official `<dir>/<video_uid>.pt` (SlowFast 2304-d, 1.875 feat/s) cut into clips as the
  official NLQ preparation does: rows s..e inclusive, s = int(video_start_sec * 1.875),
  e = int(video_end_sec * 1.875).
"""

from __future__ import annotations

from pathlib import Path

from hieramamba.data.common import accept_query, count_duplicate_keys, field, number, read_json
from hieramamba.data.features import FileFeature, SlicedFeature, find_array_file
from hieramamba.data.records import DatasetRecords, Query, Split, Video, count_exact_duplicates
from hieramamba.errors import DataError

SPLIT_FILES = {"train": "nlq_train.json", "val": "nlq_val.json", "test": "nlq_test_unannotated.json"}
CANONICAL_FPS = 30.0
OFFICIAL_FEATURES_PER_SECOND = 30.0 / 16.0  # 1.875: official SlowFast/Omnivore, 32-frame window, stride 16


def official_clip_rows(video_start_sec: float, video_end_sec: float, rate: float = OFFICIAL_FEATURES_PER_SECOND) -> tuple[int, int]:
    """Rows (s, e), inclusive, of a per-video feature that the official prep assigns to a clip."""
    return int(video_start_sec * rate), int(video_end_sec * rate)


def query_id_of(clip_uid: str, annotation_uid: str, query_idx: int) -> str:
    return f"{clip_uid}_{annotation_uid}_{query_idx}"


class Ego4DFeatures:
    def __init__(self, location: str | Path, layout: str = "per_clip", rate: float = OFFICIAL_FEATURES_PER_SECOND):
        self.location = Path(location)
        if not self.location.is_dir():
            raise DataError(self.location, "video feature directory not found")
        if layout not in ("per_clip", "per_video"):
            raise DataError(self.location, f"unknown Ego4D feature layout {layout!r} (per_clip | per_video)")
        self.layout = layout
        self.rate = rate

    def handle(self, clip_uid: str, video_uid: str, video_start_sec: float | None, video_end_sec: float | None, path: Path):
        if self.layout == "per_clip":
            found = find_array_file(self.location, clip_uid)
            return FileFeature(str(found if found is not None else self.location / f"{clip_uid}.pt"), record=clip_uid)
        if video_start_sec is None or video_end_sec is None:
            raise DataError(path, "per-video features need the clip's video_start_sec and video_end_sec", record=clip_uid)
        found = find_array_file(self.location, video_uid)
        base = FileFeature(str(found if found is not None else self.location / f"{video_uid}.pt"), record=video_uid)
        s, e = official_clip_rows(video_start_sec, video_end_sec, self.rate)
        return SlicedFeature(base, s, e, record=clip_uid)


def read_ego4d_split(
    path: str | Path,
    split: str,
    records: DatasetRecords,
    features: Ego4DFeatures | None = None,
    fps: float = CANONICAL_FPS,
    annotated: bool | None = None,
) -> Split:
    """One NLQ file. `annotated=None`: unannotated iff the file name says so."""
    path = Path(path)
    if annotated is None:
        annotated = "unannotated" not in path.name
    data = read_json(path, on_duplicate=count_duplicate_keys(records.quirks, split))
    videos = field(data, "videos", path, None, list)
    out = Split(split, source=str(path))
    quirks = records.quirks
    raw_keys: dict[str, list[tuple]] = {}
    for vi, vrec in enumerate(videos):
        video_uid = field(vrec, "video_uid", path, f"videos[{vi}]", str)
        for ci, crec in enumerate(field(vrec, "clips", path, video_uid, list)):
            clip_uid = field(crec, "clip_uid", path, f"{video_uid} clips[{ci}]", str)
            c0 = number(crec, "clip_start_sec", path, clip_uid, default=0.0)
            c1 = number(crec, "clip_end_sec", path, clip_uid)
            duration = c1 - c0
            if duration <= 0:
                raise DataError(path, f"clip duration clip_end_sec - clip_start_sec = {duration} is not positive", record=clip_uid)
            v0 = number(crec, "video_start_sec", path, clip_uid, default=None)
            v1 = number(crec, "video_end_sec", path, clip_uid, default=None)
            video = out.videos.get(clip_uid)
            if video is None:
                video = Video(
                    clip_uid,
                    duration=duration,
                    fps=fps,
                    num_frames=int(duration * fps),
                    identity={"clip_uid": clip_uid, "video_uid": video_uid, "video_start_sec": v0, "video_end_sec": v1},
                )
                if features is not None:
                    video.feature = features.handle(clip_uid, video_uid, v0, v1, path)
                out.videos[clip_uid] = video
                raw_keys[clip_uid] = []
            elif abs(video.duration - duration) > 1e-6:
                raise DataError(path, f"clip listed twice with different durations ({video.duration} vs {duration})", record=clip_uid)
            for ai, arec in enumerate(field(crec, "annotations", path, clip_uid, list)):
                ann_uid = field(arec, "annotation_uid", path, f"{clip_uid} annotations[{ai}]", str)
                for qi, qrec in enumerate(field(arec, "language_queries", path, f"{clip_uid}_{ann_uid}", list)):
                    qid = query_id_of(clip_uid, ann_uid, qi)
                    raw_query = field(qrec, "query", path, qid, (str, type(None)), default=None)
                    if annotated:
                        s = number(qrec, "clip_start_sec", path, qid)
                        e = number(qrec, "clip_end_sec", path, qid)
                        raw_keys[clip_uid].append((s, e, raw_query))
                    accepted = accept_query(raw_query or "", (s - c0, e - c0) if annotated else None, duration,
                                            split, qid, quirks)
                    if accepted is None:
                        continue
                    text, seg = accepted
                    identity = {"clip_uid": clip_uid, "annotation_uid": ann_uid, "query_idx": qi, "raw_query": raw_query}
                    for key in ("template", "slot_x", "verb_x", "slot_y", "verb_y"):
                        if isinstance(qrec, dict) and key in qrec:
                            identity[key] = qrec[key]
                    video.queries.append(Query(qid, clip_uid, text, seg, index=qi, identity=identity))
    for clip_uid in [c for c, v in out.videos.items() if not v.queries]:
        quirks.add(split, "video_without_queries", clip_uid)
        del out.videos[clip_uid]
    if annotated:
        count_exact_duplicates(out, quirks, raw=raw_keys)
    return out


def read_ego4d(
    annotations: str | Path,
    video_features: str | Path | None = None,
    layout: str = "per_clip",
    splits: dict[str, str] | None = None,
    fps: float = CANONICAL_FPS,
    name: str = "ego4d_nlq",
) -> DatasetRecords:
    """Read the NLQ files from `annotations` (a directory holding them)."""
    annotations = Path(annotations)
    if not annotations.is_dir():
        raise DataError(annotations, "Ego4D-NLQ annotation directory not found")
    records = DatasetRecords(name, "ego4d_nlq")
    features = Ego4DFeatures(video_features, layout) if video_features is not None else None
    for split, fname in (splits or SPLIT_FILES).items():
        if not (annotations / fname).is_file() and "unannotated" in fname:
            continue  # the test file is optional (it has no ground truth)
        records.splits[split] = read_ego4d_split(annotations / fname, split, records, features, fps=fps)
    return records
