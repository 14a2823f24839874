"""Small helpers shared by the readers: field access that fails with a DataError, the reference
protocol for one query, and counting duplicate JSON keys (the loading itself: `jsonfile`)."""

from __future__ import annotations

import math
from typing import Any

from hieramamba.data.jsonfile import format_location, read_json  # noqa: F401 (read_json re-exported)
from hieramamba.errors import DataError

_MISSING = object()


def count_duplicate_keys(quirks, split: str):
    """An `on_duplicate` for `read_json` that counts each duplicate key as a quirk of `split`
    (the last value is kept, as Python's json and so the authors' loaders do)."""

    def add(location, key: str) -> None:
        quirks.add(split, "duplicate_json_key_dropped", f"{format_location(location)} key {key!r}")

    return add


def field(obj: Any, key: str, path: object, record: object, kind: type | tuple = object, default: Any = _MISSING) -> Any:
    """obj[key] checked for presence and type; DataError naming file, record and field otherwise."""
    if not isinstance(obj, dict):
        raise DataError(path, f"expected a JSON object, found {type(obj).__name__}", record=record)
    if key not in obj:
        if default is not _MISSING:
            return default
        raise DataError(path, f"missing field {key!r}", record=record)
    value = obj[key]
    if kind is float:
        kind = (int, float)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        want = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise DataError(path, f"field {key!r} must be {want}, found {type(value).__name__} {value!r:.60}", record=record)
    return value


def number(obj: Any, key: str, path: object, record: object, default: Any = _MISSING) -> float:
    value = field(obj, key, path, record, (int, float), default)
    if value is None:
        return value
    value = float(value)
    if not math.isfinite(value):
        raise DataError(path, f"field {key!r} is not a finite number ({value})", record=record)
    return value


def pair(obj: Any, key: str, path: object, record: object) -> tuple[float, float]:
    value = field(obj, key, path, record, list)
    if len(value) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise DataError(path, f"field {key!r} must be a [start, end] pair of numbers, found {value!r:.60}", record=record)
    a, b = float(value[0]), float(value[1])
    if not (math.isfinite(a) and math.isfinite(b)):
        raise DataError(path, f"field {key!r} has a non-finite value {value!r}", record=record)
    return a, b


def clamp_segment(start: float, end: float, duration: float, split: str, record: object, quirks) -> tuple[float, float] | None:
    """SnAG/HieraMamba: clamp to [0, duration]; drop when end - start <= 0. Every change is counted.

    Returns the clamped (start, end) in seconds, or None when the window is dropped.
    """
    s, e = max(start, 0.0), min(end, duration)
    if e - s <= 0:
        if end < start:
            quirks.add(split, "reversed_dropped", record)
        elif end == start:
            quirks.add(split, "zero_length_dropped", record)
        else:  # positive in the source, empty inside the video
            quirks.add(split, "start_past_video_dropped", record)
        return None
    if start < 0:
        quirks.add(split, "start_before_zero_clamped", record)
    if end > duration:
        quirks.add(split, "end_past_video_clamped", record)
    return s, e


def accept_query(sentence: str, window: tuple[float, float] | None, duration: float, split: str, record: object,
                 quirks) -> tuple[str, tuple[float, float] | None] | None:
    """The reference protocol for one query, shared by every reader: strip the sentence, drop an
    empty one, clamp the window to the video and drop an empty window; every change is counted.

    `window` is (start, end) in seconds, or None for an unannotated (test) query. Returns
    (text, clamped window or None), or None when the query is dropped.
    """
    text = clean_sentence(sentence, split, record, quirks)
    if not text:
        quirks.add(split, "empty_query_dropped", record)
        return None
    if window is None:
        return text, None
    seg = clamp_segment(window[0], window[1], duration, split, record, quirks)
    return None if seg is None else (text, seg)


def clean_sentence(text: str, split: str, record: object, quirks) -> str:
    """Strip the sentence (SnAG); count the stripping."""
    stripped = text.strip()
    if stripped != text and stripped:
        quirks.add(split, "whitespace_stripped", record)
    return stripped
