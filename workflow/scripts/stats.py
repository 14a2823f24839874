"""Interval estimates and paired comparisons of recall from per-query hits (numpy + scipy only).

The unit of data is a hit matrix `H (S, Q)`: row s = one training seed, column q = one evaluation
query, entry 1 when the query is a hit at a given R{k}@{iou}. A run's recall is 100 * mean of
its row. Seeds and queries are *crossed* (every seed is scored on the same queries), so the
bootstrap resamples both factors independently ("two-way" or pigeonhole bootstrap, Owen 2007).
Queries are not independent, though: the queries of one video share its noise, style and layout,
and paraphrased sentences share the very same target window (2 per event on the synthetic TACoS,
~130 sentences per video on real TACoS). So the query factor is resampled by *cluster*, the
cluster being a video (hierarchical / cluster bootstrap, Davison & Hinkley 1997 §3.8; Field &
Welsh 2007), within each stratum (the query kinds, as rliable stratifies runs by task):

* a cluster is the (video, kind) group of queries: the stratum k has C_k clusters of sizes n_c;
* each replicate draws S seed rows with replacement and, independently, C_k clusters with
  replacement *within each stratum* (so every replicate keeps the split's plain / long_range
  mix of clusters), and recomputes the recall on the resampled data: the ratio estimator
  100 * (hits summed over the drawn seeds and the drawn clusters' queries)
      / (S * queries in the drawn clusters),
  so a replicate that draws larger clusters weighs them more, exactly as the recall of a
  resampled dataset would;
* a stratum of a single cluster cannot be resampled: it stays fixed (in every replicate);
* the 95 % interval is the percentile interval of 2,000 such replicates, computed by
  `scipy.stats.bootstrap(method="percentile")`, which draws each of its samples (the seed index
  vector and one cluster index vector per stratum; `paired=False`) independently — exactly the
  scheme above. With a single seed only the clusters are resampled. Without cluster labels (or
  when every cluster holds one query) it is the per-query two-way bootstrap, draw for draw.

A comparison of a variant with `full` uses the difference matrix `D = H_variant - H_full` over the
seed indices both have (the variant's i-th seed against full's i-th seed: the same data, its own
training seed) and the same queries, so the paired interval keeps the pairing on both factors.

* P(variant > full): rliable's probability of improvement (Agarwal et al. 2021) for one task: the
  Mann-Whitney U statistic of the variant's run recalls against full's, divided by the number of
  (variant run, full run) pairs: P = mean over pairs of [x > y] + 0.5 [x = y]
  (scipy.stats.mannwhitneyu).
* resolved: the 95 % interval of the difference excludes 0 *and* at least MIN_PAIRS_TO_RESOLVE
  seeds are paired. With 2 seeds the seed draw of the bootstrap has 3 distinct outcomes and
  understates the seed spread (its variance is (n - 1) / n of the sample's): measured in the
  default DAG at 2 seeds, the A/A control (full against full under other seeds) differed by -16
  R1@0.3 points while no_gate's -24 [-39, -8] came out "resolved". An interval that excludes 0 on
  fewer pairs is shown with † (excludes 0, too few seeds to count).
* seeds needed: the smallest n >= 2 for which a two-sided paired t-test at alpha = 0.05 has power
  >= 0.8 when the true mean paired difference is the observed mean delta and the sd of the per-seed
  differences is the observed sd: power(n) = P(|T| > t_{0.975, n-1}) with T ~ noncentral
  t(n-1, delta * sqrt(n) / sd) (scipy.stats.nct). Infinite when delta = 0; undefined (NaN) with
  fewer than two paired seeds.

Everything is deterministic: every bootstrap is drawn from `np.random.default_rng(seed)`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95
N_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
ALPHA = 0.05
POWER = 0.8
MAX_SEEDS = 10_000  # seeds_needed reports inf beyond this
MIN_PAIRS_TO_RESOLVE = 3  # fewer paired seeds: the seed resampling is too coarse to call a Δ resolved

METHOD_NOTE = (
    f"Intervals: {CONFIDENCE:.0%} percentile bootstrap (scipy.stats.bootstrap, {N_RESAMPLES} replicates, "
    "fixed seed) resampling seeds and, independently, clusters of queries = videos within each query kind "
    "(a video's queries are drawn together, paraphrases and all; cluster bootstrap of the seed x query hit "
    "matrix, recall recomputed on each resampled set). Δ = variant − full, paired by seed index and query; ✓ = resolved "
    f"(the Δ interval excludes 0, with at least {MIN_PAIRS_TO_RESOLVE} paired seeds); † = the interval excludes 0 "
    f"but fewer than {MIN_PAIRS_TO_RESOLVE} seeds are paired, too few for the seed resampling to be trusted "
    "(not counted as resolved). P↑ = P(variant > full), rliable's probability of improvement over "
    "(variant run, full run) pairs (scipy.stats.mannwhitneyu). n = seeds a paired t-test needs to resolve "
    f"the observed Δ at the observed per-seed spread (alpha {ALPHA}, power {POWER}, noncentral t)."
)


@dataclass(frozen=True)
class Interval:
    value: float  # the point estimate
    lo: float
    hi: float

    @property
    def resolved(self) -> bool:
        """The interval excludes 0 (strictly on one side)."""
        return bool(self.lo > 0.0 or self.hi < 0.0)


@dataclass(frozen=True)
class Comparison:
    """A variant against the reference on one metric (recall in percent)."""

    delta: Interval
    p_improve: float
    seeds_needed: float  # an integer, inf (no difference to resolve) or NaN (fewer than 2 pairs)
    pairs: int  # seed indices both have

    @property
    def resolved(self) -> bool:
        """The Δ interval excludes 0, on enough paired seeds for the seed resampling to mean much."""
        return self.delta.resolved and self.pairs >= MIN_PAIRS_TO_RESOLVE

    @property
    def excludes_zero_on_few_seeds(self) -> bool:
        return self.delta.resolved and self.pairs < MIN_PAIRS_TO_RESOLVE


def _counts(indices: np.ndarray, n: int) -> np.ndarray:
    """(B, m) resampled indices into range(n) -> (B, n) float32 how often each index was drawn."""
    indices = np.atleast_2d(indices)
    batch = indices.shape[0]
    offsets = indices + (np.arange(batch)[:, None] * n)
    return np.bincount(offsets.ravel(), minlength=batch * n).reshape(batch, n).astype(np.float32)


def _strata_columns(strata: Sequence | None, n_queries: int) -> list[np.ndarray]:
    """Column indices of each stratum, in first-seen order (one stratum when None)."""
    if strata is None:
        return [np.arange(n_queries)]
    strata = np.asarray(strata)
    if strata.shape != (n_queries,):
        raise ValueError(f"strata must give one label per query ({n_queries}), got shape {strata.shape}")
    labels = list(dict.fromkeys(strata.tolist()))
    return [np.flatnonzero(strata == label) for label in labels]


def _cluster_ids(clusters: Sequence | None, cols: np.ndarray) -> np.ndarray:
    """Per column of one stratum (`cols`), the index of its cluster within the stratum, clusters
    numbered in first-seen order (each query its own cluster when `clusters` is None)."""
    if clusters is None:
        return np.arange(len(cols))
    labels = np.asarray(clusters)[cols].tolist()
    number = {label: i for i, label in enumerate(dict.fromkeys(labels))}
    return np.array([number[label] for label in labels], dtype=int)


def two_way_intervals(stack: np.ndarray, strata: Sequence | None = None, clusters: Sequence | None = None, *,
                      seed: int = BOOTSTRAP_SEED, n_resamples: int = N_RESAMPLES,
                      confidence: float = CONFIDENCE) -> list[Interval]:
    """Per metric m: 100 * mean of `stack[m] (S, Q)` with its two-way cluster bootstrap interval
    (module docstring). `stack (M, S, Q)`: the metrics share each replicate's draw of seeds and
    clusters. `strata`, `clusters`: a label per query (its kind, its video); a cluster is the
    queries sharing a (stratum, cluster label); None: one stratum, each query its own cluster."""
    from scipy import stats

    stack = np.asarray(stack, dtype=float)
    if stack.ndim != 3 or 0 in stack.shape[1:]:
        raise ValueError(f"expected a (metrics, seeds, queries) stack with seeds and queries, got shape {stack.shape}")
    if stack.shape[0] == 0:
        return []
    n_metrics, n_seeds, n_queries = stack.shape
    if clusters is not None and np.shape(clusters) != (n_queries,):
        raise ValueError(f"clusters must give one label per query ({n_queries}), got shape {np.shape(clusters)}")
    values = 100.0 * stack.mean(axis=(1, 2))  # (M,)
    # per stratum: its clusters' hit sums (M, S, C_k) and sizes (C_k,)
    sums, sizes = [], []
    for cols in _strata_columns(strata, n_queries):
        ids = _cluster_ids(clusters, cols)
        n_clusters = int(ids.max()) + 1
        total = np.zeros((n_clusters, n_metrics * n_seeds))
        np.add.at(total, ids, stack[:, :, cols].reshape(n_metrics * n_seeds, -1).T)  # exact: integer sums
        sums.append(total.T.reshape(n_metrics, n_seeds, n_clusters))
        sizes.append(np.bincount(ids, minlength=n_clusters).astype(float))
    # strata of one cluster cannot be resampled (scipy needs >= 2 observations): they stay fixed
    fixed_sum = np.zeros((n_metrics, n_seeds))  # (M, S)
    fixed_size = 0.0
    moving = []
    for total, size in zip(sums, sizes):
        if len(size) < 2:
            fixed_sum, fixed_size = fixed_sum + total.sum(axis=2), fixed_size + float(size.sum())
        else:
            moving.append((total, size))
    resample_seeds = n_seeds >= 2
    samples = ([np.arange(n_seeds)] if resample_seeds else []) + [np.arange(len(size)) for _, size in moving]
    if not samples:  # one seed, one cluster: nothing to resample
        return [Interval(float(v), float(v), float(v)) for v in values]

    # hits are 0/1 (differences -1/0/1): a replicate's per-seed sum is an integer of at most
    # (clusters drawn) x (largest cluster); below 2**24 it is exact in float32, which halves the
    # memory traffic of the big products
    bound = max(len(size) * float(size.max()) for _, size in moving) if moving else 0.0
    dtype = np.float32 if fixed_size + bound < 2 ** 24 else np.float64
    moving = [(total.astype(dtype).transpose(0, 2, 1), size.astype(dtype)) for total, size in moving]  # (M, C_k, S)

    def statistic(*drawn, axis=-1):
        batched = np.ndim(drawn[0]) > 1  # scipy passes (B, n) resamples; (n,) for the data itself
        drawn = list(drawn)
        seed_weights = _counts(drawn.pop(0), n_seeds) if resample_seeds else np.ones((1, n_seeds))  # (B, S)
        per_seed = fixed_sum[:, None, :]  # (M, B, S): hits summed over the drawn clusters, per seed
        size = fixed_size  # queries drawn: a scalar, or (B,) once a stratum is resampled
        for idx, (total, n_of) in zip(drawn, moving):
            counts = _counts(idx, len(n_of)).astype(dtype)  # (B, C_k)
            # (1, B, C_k) @ (M, C_k, S) -> (M, B, S)
            per_seed = per_seed + np.matmul(counts[None], total)
            size = size + (counts @ n_of).astype(float)
        out = 100.0 * (seed_weights[None] * per_seed.astype(float)).sum(axis=-1) / (n_seeds * size)  # (M, B)
        return out if batched else out[:, 0]

    result = stats.bootstrap(samples, statistic, n_resamples=n_resamples, confidence_level=confidence,
                             method="percentile", vectorized=True, paired=False,
                             rng=np.random.default_rng(seed))
    lows, highs = (np.atleast_1d(x) for x in result.confidence_interval)
    return [Interval(float(v), float(lo), float(hi)) for v, lo, hi in zip(values, lows, highs)]


def two_way_interval(matrix: np.ndarray, strata: Sequence | None = None, clusters: Sequence | None = None,
                     **kwargs) -> Interval:
    """`two_way_intervals` of one metric's `matrix (S, Q)`."""
    return two_way_intervals(np.asarray(matrix, dtype=float)[None], strata, clusters, **kwargs)[0]


