"""What the readers and the run changed in the data a run used, counted for metrics.json and train.log.

Per split the run used (the training split and the evaluated split): every quirk the reader
counted (clamped, dropped, stripped, duplicate keys, ...; `records.QUIRKS` says how each is
handled) plus `text_truncated`, the queries whose token features are longer than the model's
`max_text_len` and were cut to it (training always; evaluation unless `eval.truncate_text=false`).
The counts are a function of the data and the config only, so a resumed run reports the same.
"""

from __future__ import annotations

# Reader quirks that remove a query of its split (what `n_dropped` adds for the evaluated split).
QUERY_DROPS = ("zero_length_dropped", "reversed_dropped", "empty_query_dropped", "start_past_video_dropped")
TEXT_TRUNCATED = "text_truncated"


def truncated_queries(ds, split: str, max_text_len: int) -> list[str]:
    """Ids of the split's queries with more than `max_text_len` tokens (read from shapes, not arrays)."""
    if ds.text_source is None:
        return []
    return [q.query_id for q in ds.split(split).queries() if int(ds.text_source.shape(q)[0]) > int(max_text_len)]


def run_data_quirks(ds, truncating: dict[str, bool], max_text_len: int | None) -> dict[str, dict[str, int]]:
    """{split: {quirk: n}} for the splits in `truncating` (split -> whether the run cuts its text
    to `max_text_len`); zero counts are left out."""
    reader = ds.records.quirks.as_dict()
    out: dict[str, dict[str, int]] = {}
    for split, cuts in truncating.items():
        if split is None or split not in ds.records.splits:
            continue
        counts = dict(reader.get(split, {}))
        if cuts and max_text_len is not None:
            n = len(truncated_queries(ds, split, max_text_len))
            if n:
                counts[TEXT_TRUNCATED] = n
        out[split] = dict(sorted(counts.items()))
    return out


def dropped_queries(quirks: dict[str, int]) -> int:
    """Queries the reader removed from a split (the sum of its QUERY_DROPS counts)."""
    return sum(int(quirks.get(k, 0)) for k in QUERY_DROPS)


def describe(data_quirks: dict[str, dict[str, int]]) -> str:
    """One line for train.log: `train: end_past_video_clamped 1, text_truncated 2; test: none`."""
    parts = []
    for split, counts in data_quirks.items():
        body = ", ".join(f"{k} {n}" for k, n in counts.items()) or "none"
        parts.append(f"{split}: {body}")
    return "; ".join(parts)
