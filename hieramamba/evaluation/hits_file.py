"""The per-query hits file written beside metrics.json (`hits.csv.gz`).

One row per query of the recall's denominator (the rows `hits_at_iou` returns, in its order):

    query_id,kind,length_bin,video,R1@0.3,R1@0.5,R5@0.3,R5@0.5
    q0001,plain,0-120s,s13-d21,1,0,1,1

`kind` is the query kind (`plain`, `long_range`, ...), `length_bin` the label of the video-length
bin holding the query's video (`breakdown.bin_label`), `video` the id of that video as the dataset
reader knows it (the unit the model sees: for Ego4D the clip uid), each metric column 0/1. The
mean of a metric column times 100 is that metric in metrics.json, and the mean over the rows of
one kind / bin is the metric in `by_query_kind` / `by_length_bin`: the statistics of the tables
(paired bootstrap over seeds and over videos, the queries of a video drawn together) start from
these rows. gzip with a zero timestamp, so equal hits give equal bytes; written atomically.
numpy + standard library only.

Files written before the `video` column (issue 11's first version: `query_id,kind,length_bin,`
then the metrics) are refused by `read_hits` with the remedy (`hieramamba evaluate RUN_DIR`
rewrites the file); the workflow's tables read them with a warning instead (evidence.py).
"""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Hashable, Mapping
from pathlib import Path

import numpy as np

from hieramamba.atomic import atomic_open
from hieramamba.errors import DataError
from hieramamba.evaluation.recall import METRIC_KEY_RE, QueryHits

__all__ = ["HITS_FILE", "ID_COLUMNS", "write_hits", "read_hits"]

HITS_FILE = "hits.csv.gz"
ID_COLUMNS = ("query_id", "kind", "length_bin", "video")
LEGACY_ID_COLUMNS = ID_COLUMNS[:3]  # before the video column


def write_hits(path: str | Path, hits: QueryHits, kinds: Mapping[Hashable, str],
               length_bins: Mapping[Hashable, str], videos: Mapping[Hashable, str]) -> None:
    """Write `hits` with each query's kind, length-bin label and video id (all must cover every query)."""
    metrics = list(hits.hits)
    if len(set(hits.ids)) != len(hits.ids):
        raise ValueError(f"{path}: a query is scored twice (one row per query; the official protocol's "
                         "repeated entries have no per-query file)")
    for qid in hits.ids:
        for name, labels in (("kind", kinds), ("length bin", length_bins), ("video", videos)):
            if qid not in labels:
                raise ValueError(f"{path}: query {qid!r} has no {name}; every scored query needs one")
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow([*ID_COLUMNS, *metrics])
    columns = [np.asarray(hits.hits[m], dtype=bool) for m in metrics]  # each (Q,)
    for i, qid in enumerate(hits.ids):
        writer.writerow([qid, kinds[qid], length_bins[qid], videos[qid], *(int(col[i]) for col in columns)])
    with atomic_open(path, "wb") as raw:
        # mtime=0 and no file name in the header: the bytes depend on the hits only
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
            gz.write(text.getvalue().encode())


def read_hits(path: str | Path) -> tuple[list[dict[str, str]], dict[str, np.ndarray]]:
    """(rows of the id columns, {metric: (Q,) bool}); a malformed file raises DataError naming it."""
    try:
        with gzip.open(path, "rt", newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            body = list(reader)
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise DataError(path, f"not a readable gzip CSV of per-query hits ({err})") from None
    n_id = len(ID_COLUMNS)
    if header is not None and tuple(header[:n_id]) != ID_COLUMNS and tuple(header[:n_id - 1]) == LEGACY_ID_COLUMNS:
        raise DataError(path, "written before hits files named each query's video (no `video` column), which the "
                        "tables' bootstrap needs to resample videos; re-evaluate the run to rewrite it: "
                        f"`hieramamba evaluate {Path(path).parent}`")
    if header is None or tuple(header[:n_id]) != ID_COLUMNS:
        raise DataError(path, f"the header must start with {','.join(ID_COLUMNS)}, got {header}")
    metrics = header[n_id:]
    bad = [m for m in metrics if not METRIC_KEY_RE.match(m)]
    if not metrics or bad:
        raise DataError(path, f"metric columns must be R{{k}}@{{iou}}, got {metrics}")
    ids, values = [], np.zeros((len(body), len(metrics)), dtype=bool)  # (Q, M)
    for line, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise DataError(path, f"line {line} has {len(row)} fields, the header {len(header)}")
        if any(v not in ("0", "1") for v in row[n_id:]):
            raise DataError(path, f"line {line}: hit values must be 0 or 1, got {row[n_id:]}", record=row[0])
        ids.append(dict(zip(ID_COLUMNS, row[:n_id])))
        values[line - 2] = [v == "1" for v in row[n_id:]]
    seen = [r["query_id"] for r in ids]
    if len(set(seen)) != len(seen):
        dup = next(q for q in seen if seen.count(q) > 1)
        raise DataError(path, "the query appears more than once", record=dup)
    return ids, {m: values[:, j] for j, m in enumerate(metrics)}
