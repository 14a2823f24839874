"""The SnAG / HieraMamba processed format, so SnAG's released tarballs work as they are.

`{split: {vid: {fps, num_frames, duration, num_clips, annotations: [{segment, sentence,
sentence_id}]}}}` with video features `<vid_dir>/<vid>.npy|.pt` (T, C) (a list of dirs is
concatenated on channels, lengths at most 1 apart) and text features
`<text_dir>/<sentence_id>.npy|.pt` (L, C) (or GloVe on the fly).

Follows HieraMamba's parser: `duration` is used when present (else num_frames / fps, as SnAG),
num_frames is re-derived as int(duration * fps), `num_clips` is optional (estimated from the
duration when absent), sentences are stripped, windows clamped to [0, duration] and dropped when
not positive (counted), videos without an `annotations` key or with no usable query are skipped
(counted). Query id = `sentence_id` (default `<vid>_<idx:04d>`). A duplicate JSON key is counted
under the split whose part of the file holds it (duplicates inside splits that are not read are not
part of the dataset and are not counted).
"""

from __future__ import annotations

from pathlib import Path

from hieramamba.data.common import accept_query, count_duplicate_keys, field, number, pair, read_json
from hieramamba.data.features import ConcatFeature, FileFeature, find_array_file
from hieramamba.data.records import DatasetRecords, Query, Split, Video, count_exact_duplicates
from hieramamba.errors import DataError


def _video_handle(dirs: list[Path], vid: str):
    handles = []
    for d in dirs:
        found = find_array_file(d, vid)
        handles.append(FileFeature(str(found if found is not None else d / f"{vid}.npy"), record=vid))
    return handles[0] if len(handles) == 1 else ConcatFeature(handles, record=vid)


def read_snag(
    anno_file: str | Path,
    video_features: str | Path | list | None = None,
    splits: dict[str, str] | None = None,
    name: str = "snag",
) -> DatasetRecords:
    """Read one processed JSON. `splits` maps our split names to the JSON's keys (default: all keys)."""
    anno_file = Path(anno_file)
    duplicates: list[tuple] = []  # (location, key): counted below under the split they belong to
    data = read_json(anno_file, on_duplicate=lambda location, key: duplicates.append((location, key)))
    if not isinstance(data, dict):
        raise DataError(anno_file, f"expected a JSON object keyed by split, found {type(data).__name__}")
    dirs = None
    if video_features is not None:
        dirs = [Path(p) for p in (video_features if isinstance(video_features, (list, tuple)) else [video_features])]
        for d in dirs:
            if not d.is_dir():
                raise DataError(d, "video feature directory not found")
    records = DatasetRecords(name, "snag")
    quirks = records.quirks
    splits = splits or {k: k for k in data}
    split_of_key = {key: split for split, key in splits.items()}
    for location, key in duplicates:
        json_split = location[0] if location else key  # a duplicate split key itself counts under that split
        if json_split in split_of_key:
            count_duplicate_keys(quirks, split_of_key[json_split])(location, key)
    for split, key in splits.items():
        if key not in data:
            raise DataError(anno_file, f"split {key!r} not in the file (has {sorted(data)})")
        videos = field(data, key, anno_file, None, dict)
        out = Split(split, source=f"{anno_file}[{key}]")
        raw_keys: dict[str, list[tuple]] = {}
        for vid, entry in videos.items():
            if not isinstance(entry, dict):
                raise DataError(anno_file, f"expected a JSON object, found {type(entry).__name__}", record=vid)
            if "annotations" not in entry:
                quirks.add(split, "video_without_queries", vid)
                continue
            fps = number(entry, "fps", anno_file, vid)
            if fps <= 0:
                raise DataError(anno_file, f"fps {fps} is not positive", record=vid)
            duration = number(entry, "duration", anno_file, vid, default=None)
            if duration is None:
                if "num_frames" not in entry:
                    raise DataError(anno_file, "needs 'duration' (or 'num_frames' to derive it)", record=vid)
                duration = number(entry, "num_frames", anno_file, vid) / fps
            if duration <= 0:
                raise DataError(anno_file, f"duration {duration} is not positive", record=vid)
            num_clips = field(entry, "num_clips", anno_file, vid, (int, type(None)), default=None)
            video = Video(vid, duration=duration, fps=fps, num_frames=int(duration * fps), num_clips=num_clips, identity={"video": vid})
            if dirs is not None:
                video.feature = _video_handle(dirs, vid)
            raw_keys[vid] = []
            for i, ann in enumerate(field(entry, "annotations", anno_file, vid, list)):
                rec = f"{vid} annotations[{i}]"
                start, end = pair(ann, "segment", anno_file, rec)
                sentence = field(ann, "sentence", anno_file, rec, str)
                sid = field(ann, "sentence_id", anno_file, rec, (str, int), default=f"{vid}_{i:04d}")
                sid = str(sid)
                raw_keys[vid].append((start, end, sentence))
                accepted = accept_query(sentence, (start, end), duration, split, sid, quirks)
                if accepted is None:
                    continue
                text, seg = accepted
                video.queries.append(Query(sid, vid, text, seg, index=i, identity={"video": vid, "sentence_id": sid, "annotation_index": i}))
            if not video.queries:
                quirks.add(split, "video_without_queries", vid)
                continue
            out.videos[vid] = video
        count_exact_duplicates(out, quirks, raw=raw_keys)
        records.splits[split] = out
    return records
