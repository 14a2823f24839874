"""Reading annotation JSON so that nothing in it is lost or let through unnoticed.

Python's `json` accepts two things the released formats never mean:

- `NaN`, `Infinity`, `-Infinity` (and overflowing literals such as `1e999`): not numbers a
  timestamp, frame index, duration or fps can take. A NaN timestamp otherwise passes every
  comparison unnoticed (it is neither <= 0 nor > duration) and later stalls training. Any
  non-finite number anywhere in the file is a `DataError` naming the file and the JSON location
  of the value (which holds the record id: the video key, annotation id, or list positions).
- the same key twice in one object: `json` keeps the last value and silently loses the earlier
  one (a whole video of TACoS, an annotation of MAD). Every duplicate is reported to the
  caller's `on_duplicate(location, key)` (the readers count it as the quirk
  `duplicate_json_key_dropped`: the last value is kept, as the authors' loaders do, and `data
  check --strict` fails); without a callback a duplicate is a `DataError`.

Locations are JSON paths written `["s13-d21.avi"]["timestamps"][3][0]` (`<top level>` for the
root object).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable, Iterator

from hieramamba.errors import DataError

Location = tuple  # JSON path: str keys and int list positions, from the root
OnDuplicate = Callable[[Location, str], None]


def format_location(location: Location) -> str:
    """`("s13-d21.avi", "timestamps", 3)` -> `["s13-d21.avi"]["timestamps"][3]`."""
    if not location:
        return "<top level>"
    return "".join(f"[{json.dumps(p, ensure_ascii=False)}]" if isinstance(p, str) else f"[{p}]" for p in location)


def _walk(node: Any, location: Location = ()) -> Iterator[tuple[Location, Any]]:
    """Every (location, value) of the tree, depth first, in file order (iterative: no recursion limit)."""
    stack = [(location, node)]
    while stack:
        loc, value = stack.pop()
        yield loc, value
        if isinstance(value, dict):
            stack.extend(((*loc, k), v) for k, v in reversed(list(value.items())))
        elif isinstance(value, list):
            stack.extend(((*loc, i), v) for i, v in reversed(list(enumerate(value))))


def read_json(path: str | Path, on_duplicate: OnDuplicate | None = None) -> Any:
    """The parsed file; DataError (naming the file, and the location for values) when it is
    missing, unreadable, malformed, holds a non-finite number, or (no `on_duplicate`) a duplicate key."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "annotation file not found")
    duplicated: list[tuple[dict, list[str]]] = []  # (object, its duplicated keys), in parse order
    nonfinite = False

    def build_object(pairs: list[tuple[str, Any]]) -> dict:
        obj = dict(pairs)
        if len(obj) != len(pairs):
            seen: set[str] = set()
            keys = [k for k, _ in pairs if k in seen or seen.add(k)]
            duplicated.append((obj, keys))
        return obj

    def parse_float(text: str) -> float:
        nonlocal nonfinite
        value = float(text)
        if not math.isfinite(value):  # an overflowing literal such as 1e999
            nonfinite = True
        return value

    def parse_constant(text: str) -> float:  # NaN, Infinity, -Infinity
        nonlocal nonfinite
        nonfinite = True
        return float(text)

    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f, object_pairs_hook=build_object, parse_float=parse_float, parse_constant=parse_constant)
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(path, f"unreadable annotation file: {exc}") from None
    except json.JSONDecodeError as exc:
        raise DataError(path, f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    if nonfinite:
        bad = [(loc, v) for loc, v in _walk(data) if isinstance(v, float) and not math.isfinite(v)]
        loc, value = bad[0]
        more = f" ({len(bad) - 1} more in the file)" if len(bad) > 1 else ""
        raise DataError(path, f"non-finite number {value} in the annotation{more}; timestamps, frame indices, "
                              "durations and fps must be finite numbers", record=format_location(loc))
    if duplicated:
        where = {id(obj): loc for loc, obj in _walk(data) if isinstance(obj, dict)}
        for obj, keys in duplicated:
            if id(obj) not in where:
                continue  # inside a value a later duplicate replaced: that loss is the one reported
            loc = where[id(obj)]
            for key in keys:
                if on_duplicate is None:
                    raise DataError(path, f"key {key!r} appears twice in one JSON object (the earlier value "
                                          "would be lost)", record=format_location(loc))
                on_duplicate(loc, key)
    return data
