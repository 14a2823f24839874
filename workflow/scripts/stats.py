"""Interval estimates and paired comparisons of recall from per-query hits (numpy + scipy only).

The unit of data is a hit matrix `H (S, Q)`: row s = one training seed, column q = one evaluation
query, entry 1 when the query is a hit at a given R{k}@{iou}. A run's recall is 100 * mean of
its row. Seeds and queries are *crossed* (every seed is scored on the same queries), so the
bootstrap resamples both factors independently ("two-way" or pigeonhole bootstrap, Owen 2007):

* each replicate draws S seed rows with replacement and, independently, Q query columns with
  replacement *within each stratum* (the query kinds, so every replicate keeps the split's
  plain / long_range mix), and takes 100 * mean of the drawn S x Q sub-matrix;
* the 95 % interval is the percentile interval of 2,000 such replicates, computed by
  `scipy.stats.bootstrap(method="percentile")`, which draws each of its samples (the seed index
  vector and one query index vector per stratum; `paired=False`) independently — exactly the
  two-way scheme above. With a single seed only the queries are resampled.

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
    "fixed seed) resampling seeds and, independently, queries within each query kind (two-way bootstrap "
    "of the seed x query hit matrix). Δ = variant − full, paired by seed index and query; ✓ = resolved "
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


def two_way_intervals(stack: np.ndarray, strata: Sequence | None = None, *, seed: int = BOOTSTRAP_SEED,
                      n_resamples: int = N_RESAMPLES, confidence: float = CONFIDENCE) -> list[Interval]:
    """Per metric m: 100 * mean of `stack[m] (S, Q)` with its two-way bootstrap interval (module
    docstring). `stack (M, S, Q)`: the metrics share each replicate's draw of seeds and queries."""
    from scipy import stats

    stack = np.asarray(stack, dtype=float)
    if stack.ndim != 3 or 0 in stack.shape[1:]:
        raise ValueError(f"expected a (metrics, seeds, queries) stack with seeds and queries, got shape {stack.shape}")
    if stack.shape[0] == 0:
        return []
    _, n_seeds, n_queries = stack.shape
    values = 100.0 * stack.mean(axis=(1, 2))  # (M,)
    columns = _strata_columns(strata, n_queries)
    # strata of one query cannot be resampled (scipy needs >= 2 observations): they stay fixed
    fixed = [c for c in columns if len(c) < 2]
    moving = [c for c in columns if len(c) >= 2]
    fixed_sum = stack[:, :, np.concatenate(fixed)].sum(axis=2) if fixed else np.zeros(stack.shape[:2])  # (M, S)
    resample_seeds = n_seeds >= 2
    samples = ([np.arange(n_seeds)] if resample_seeds else []) + [np.arange(len(c)) for c in moving]
    if not samples:  # one seed, one query: nothing to resample
        return [Interval(float(v), float(v), float(v)) for v in values]

    # hits are 0/1 (differences -1/0/1) and counts sum to Q: the per-seed sums below are integers
    # far below 2**24, exact in float32, which halves the memory traffic of the big products
    stack32 = stack.astype(np.float32)

    def statistic(*drawn, axis=-1):
        batched = np.ndim(drawn[0]) > 1  # scipy passes (B, n) resamples; (n,) for the data itself
        drawn = list(drawn)
        seed_weights = _counts(drawn.pop(0), n_seeds) if resample_seeds else np.ones((1, n_seeds))  # (B, S)
        per_seed = fixed_sum[:, None, :]  # (M, B, S): hits summed over the drawn queries, per seed
        for idx, cols in zip(drawn, moving):
            # (1, B, Q_k) @ (M, Q_k, S) -> (M, B, S)
            per_seed = per_seed + np.matmul(_counts(idx, len(cols))[None], stack32[:, :, cols].transpose(0, 2, 1))
        out = 100.0 * (seed_weights[None] * per_seed.astype(float)).sum(axis=-1) / (n_seeds * n_queries)  # (M, B)
        return out if batched else out[:, 0]

    result = stats.bootstrap(samples, statistic, n_resamples=n_resamples, confidence_level=confidence,
                             method="percentile", vectorized=True, paired=False,
                             rng=np.random.default_rng(seed))
    lows, highs = (np.atleast_1d(x) for x in result.confidence_interval)
    return [Interval(float(v), float(lo), float(hi)) for v, lo, hi in zip(values, lows, highs)]


def two_way_interval(matrix: np.ndarray, strata: Sequence | None = None, **kwargs) -> Interval:
    """`two_way_intervals` of one metric's `matrix (S, Q)`."""
    return two_way_intervals(np.asarray(matrix, dtype=float)[None], strata, **kwargs)[0]


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


def intervals_many(stacks: dict, strata: Sequence | None = None, **kwargs) -> dict:
    """`two_way_intervals` of several `(M_i, S, Q)` stacks: those with the same seed count go through
    one bootstrap call (the same draws a call per stack would make: same seed, same sample sizes),
    which shares the costly resampling of the queries."""
    out = {}
    by_seeds: dict[int, list] = {}
    for key, stack in stacks.items():
        by_seeds.setdefault(np.shape(stack)[1], []).append(key)
    for keys in by_seeds.values():
        merged = two_way_intervals(np.concatenate([stacks[k] for k in keys], axis=0), strata, **kwargs)
        start = 0
        for k in keys:
            out[k] = merged[start:start + len(stacks[k])]
            start += len(stacks[k])
    return out


def compare_many(pairs: dict, strata: Sequence | None = None, **kwargs) -> dict:
    """Per key, per metric: variant `(M, S_v, Q)` vs reference `(M, S_r, Q)` hit stacks (same
    query columns; seed rows paired by index up to min(S_v, S_r)). P(improve) uses every run of both."""
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
    deltas = intervals_many(diffs, strata, **kwargs)
    for key, diff in diffs.items():
        variant, reference = (np.asarray(x, dtype=float) for x in pairs[key])
        run_v, run_r = 100.0 * variant.mean(axis=2), 100.0 * reference.mean(axis=2)  # (M, S) run recalls
        per_seed = 100.0 * diff.mean(axis=2)  # (M, pairs)
        out[key] = [Comparison(deltas[key][m], probability_of_improvement(run_v[m], run_r[m]),
                               seeds_needed(per_seed[m]), diff.shape[1]) for m in range(diff.shape[0])]
    return out


def compare(variant: np.ndarray, reference: np.ndarray, strata: Sequence | None = None, **kwargs) -> list[Comparison]:
    """`compare_many` of one (variant, reference) pair."""
    return compare_many({0: (variant, reference)}, strata, **kwargs)[0]
