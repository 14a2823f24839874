"""TACoS in the 2D-TAN release: `{train,val,test}.json` + C3D features + GloVe.

Annotation: `{"<video>.avi": {"timestamps": [[start_frame, end_frame], ...], "sentences": [...],
"fps": 29.4, "num_frames": int}}`. Seconds = frame / fps, duration = num_frames / fps; windows are
clamped to [0, duration] (2D-TAN, SnAG); ends past the last frame (43 train / 5 test in the
release) are counted.

Identity: video id = the JSON key verbatim (e.g. "s13-d21.avi"); query id = `<key>_<index:04d>`,
index = position in the video's sentence list. `identity["alt_query_id"]` holds the same id
without ".avi" (the SnAG-style id).

Features: an h5 keyed by video (2D-TAN's `tall_c3d_features.hdf5`) or a directory of per-video
`<video>.npy|.pt`. Keys/stems are looked up as the JSON key first, then with ".avi" removed (or
added), so both conventions are accepted.
"""

from __future__ import annotations

from pathlib import Path

from hieramamba.data.common import accept_query, count_duplicate_keys, field, number, read_json
from hieramamba.data.features import FileFeature, H5Feature, find_array_file
from hieramamba.data.records import DatasetRecords, Query, Split, Video, count_exact_duplicates
from hieramamba.errors import DataError

SPLIT_FILES = {"train": "train.json", "val": "val.json", "test": "test.json"}


def _stem_variants(key: str) -> list[str]:
    return [key, key[: -len(".avi")]] if key.endswith(".avi") else [key, key + ".avi"]


class TacosFeatures:
    """Resolves a video key to its C3D feature handle (h5 file or directory of arrays)."""

    def __init__(self, location: str | Path):
        self.location = Path(location)
        self._h5_keys: set[str] | None = None
        if self.location.is_dir():
            self.kind = "dir"
        elif self.location.is_file():
            self.kind = "h5"
        else:
            raise DataError(self.location, "video feature file or directory not found")

    def handle(self, key: str):
        if self.kind == "dir":
            for stem in _stem_variants(key):
                found = find_array_file(self.location, stem)
                if found is not None:
                    return FileFeature(str(found), record=key)
            return FileFeature(str(self.location / f"{key}.npy"), record=key)
        if self._h5_keys is None:
            import h5py

            try:
                with h5py.File(self.location, "r") as f:
                    self._h5_keys = set(f.keys())
            except OSError as exc:
                raise DataError(self.location, f"unreadable h5 file: {exc}") from None
        for stem in _stem_variants(key):
            if stem in self._h5_keys:
                return H5Feature(str(self.location), stem, record=key)
        return H5Feature(str(self.location), key, record=key)


def read_tacos_split(path: str | Path, split: str, records: DatasetRecords, features: TacosFeatures | None = None) -> Split:
    path = Path(path)
    data = read_json(path, on_duplicate=count_duplicate_keys(records.quirks, split))
    if not isinstance(data, dict):
        raise DataError(path, f"expected a JSON object keyed by video, found {type(data).__name__}")
    out = Split(split, source=str(path))
    quirks = records.quirks
    raw_keys: dict[str, list[tuple]] = {}
    for key, entry in data.items():
        fps = number(entry, "fps", path, key)
        num_frames = number(entry, "num_frames", path, key)
        if fps <= 0 or num_frames <= 0:
            raise DataError(path, f"fps ({fps}) and num_frames ({num_frames}) must be positive", record=key)
        stamps = field(entry, "timestamps", path, key, list)
        sentences = field(entry, "sentences", path, key, list)
        if len(stamps) != len(sentences):
            raise DataError(path, f"{len(stamps)} timestamps but {len(sentences)} sentences", record=key)
        duration = num_frames / fps
        video = Video(key, duration=duration, fps=fps, num_frames=int(num_frames), identity={"video": key})
        if features is not None:
            video.feature = features.handle(key)
        raw_keys[key] = []
        for i, (ts, sentence) in enumerate(zip(stamps, sentences)):
            qid = f"{key}_{i:04d}"
            if not isinstance(ts, list) or len(ts) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in ts):
                raise DataError(path, f"timestamps[{i}] must be a [start_frame, end_frame] pair, found {ts!r:.60}", record=qid)
            if not isinstance(sentence, str):
                raise DataError(path, f"sentences[{i}] must be a string, found {type(sentence).__name__}", record=qid)
            raw_keys[key].append((ts[0], ts[1], sentence))
            accepted = accept_query(sentence, (ts[0] / fps, ts[1] / fps), duration, split, qid, quirks)
            if accepted is None:
                continue
            text, seg = accepted
            alt = f"{key[:-4]}_{i:04d}" if key.endswith(".avi") else qid
            video.queries.append(
                Query(qid, key, text, seg, index=i, identity={"video": key, "sentence_index": i, "alt_query_id": alt})
            )
        if not video.queries:
            quirks.add(split, "video_without_queries", key)
            continue
        out.videos[key] = video
    count_exact_duplicates(out, quirks, raw=raw_keys)
    return out


def read_tacos(
    annotations: str | Path,
    video_features: str | Path | None = None,
    splits: dict[str, str] | None = None,
    name: str = "tacos",
) -> DatasetRecords:
    """Read a 2D-TAN TACoS folder (`annotations` = the folder holding train/val/test.json)."""
    annotations = Path(annotations)
    if not annotations.is_dir():
        raise DataError(annotations, "TACoS annotation directory not found")
    records = DatasetRecords(name, "tacos")
    features = TacosFeatures(video_features) if video_features is not None else None
    for split, fname in (splits or SPLIT_FILES).items():
        records.splits[split] = read_tacos_split(annotations / fname, split, records, features)
    return records
