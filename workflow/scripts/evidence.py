"""Per-query hits of a table's runs -> intervals, paired Δ, P(improve), resolved marks, seeds needed.

Reads each run's `hits.csv.gz` (beside its metrics.json; DEVELOPING.md, run directory), checks
that its column means are the run's metrics.json recalls, aligns every run on the same queries, and
stacks them per variant into `(metrics, seeds, queries)` hit arrays for stats.py. Seeds are paired
by *seed index* = seed - the variant's `seed_offset` (ablation files; 0 by default), so the A/A
control `full_aa` (same model, disjoint seeds) is paired with `full` index by index.

Every comparison is made on all queries ("all", bootstrap stratified by query kind) and on each
query kind alone (`plain`, `long_range`, ...).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

import stats

HITS_FILE = "hits.csv.gz"
ID_COLUMNS = ("query_id", "kind", "length_bin")
ALL = "all"  # the row over every query
TOLERANCE = 1e-6  # percent: a hits file disagreeing with its metrics.json by more is an error


@dataclass
class RunHits:
    ids: pd.DataFrame  # query_id, kind, length_bin; sorted by query_id
    values: np.ndarray  # (M, Q) bool, columns in the order of `ids`


def seed_offset(specs: dict, variant: str) -> int:
    return int((specs.get(variant) or {}).get("seed_offset", 0))


def read_run_hits(run: pd.Series, metrics: list[str]) -> RunHits:
    """One run's hits (sorted by query id), checked against its metrics.json recalls."""
    path = Path(run["run_dir"]) / HITS_FILE
    if not path.is_file():
        raise ValueError(f"{path}: missing; the tables need every run's per-query hits (written by "
                         f"`hieramamba train` since issue 11; for an older run: `hieramamba evaluate {run['run_dir']}`)")
    frame = pd.read_csv(path, dtype={c: str for c in ID_COLUMNS}, keep_default_na=False)
    missing = [m for m in metrics if m not in frame.columns]
    if missing or tuple(frame.columns[:3]) != ID_COLUMNS:
        raise ValueError(f"{path}: expected columns {list(ID_COLUMNS)} + {metrics}, got {list(frame.columns)}")
    if frame["query_id"].duplicated().any():
        raise ValueError(f"{path}: query {frame.loc[frame['query_id'].duplicated(), 'query_id'].iloc[0]!r} "
                         "appears more than once")
    for m in metrics:
        recorded = run[m]
        measured = 100.0 * frame[m].mean() if len(frame) else math.nan
        if not (math.isnan(recorded) and math.isnan(measured)) and not abs(measured - recorded) <= TOLERANCE:
            raise ValueError(f"{path}: {m} over its {len(frame)} queries is {measured:.6f} but "
                             f"{Path(run['run_dir']) / 'metrics.json'} says {recorded:.6f}")
    frame = frame.sort_values("query_id", kind="stable").reset_index(drop=True)
    return RunHits(frame[list(ID_COLUMNS)], frame[metrics].to_numpy(dtype=bool).T)


class TableHits:
    """Hits of every run of a table, aligned on the reference's queries."""

    def __init__(self, runs: pd.DataFrame, metrics: list[str], specs: dict, reference: str = "full"):
        self.metrics = metrics
        self.runs = {}  # (variant, seed index) -> RunHits
        ids = None
        for _, run in runs.sort_values(["variant", "seed"]).iterrows():
            hits = read_run_hits(run, metrics)
            if ids is None:
                ids, first = hits.ids, run["run_dir"]
            elif not hits.ids["query_id"].equals(ids["query_id"]):
                raise ValueError(f"{run['run_dir']}/{HITS_FILE} and {first}/{HITS_FILE} score different queries: "
                                 "runs of one table must be evaluated on the same split")
            self.runs[(run["variant"], int(run["seed"]) - seed_offset(specs, run["variant"]))] = hits
        self.ids = ids if ids is not None else pd.DataFrame(columns=list(ID_COLUMNS))
        self.reference = reference

    def kinds(self) -> list[str]:
        return list(dict.fromkeys(self.ids["kind"]))

    def seed_indices(self, variant: str) -> list[int]:
        return sorted(i for v, i in self.runs if v == variant)

    def stack(self, variant: str, indices: list[int], columns: np.ndarray) -> np.ndarray:
        """(M, S, Q_sel) hits of `variant` at the given seed indices, on the selected queries."""
        return np.stack([self.runs[(variant, i)].values[:, columns] for i in indices], axis=1).astype(float)


def _kind_columns(hits: TableHits) -> list[tuple[str, np.ndarray]]:
    kinds = hits.ids["kind"].to_numpy()
    groups = [(ALL, np.arange(len(kinds)))]
    return groups + [(kind, np.flatnonzero(kinds == kind)) for kind in hits.kinds()]


def evidence_records(hits: TableHits, variants: list[str]) -> list[dict]:
    """One record per (variant, query kind): n, seeds, and per metric m the columns
    m_mean, m_lo, m_hi (95 % interval), m_std (sample std of the run recalls over seeds), m_delta, m_delta_lo, m_delta_hi, m_p_improve, m_resolved, m_seeds_needed,
    m_pairs (Δ columns NaN on the reference's rows)."""
    kinds = hits.ids["kind"].to_numpy()
    ref_idx = hits.seed_indices(hits.reference)
    records = []
    for variant in variants:
        own = hits.seed_indices(variant)
        common = sorted(set(own) & set(ref_idx))
        for kind, cols in _kind_columns(hits):
            record = {"variant": variant, "kind": kind, "n_queries": len(cols), "seeds": len(own)}
            strata = kinds[cols] if kind == ALL else None
            means = stats.two_way_intervals(hits.stack(variant, own, cols), strata) if own and len(cols) else None
            compared = None
            if variant != hits.reference and common and len(cols):
                compared = stats.compare(hits.stack(variant, common, cols), hits.stack(hits.reference, ref_idx, cols),
                                         strata)
            # (M, S) run recalls on these queries, for the seed spread
            recalls = 100.0 * hits.stack(variant, own, cols).mean(axis=2) if own and len(cols) else None
            for j, m in enumerate(hits.metrics):
                mean = means[j] if means else stats.Interval(math.nan, math.nan, math.nan)
                spread = float(np.std(recalls[j], ddof=1)) if recalls is not None and len(own) > 1 else math.nan
                record.update({f"{m}_mean": mean.value, f"{m}_lo": mean.lo, f"{m}_hi": mean.hi, f"{m}_std": spread})
                if compared is None:
                    record.update({f"{m}_delta": math.nan, f"{m}_delta_lo": math.nan, f"{m}_delta_hi": math.nan,
                                   f"{m}_p_improve": math.nan, f"{m}_resolved": None, f"{m}_seeds_needed": math.nan,
                                   f"{m}_pairs": len(common) if variant != hits.reference else len(own)})
                    continue
                c = compared[j]
                record.update({f"{m}_delta": c.delta.value, f"{m}_delta_lo": c.delta.lo, f"{m}_delta_hi": c.delta.hi,
                               f"{m}_p_improve": c.p_improve, f"{m}_resolved": c.delta.resolved,
                               f"{m}_seeds_needed": c.seeds_needed, f"{m}_pairs": c.pairs})
            records.append(record)
    return records
