"""Per-query hits of a table's runs -> intervals, paired Δ, P(improve), resolved marks, seeds needed.

Reads each run's `hits.csv.gz` (beside its metrics.json; DEVELOPING.md, run directory), checks
that its column means are the run's metrics.json recalls, aligns every run on the same queries, and
stacks them per variant into `(metrics, seeds, queries)` hit arrays for stats.py. Seeds are paired
by *seed index* = seed - the variant's `seed_offset` (ablation files; 0 by default), so the A/A
control `full_aa` (same model, disjoint seeds) is paired with `full` index by index.

Every comparison is made on all queries ("all", bootstrap stratified by query kind) and on each
query kind alone (`plain`, `long_range`, ...). The bootstrap resamples videos, the queries of a
video drawn together (stats.py): the `video` column of the hits files gives each query's cluster.

Hits files written before the `video` column (the first layout of issue 11) are read, not
refused: a query's video is a fact of the split, not of the run, so when any run of the table
names the videos, the others borrow them (every run scores the same query ids, checked). When
none does, each query is its own cluster (the old per-query bootstrap) and `TableHits.warning`
says so, for the table's footnote: its intervals are too narrow where a video holds several
queries. Refusing instead would leave a table unbuildable for a run whose checkpoints were
removed (`make clean-checkpoints`), since `hieramamba evaluate RUN_DIR`, which rewrites the
file, needs them.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

import stats

HITS_FILE = "hits.csv.gz"
ID_COLUMNS = ("query_id", "kind", "length_bin", "video")
LEGACY_ID_COLUMNS = ID_COLUMNS[:3]  # hits files written before the video column
ALL = "all"  # the row over every query
KIND_ORDER = ("plain", "long_range")
# the per-metric columns of a record (`<metric>_<column>`)
COLUMNS = ("mean", "lo", "hi", "std", "delta", "delta_lo", "delta_hi", "p_value", "p_improve", "resolved",
           "excludes_zero", "seeds_needed", "pairs")
TOLERANCE = 1e-6  # percent: a hits file disagreeing with its metrics.json by more is an error


@dataclass
class RunHits:
    ids: pd.DataFrame  # query_id, kind, length_bin, video (None in a legacy file); sorted by query_id
    values: np.ndarray  # (M, Q) bool, columns in the order of `ids`
    has_video: bool = True  # False: a file written before the video column


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
    has_video = tuple(frame.columns[:len(ID_COLUMNS)]) == ID_COLUMNS
    legacy = not has_video and tuple(frame.columns[:len(LEGACY_ID_COLUMNS)]) == LEGACY_ID_COLUMNS
    if missing or not (has_video or legacy):
        raise ValueError(f"{path}: expected columns {list(ID_COLUMNS)} + {metrics}, got {list(frame.columns)}")
    if legacy:
        frame.insert(len(LEGACY_ID_COLUMNS), "video", None)
    bad = [m for m in metrics if not frame[m].isin([0, 1]).all()]
    if bad:
        raise ValueError(f"{path}: hit columns must hold 0 or 1, {bad[0]} does not")
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
    return RunHits(frame[list(ID_COLUMNS)], frame[metrics].to_numpy(dtype=bool).T, has_video)


class TableHits:
    """Hits of every run of a table; every run must score the same queries (checked), and the
    runs that name the queries' videos must name the same ones (checked). `videos`: the video of
    each query of `ids` (the bootstrap's clusters), None when no run's file names them; then
    `warning` is the footnote sentence that says so (else None)."""

    def __init__(self, runs: pd.DataFrame, metrics: list[str], specs: dict, reference: str = "full"):
        self.metrics = metrics
        self.runs = {}  # (variant, seed index) -> RunHits
        ids = None
        named, named_by, legacy = None, None, []  # the first run's videos that names them; runs that do not
        for _, run in runs.sort_values(["variant", "seed"]).iterrows():
            hits = read_run_hits(run, metrics)
            if ids is None:
                ids, first = hits.ids, run["run_dir"]
            elif not hits.ids["query_id"].equals(ids["query_id"]):
                raise ValueError(f"{run['run_dir']}/{HITS_FILE} and {first}/{HITS_FILE} score different queries: "
                                 "runs of one table must be evaluated on the same split")
            self.runs[(run["variant"], int(run["seed"]) - seed_offset(specs, run["variant"]))] = hits
            if hits.has_video:
                if named is None:
                    named, named_by = hits.ids["video"], run["run_dir"]
                elif not hits.ids["video"].equals(named):
                    q = hits.ids["query_id"][hits.ids["video"] != named].iloc[0]
                    raise ValueError(f"{run['run_dir']}/{HITS_FILE} and {named_by}/{HITS_FILE} give query {q!r} "
                                     "different videos: runs of one table must be evaluated on the same split")
            else:
                legacy.append(str(run["run_dir"]))
        self.ids = ids if ids is not None else pd.DataFrame(columns=list(ID_COLUMNS))
        self.reference = reference
        self.videos = None if named is None else named.to_numpy(dtype=object)
        self.warning = None
        if self.videos is None and legacy:
            self.warning = (
                f"Warning: the hits files of this table's {len(legacy)} runs predate the `video` column, so each query was "
                "resampled alone, as if the queries of one video (and the paraphrases of one event) were independent: "
                "the intervals are too narrow and ✓ too easy wherever a video holds several queries. Re-evaluate the "
                f"runs (`hieramamba evaluate RUN_DIR`, e.g. {legacy[0]}) for the video-cluster intervals.")
            print(f"evidence: {self.warning}", file=sys.stderr)

    def clusters(self, columns: np.ndarray) -> np.ndarray | None:
        """The bootstrap's cluster label (the video) of the selected queries; None: each its own."""
        return None if self.videos is None else self.videos[columns]

    def kinds(self) -> list[str]:
        """The query kinds present: plain, long_range (metrics.json's order), then any other, sorted."""
        present = set(self.ids["kind"])
        return [k for k in KIND_ORDER if k in present] + sorted(present - set(KIND_ORDER))

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
    m_mean, m_lo, m_hi (95 % interval), m_std (sample std of the run recalls over seeds), m_delta,
    m_delta_lo, m_delta_hi, m_p_improve, m_resolved, m_seeds_needed, m_pairs (Δ columns NaN on the
    reference's rows). Per kind, all variants share one bootstrap call (stats.intervals_many)."""
    kinds = hits.ids["kind"].to_numpy()
    ref_idx = hits.seed_indices(hits.reference)
    own = {v: hits.seed_indices(v) for v in variants}
    records = {}
    nan = stats.Interval(math.nan, math.nan, math.nan)
    for kind, cols in _kind_columns(hits):
        strata = kinds[cols] if kind == ALL else None
        stacks = {v: hits.stack(v, own[v], cols) for v in variants if own[v] and len(cols)}  # (M, S, Q_k)
        clusters = hits.clusters(cols)  # videos: stats.py makes a cluster of each (video, kind)
        means = stats.intervals_many(stacks, strata, clusters)
        pairs = {}
        for v in variants:
            common = sorted(set(own[v]) & set(ref_idx))
            if v != hits.reference and common and len(cols):
                pairs[v] = (hits.stack(v, common, cols), hits.stack(hits.reference, ref_idx, cols))
        compared = stats.compare_many(pairs, strata, clusters)
        for v in variants:
            record = {"variant": v, "kind": kind, "n_queries": len(cols), "seeds": len(own[v])}
            recalls = 100.0 * stacks[v].mean(axis=2) if v in stacks else None  # (M, S) run recalls
            n_common = len(set(own[v]) & set(ref_idx)) if v != hits.reference else len(own[v])
            for j, m in enumerate(hits.metrics):
                mean = means[v][j] if v in means else nan
                spread = float(np.std(recalls[j], ddof=1)) if recalls is not None and len(own[v]) > 1 else math.nan
                record.update({f"{m}_mean": mean.value, f"{m}_lo": mean.lo, f"{m}_hi": mean.hi, f"{m}_std": spread})
                c = compared[v][j] if v in compared else None
                record.update({
                    f"{m}_delta": c.delta.value if c else math.nan,
                    f"{m}_delta_lo": c.delta.lo if c else math.nan,
                    f"{m}_delta_hi": c.delta.hi if c else math.nan,
                    f"{m}_p_value": c.delta.p_value if c else math.nan,
                    f"{m}_p_improve": c.p_improve if c else math.nan,
                    f"{m}_resolved": c.resolved if c else None,
                    f"{m}_excludes_zero": c.delta.resolved if c else None,
                    f"{m}_seeds_needed": c.seeds_needed if c else math.nan,
                    f"{m}_pairs": c.pairs if c else n_common,
                })
            records[(v, kind)] = record
    return [records[(v, kind)] for v in variants for kind, _ in _kind_columns(hits)]


@dataclass
class Calibration:
    """The A/A calibration of a negative control (stats.split_flags over every query kind row)."""

    runs: int  # runs pooled (the reference's and the control's)
    splits: int
    flagged: int  # resolved Δ cells over all splits and rows
    cells: int
    splits_flagged: int  # splits with at least one resolved cell

    @property
    def rate(self) -> float:
        return self.flagged / self.cells if self.cells else math.nan


def aa_calibration(hits: TableHits, control: str, metrics: list[str] | None = None) -> Calibration | None:
    """Pool the runs of the reference and of its negative control `control` (one configuration,
    disjoint seeds) and compare every split of them into two halves as the table compares a
    variant with the reference, on the same rows (all queries, each kind) and `metrics` (the
    cells the verdict reads; default every metric of the hits); None with < 4 runs."""
    keep = [hits.metrics.index(m) for m in (metrics or hits.metrics) if m in hits.metrics]
    indices = {v: hits.seed_indices(v) for v in (hits.reference, control)}
    n_runs = sum(len(i) for i in indices.values())
    if n_runs < 4 or not keep:
        return None
    kinds = hits.ids["kind"].to_numpy()
    per_split = None
    for kind, cols in _kind_columns(hits):
        if not len(cols):
            continue
        pooled = np.concatenate([hits.stack(v, indices[v], cols) for v in (hits.reference, control)], axis=1)
        flags = stats.split_flags(pooled[keep], kinds[cols] if kind == ALL else None, hits.clusters(cols))  # (S, M)
        per_split = flags if per_split is None else np.concatenate([per_split, flags], axis=1)
    if per_split is None:
        return None
    return Calibration(n_runs, per_split.shape[0], int(per_split.sum()), int(per_split.size),
                       int(per_split.any(axis=1).sum()))
