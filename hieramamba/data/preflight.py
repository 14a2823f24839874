"""What a dataset must satisfy before a run uses it; `data check` reports the same problems.

- every split a run trains or evaluates on holds at least one annotated query (an empty
  evaluation split otherwise scores NaN recalls over `n_queries: 0`; an empty training split
  fails somewhere inside training);
- with `features.video_dim` / `text_dim` null (the synthetic configs), every video / query of the
  splits has features of one width (otherwise `torch.stack` fails mid-training without naming a
  file): the files and records whose width differs from the most common one are named.

Each check returns `Problem`s; `require_usable` raises the first as a `DataError` (with how many
more there are), before anything is built or trained.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from hieramamba.errors import DataError

MAX_NAMED = 5  # records named in one error message


@dataclass(frozen=True)
class Problem:
    kind: str  # "empty_split" | "inconsistent_video_dim" | "inconsistent_text_dim"
    path: str
    record: str | None
    problem: str


def empty_split_problems(ds, roles: dict[str, str | None]) -> list[Problem]:
    """`roles` maps a role ("training", "evaluation") to a split name (None or absent: not used)."""
    problems = []
    for role, name in roles.items():
        if name is None or name not in ds.records.splits:
            continue
        split = ds.split(name)
        annotated = sum(1 for q in split.queries() if q.segment is not None)
        if annotated:
            continue
        dropped = {k: n for k, n in ds.records.quirks.as_dict().get(name, {}).items() if k.endswith("_dropped") or k == "video_without_queries"}
        why = f"; the reader dropped: {', '.join(f'{k} {n}' for k, n in dropped.items())}" if dropped else ""
        problems.append(Problem("empty_split", split.source or ds.name, None,
                                f"the {role} split {name!r} has no annotated query ({len(split.videos)} videos, "
                                f"{split.num_queries} queries read){why}"))
    return problems


def width_outliers(widths: list[tuple[str, str, int]], kind: str, what: str) -> list[Problem]:
    """`widths`: (path, record, width) per item. One problem per item whose width is not the most
    common one (ties: the width seen first)."""
    if not widths:
        return []
    counts = Counter(w for _, _, w in widths)
    if len(counts) == 1:
        return []
    common = max(counts, key=counts.get)  # the first maximum in insertion (first-seen) order
    summary = ", ".join(f"{n} x {w}-d" for w, n in counts.most_common())
    return [Problem(kind, path, record, f"{what} are {w}-d but {counts[common]} of {len(widths)} are {common}-d ({summary})")
            for path, record, w in widths if w != common]


def video_widths(ds, split_names) -> list[tuple[str, str, int]]:
    """(file, video id, width) of every video of the splits, read from the file headers where possible."""
    out = []
    for name in split_names:
        for vid, video in ds.split(name).videos.items():
            if video.feature is not None:
                shape = video.feature.shape()
                out.append((video.feature.path, vid, int(shape[-1])))
    return out


def text_widths(ds, split_names) -> list[tuple[str, str, int]]:
    """(file, query id, width) of every query of the splits."""
    out = []
    for name in split_names:
        for q in ds.split(name).queries():
            out.append((ds.text_source.locate(q), q.query_id, int(ds.text_source.shape(q)[-1])))
    return out


def feature_width_problems(ds, split_names) -> list[Problem]:
    """Width outliers among the splits' features, for the widths the dataset config leaves null."""
    names = [n for n in dict.fromkeys(split_names) if n is not None and n in ds.records.splits]
    problems = []
    if ds.video_dim is None:
        problems += width_outliers(video_widths(ds, names), "inconsistent_video_dim", "video features")
    if ds.text_dim is None and ds.text_source is not None:
        problems += width_outliers(text_widths(ds, names), "inconsistent_text_dim", "text features")
    return problems


def raise_first(problems: list[Problem]) -> None:
    """A DataError for the first problem, naming up to MAX_NAMED records of its kind and the count."""
    if not problems:
        return
    first = problems[0]
    same = [p for p in problems if p.kind == first.kind]
    more = ""
    if len(same) > 1:
        others = ", ".join(f"{p.record!r} ({p.path})" for p in same[1:MAX_NAMED])
        rest = len(same) - min(len(same), MAX_NAMED)
        more = f"; also {others}" + (f" and {rest} more" if rest else "")
    raise DataError(first.path, first.problem + more, record=first.record)


def require_usable(ds, train_split: str | None, eval_split: str | None) -> None:
    """Raise a DataError unless the run's training and evaluation splits are usable (module doc)."""
    raise_first(empty_split_problems(ds, {"training": train_split, "evaluation": eval_split}))
    raise_first(feature_width_problems(ds, [train_split, eval_split]))