def probability_of_improvement(variant: Sequence[float], reference: Sequence[float]) -> float:
    """rliable's P(X > Y) for one task: U / (m n) over all (variant run, reference run) pairs."""
    from scipy import stats

    x = np.asarray(variant, dtype=float)
    y = np.asarray(reference, dtype=float)
    if x.size == 0 or y.size == 0:
        return math.nan
    u = stats.mannwhitneyu(x, y, alternative="two-sided", method="asymptotic").statistic
    return float(u) / (x.size * y.size)


def paired_t_power(n: int, delta: float, sd: float, alpha: float = ALPHA) -> float:
    """Power of a two-sided paired t-test with n pairs at true mean difference delta, sd sd."""
    from scipy import stats

    df = n - 1
    nc = delta * math.sqrt(n) / sd
    crit = stats.t.ppf(1.0 - alpha / 2.0, df)
    return float(stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc))


def seeds_needed(differences: Sequence[float], alpha: float = ALPHA, power: float = POWER) -> float:
    """Smallest n >= 2 with paired_t_power(n, mean, sd) >= power (module docstring)."""
    from scipy import stats

    d = np.asarray(differences, dtype=float)
    if d.size < 2:
        return math.nan
    delta, sd = float(d.mean()), float(d.std(ddof=1))
    if delta == 0.0:
        return math.inf
    if sd == 0.0:  # every seed moved by the same amount: the smallest test resolves it
        return 2.0
    z = stats.norm.ppf(1.0 - alpha / 2.0) + stats.norm.ppf(power)
    n = max(2, math.floor((z * sd / delta) ** 2))  # the normal approximation; t needs a few more
    while n <= MAX_SEEDS:
        if paired_t_power(n, delta, sd, alpha) >= power:
            return float(n)
        n += 1
    return math.inf


