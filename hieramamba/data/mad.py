"""MAD / MAD-v2: `MAD_{train,val,test}.json` + CLIP frame and language-token h5 files.

Annotation: `{"<annotation_id>": {"movie", "sentence", "timestamps", "ext_timestamps",
"movie_duration"}}`; the ground truth is `ext_timestamps` (seconds, movie-relative), clamped to
[0, movie_duration]; start >= end entries are dropped and counted (SnAG/HieraMamba drop
non-positive windows; VLG-Net's loader silently reused the previous moment instead).

Features (read lazily with h5py; a movie is read only when asked for, straight into one float32
array):
- frames: `CLIP_{B32,L14}_frames_features_5fps.h5`, one dataset per movie id, (T, 512|768) at 5 fps;
- text: `CLIP_{B32,L14}_language_tokens_features.h5`, one dataset per annotation id, (L, 512|768).

Identity: video id = movie id; query id = annotation id.
"""

from __future__ import annotations

from pathlib import Path

from hieramamba.data.common import accept_query, count_duplicate_keys, field, number, pair, read_json
from hieramamba.data.features import H5Feature
from hieramamba.data.records import DatasetRecords, Query, Split, Video, count_exact_duplicates
from hieramamba.errors import DataError

SPLIT_FILES = {"train": "MAD_train.json", "val": "MAD_val.json", "test": "MAD_test.json"}
FPS = 5.0


def read_mad_split(path: str | Path, split: str, records: DatasetRecords, frames_h5: str | Path | None = None, fps: float = FPS) -> Split:
    path = Path(path)
    data = read_json(path, on_duplicate=count_duplicate_keys(records.quirks, split))
    if not isinstance(data, dict):
        raise DataError(path, f"expected a JSON object keyed by annotation id, found {type(data).__name__}")
    out = Split(split, source=str(path))
    quirks = records.quirks
    raw_keys: dict[str, list[tuple]] = {}
    for ann_id, entry in data.items():
        movie = field(entry, "movie", path, ann_id, str)
        sentence = field(entry, "sentence", path, ann_id, str)
        duration = number(entry, "movie_duration", path, ann_id)
        start, end = pair(entry, "ext_timestamps", path, ann_id)
        if duration <= 0:
            raise DataError(path, f"movie_duration {duration} is not positive", record=ann_id)
        video = out.videos.get(movie)
        if video is None:
            video = Video(movie, duration=duration, fps=fps, num_frames=int(duration * fps), identity={"movie": movie})
            if frames_h5 is not None:
                video.feature = H5Feature(str(frames_h5), movie, record=movie)
            out.videos[movie] = video
            raw_keys[movie] = []
        elif abs(video.duration - duration) > 1e-3:
            raise DataError(path, f"movie_duration {duration} disagrees with {video.duration} given for the same movie", record=ann_id)
        raw_keys[movie].append((start, end, sentence))
        accepted = accept_query(sentence, (start, end), duration, split, ann_id, quirks)
        if accepted is None:
            continue
        text, seg = accepted
        ts = entry.get("timestamps")
        video.queries.append(
            Query(str(ann_id), movie, text, seg, index=len(raw_keys[movie]) - 1, identity={"annotation_id": str(ann_id), "movie": movie, "timestamps": ts})
        )
    for movie in [m for m, v in out.videos.items() if not v.queries]:
        quirks.add(split, "video_without_queries", movie)
        del out.videos[movie]
    count_exact_duplicates(out, quirks, raw=raw_keys)
    return out


def read_mad(
    annotations: str | Path,
    frames_h5: str | Path | None = None,
    splits: dict[str, str] | None = None,
    fps: float = FPS,
    name: str = "mad",
) -> DatasetRecords:
    """Read `MAD_*.json` from the `annotations` directory; frames from `frames_h5` (lazy)."""
    annotations = Path(annotations)
    if not annotations.is_dir():
        raise DataError(annotations, "MAD annotation directory not found")
    if frames_h5 is not None and not Path(frames_h5).is_file():
        raise DataError(frames_h5, "frame feature h5 file not found")
    records = DatasetRecords(name, "mad")
    for split, fname in (splits or SPLIT_FILES).items():
        records.splits[split] = read_mad_split(annotations / fname, split, records, frames_h5, fps=fps)
    return records