def intervals_many(stacks: dict, strata: Sequence | None = None, clusters: Sequence | None = None,
                   **kwargs) -> dict:
    """`two_way_intervals` of several `(M_i, S, Q)` stacks on the same queries (one `strata`, one
    `clusters`): those with the same seed count go through one bootstrap call (the same draws a call
    per stack would make: same seed, same sample sizes), which shares the costly resampling."""
    out = {}
    by_seeds: dict[int, list] = {}
    for key, stack in stacks.items():
        by_seeds.setdefault(np.shape(stack)[1], []).append(key)
    for keys in by_seeds.values():
        merged = two_way_intervals(np.concatenate([stacks[k] for k in keys], axis=0), strata, clusters, **kwargs)
        start = 0
        for k in keys:
            out[k] = merged[start:start + len(stacks[k])]
            start += len(stacks[k])
    return out


def compare_many(pairs: dict, strata: Sequence | None = None, clusters: Sequence | None = None,
                 **kwargs) -> dict:
    """Per key, per metric: variant `(M, S_v, Q)` vs reference `(M, S_r, Q)` hit stacks (same
    query columns; seed rows paired by index up to min(S_v, S_r)); the Δ interval resamples seeds
    and clusters as `two_way_intervals`. P(improve) uses every run of both."""
    diffs, out = {}, {}
    for key, (variant, reference) in pairs.items():
        variant, reference = np.asarray(variant, dtype=float), np.asarray(reference, dtype=float)
        if variant.ndim != 3 or variant.shape[::2] != reference.shape[::2]:
            raise ValueError(f"variant and reference must share metrics and queries: {variant.shape} vs {reference.shape}")
        n_pairs = min(variant.shape[1], reference.shape[1])
        if n_pairs == 0:
            nan = Interval(math.nan, math.nan, math.nan)
            out[key] = [Comparison(nan, math.nan, math.nan, 0) for _ in range(variant.shape[0])]
            continue
        diffs[key] = variant[:, :n_pairs] - reference[:, :n_pairs]  # (M, pairs, Q) in {-1, 0, 1}
    deltas = intervals_many(diffs, strata, clusters, **kwargs)
    for key, diff in diffs.items():
        variant, reference = (np.asarray(x, dtype=float) for x in pairs[key])
        run_v, run_r = 100.0 * variant.mean(axis=2), 100.0 * reference.mean(axis=2)  # (M, S) run recalls
        per_seed = 100.0 * diff.mean(axis=2)  # (M, pairs)
        out[key] = [Comparison(deltas[key][m], probability_of_improvement(run_v[m], run_r[m]),
                               seeds_needed(per_seed[m]), diff.shape[1]) for m in range(diff.shape[0])]
    return out


def compare(variant: np.ndarray, reference: np.ndarray, strata: Sequence | None = None,
            clusters: Sequence | None = None, **kwargs) -> list[Comparison]:
    """`compare_many` of one (variant, reference) pair."""
    return compare_many({0: (variant, reference)}, strata, clusters, **kwargs)[0]
