"""Interval estimates and paired comparisons of recall from per-query hits (numpy + scipy only).

The unit of data is a hit matrix `H (S, Q)`: row s = one training seed, column q = one evaluation
query, entry 1 when the query is a hit at a given R{k}@{iou}. A run's recall is 100 * mean of
its row; the estimate is 100 * mean of H. Seeds and queries are *crossed* (every seed is scored
on the same queries), so the estimate varies with both factors (Owen 2007; Bouthillier et al.
2021, "Accounting for variance in machine learning benchmarks"): another draw of training seeds,
and another draw of evaluation videos. The interval adds the two variances and takes its quantile
from Student's t:

* seed factor: v_seed = s^2 / S, s^2 the sample variance (ddof 1) of the S per-seed recalls. With
  3-5 seeds only a t quantile is honest. A percentile bootstrap that resamples the seed rows (our
  first method) has 10 distinct seed draws at S = 3, a variance (S - 1) / S of the sample's and
  normal tails: in the simulated A/A benchmark of tests/workflow/test_stats.py (seed effect 0.35
  on the logit, 160 videos) it flagged 16.5 % of null pairs at 3 seeds and 10.5 % at 5 (nominal
  5 %), and the default DAG's A/A control came out flagged (README, issue 11).
* query factor: v_query = the squared bootstrap standard error of the seed-averaged recall when
  the *videos* are resampled: the queries of one video share its noise, style and layout, and
  paraphrased sentences share the very same target window (2 per event on the synthetic TACoS,
  ~130 sentences per video on real TACoS), so the query factor is resampled by *cluster*, the
  cluster being a video (Davison & Hinkley 1997 §3.8; Field & Welsh 2007), within each stratum
  (the query kinds, as rliable stratifies runs by task). A cluster is the (video, kind) group of
  queries; each replicate draws C_k clusters with replacement within each stratum k (so every
  replicate keeps the split's plain / long_range mix) and recomputes the recall on the resampled
  data, the ratio estimator 100 * (hits of the drawn clusters' queries) / (queries drawn), so a
  replicate that draws larger clusters weighs them more, exactly as the recall of a resampled
  data set would; a stratum of a single cluster stays fixed. `scipy.stats.bootstrap`, 2,000
  replicates. Without cluster labels each query is its own cluster.
* interval: estimate +- t_{0.975, nu} * sqrt(v_seed + v_query), nu the Welch-Satterthwaite degrees
  of freedom, nu = (v_seed + v_query)^2 / (v_seed^2 / (S - 1) + v_query^2 / (C - 1)) with C the
  resampled clusters; clipped to the metric's range. The per-query noise of a seed (the seed x
  query interaction) sits in both terms, so where seeds do not matter the interval is slightly
  conservative (up to sqrt 2 wider), never too narrow. With a single seed the interval is the
  percentile interval of the video bootstrap alone: it covers the sampling of videos, not seeds.

A comparison of a variant with `full` uses the difference matrix `D = H_variant - H_full` over the
seed indices both have (the variant's i-th seed against full's i-th seed: the same data, its own
training seed) and the same queries, so the paired interval keeps the pairing on both factors: the
per-seed recalls above become per-seed paired differences.

* P(variant > full): rliable's probability of improvement (Agarwal et al. 2021) for one task: the
  Mann-Whitney U statistic of the variant's run recalls against full's, divided by the number of
  (variant run, full run) pairs: P = mean over pairs of [x > y] + 0.5 [x = y]
  (scipy.stats.mannwhitneyu).
* resolved: the 95 % interval of the difference excludes 0 *and* at least MIN_PAIRS_TO_RESOLVE
  seeds are paired: on one pair the interval knows nothing of the seed spread. An interval that
  excludes 0 on a single pair is shown with † (excludes 0, too few seeds to count).
* seeds needed: the smallest n >= 2 for which a two-sided paired t-test at alpha = 0.05 has power
  >= 0.8 when the true mean paired difference is the observed mean delta and the sd of the per-seed
  differences is the observed sd: power(n) = P(|T| > t_{0.975, n-1}) with T ~ noncentral
  t(n-1, delta * sqrt(n) / sd) (scipy.stats.nct). Infinite when delta = 0; undefined (NaN) with
  fewer than two paired seeds.

* p-value of a Δ: two-sided, from the interval's own t (Δ / se on the Welch-Satterthwaite degrees
  of freedom), so p < 0.05 exactly where the 95 % interval excludes 0. `holm` adjusts a family of
  them (the A/A control's row: its verdict is family-wise).
* A/A calibration (`half_splits`, `split_flags`): the runs of `full` and of its negative control
  are one configuration, so every cut of them into two halves is another null comparison; the
  share of cells it flags estimates the method's false-alarm rate on the table's own data.

Everything is deterministic: every bootstrap is drawn from `np.random.default_rng(seed)`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

CONFIDENCE = 0.95
N_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
ALPHA = 0.05
POWER = 0.8
MAX_SEEDS = 10_000  # seeds_needed reports inf beyond this
MIN_PAIRS_TO_RESOLVE = 2  # one pair says nothing of the seed spread

METHOD_NOTE = (
    f"Intervals: {CONFIDENCE:.0%}, estimate ± Student t × sqrt(seed variance / seeds + video variance), "
    "Welch–Satterthwaite degrees of freedom (scipy.stats.t): the seed variance from the per-seed recalls (for Δ the "
    "per-seed paired differences), the video variance the squared standard error of a bootstrap "
    f"(scipy.stats.bootstrap, {N_RESAMPLES} replicates, fixed seed) resampling clusters of queries = videos within "
    "each query kind (a video's queries are drawn together, paraphrases and all; recall recomputed on each "
    "resampled set). One seed: the bootstrap's percentile interval (videos only). Δ = variant − full, paired by "
    f"seed index and query; ✓ = resolved (the Δ interval excludes 0, with at least {MIN_PAIRS_TO_RESOLVE} paired "
    f"seeds); † = the interval excludes 0 on a single paired seed, which says nothing of the seed spread (not "
    "counted as resolved). P↑ = P(variant > full), rliable's probability of improvement over "
    "(variant run, full run) pairs (scipy.stats.mannwhitneyu). n = seeds a paired t-test needs to resolve "
    f"the observed Δ at the observed per-seed spread (alpha {ALPHA}, power {POWER}, noncentral t)."
)


@dataclass(frozen=True)
class Interval:
    value: float  # the point estimate
    lo: float
    hi: float
    # what the interval was made of (not part of its identity: NaN for a single seed, and NaN != NaN)
    se: float = field(default=math.nan, compare=False)  # sqrt(seed variance / seeds + video variance)
    dof: float = field(default=math.nan, compare=False)  # its Welch-Satterthwaite degrees of freedom

    @property
    def p_value(self) -> float:
        """Two-sided p-value of "the true value is 0" under the interval's own t (estimate / se on
        `dof` degrees of freedom); NaN without a seed spread (one seed)."""
        from scipy import stats

        if not (math.isfinite(self.se) and self.dof > 0):
            return math.nan
        if self.se == 0.0:
            return 1.0 if self.value == 0.0 else 0.0
        return float(2.0 * stats.t.sf(abs(self.value) / self.se, self.dof))

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
        """The Δ interval excludes 0, on enough paired seeds to know the seed spread."""
        return self.delta.resolved and self.pairs >= MIN_PAIRS_TO_RESOLVE

    @property
    def excludes_zero_on_few_seeds(self) -> bool:
        return self.delta.resolved and self.pairs < MIN_PAIRS_TO_RESOLVE


def _counts(indices: np.ndarray, n: int) -> np.ndarray:
    """(B, m) resampled indices into range(n) -> (B, n) how often each index was drawn."""
    indices = np.atleast_2d(indices)
    batch = indices.shape[0]
    offsets = indices + (np.arange(batch)[:, None] * n)
    return np.bincount(offsets.ravel(), minlength=batch * n).reshape(batch, n).astype(float)


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


@dataclass(frozen=True)
class VideoBootstrap:
    """The video (cluster) bootstrap of the seed-averaged recall, per metric."""

    values: np.ndarray  # (M,) 100 * mean hit
    standard_error: np.ndarray  # (M,) bootstrap standard error; 0 when nothing can be resampled
    lo: np.ndarray  # (M,) percentile interval
    hi: np.ndarray
    clusters: int  # clusters resampled (strata of a single cluster stay fixed and do not count)


def video_bootstrap(stack: np.ndarray, strata: Sequence | None = None, clusters: Sequence | None = None, *,
                    seed: int = BOOTSTRAP_SEED, n_resamples: int = N_RESAMPLES,
                    confidence: float = CONFIDENCE) -> VideoBootstrap:
    """The query factor (module docstring) of `stack (M, S, Q)`: the seeds are averaged (held
    fixed) and the clusters resampled within their strata; the metrics share each replicate."""
    from scipy import stats

    stack = np.asarray(stack, dtype=float)
    # hits summed over seeds: integers (differences too), so every sum below is exact and the
    # result does not depend on the memory layout of `stack`
    hits = stack.sum(axis=1)  # (M, Q)
    n_seeds = stack.shape[1]
    n_metrics, n_queries = hits.shape
    if clusters is not None and np.shape(clusters) != (n_queries,):
        raise ValueError(f"clusters must give one label per query ({n_queries}), got shape {np.shape(clusters)}")
    values = 100.0 * hits.sum(axis=1) / (n_seeds * n_queries)  # (M,)
    fixed_sum, fixed_size = np.zeros(n_metrics), 0.0  # strata of one cluster: in every replicate
    moving = []  # per resampled stratum: its clusters' hit sums (M, C_k) and sizes (C_k,)
    for cols in _strata_columns(strata, n_queries):
        ids = _cluster_ids(clusters, cols)
        n_clusters = int(ids.max()) + 1
        total = np.zeros((n_metrics, n_clusters))
        np.add.at(total.T, ids, hits[:, cols].T)
        size = np.bincount(ids, minlength=n_clusters).astype(float)
        if n_clusters < 2:  # scipy needs >= 2 observations to resample
            fixed_sum, fixed_size = fixed_sum + total.sum(axis=1), fixed_size + float(size.sum())
        else:
            moving.append((total, size))
    if not moving:
        zero = np.zeros(n_metrics)
        return VideoBootstrap(values, zero, values.copy(), values.copy(), 0)

    def statistic(*drawn, axis=-1):
        batched = np.ndim(drawn[0]) > 1  # scipy passes (B, n) resamples; (n,) for the data itself
        hit_sum, size = fixed_sum[:, None], fixed_size  # (M, B), a scalar or (B,)
        for idx, (total, n_of) in zip(drawn, moving):
            counts = _counts(idx, len(n_of))  # (B, C_k) how often each cluster was drawn
            hit_sum = hit_sum + total @ counts.T  # (M, C_k) @ (C_k, B)
            size = size + counts @ n_of
        out = 100.0 * hit_sum / (n_seeds * size)  # (M, B)
        return out if batched else out[:, 0]

    result = stats.bootstrap([np.arange(len(size)) for _, size in moving], statistic, n_resamples=n_resamples,
                             confidence_level=confidence, method="percentile", vectorized=True, paired=False,
                             rng=np.random.default_rng(seed))
    lo, hi = (np.atleast_1d(x) for x in result.confidence_interval)
    return VideoBootstrap(values, np.atleast_1d(result.standard_error), lo, hi,
                          sum(len(size) for _, size in moving))


def intervals(stack: np.ndarray, strata: Sequence | None = None, clusters: Sequence | None = None, *,
              bounds: tuple[float, float] = (0.0, 100.0), confidence: float = CONFIDENCE, **kwargs) -> list[Interval]:
    """Per metric m: 100 * mean of `stack[m] (S, Q)` with its seed + video interval (module
    docstring), clipped to `bounds`. `strata`, `clusters`: a label per query (its kind, its
    video); a cluster is the queries sharing a (stratum, cluster label); None: one stratum, each
    query its own cluster. `kwargs`: `video_bootstrap`'s seed and n_resamples."""
    from scipy import stats

    stack = np.asarray(stack, dtype=float)
    if stack.ndim != 3 or 0 in stack.shape[1:]:
        raise ValueError(f"expected a (metrics, seeds, queries) stack with seeds and queries, got shape {stack.shape}")
    if stack.shape[0] == 0:
        return []
    videos = video_bootstrap(stack, strata, clusters, confidence=confidence, **kwargs)
    n_seeds = stack.shape[1]
    se = dof = np.full(stack.shape[0], math.nan)
    if n_seeds < 2:  # no seed spread to estimate: the video bootstrap alone
        lo, hi = videos.lo, videos.hi
    else:
        v_seed = (100.0 * stack.sum(axis=2) / stack.shape[2]).var(axis=1, ddof=1) / n_seeds  # (M,)
        v_query = videos.standard_error ** 2
        total = v_seed + v_query
        # Welch-Satterthwaite; no clusters resampled means v_query = 0, so its term is 0 either way
        denominator = v_seed ** 2 / (n_seeds - 1) + v_query ** 2 / max(videos.clusters - 1, 1)
        dof = np.divide(total ** 2, denominator, out=np.full_like(total, np.inf), where=denominator > 0)
        se = np.sqrt(total)
        half = stats.t.ppf(0.5 + confidence / 2.0, dof) * se
        lo, hi = videos.values - half, videos.values + half
    lo, hi = np.clip(lo, *bounds), np.clip(hi, *bounds)
    return [Interval(float(v), float(a), float(b), float(e), float(d))
            for v, a, b, e, d in zip(videos.values, lo, hi, se, dof)]


def interval(matrix: np.ndarray, strata: Sequence | None = None, clusters: Sequence | None = None,
             **kwargs) -> Interval:
    """`intervals` of one metric's `matrix (S, Q)`."""
    return intervals(np.asarray(matrix, dtype=float)[None], strata, clusters, **kwargs)[0]


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
    """`intervals` of several `(M_i, S, Q)` stacks on the same queries (one `strata`, one
    `clusters`): those with the same seed count go through one bootstrap call (the same draws a call
    per stack would make: same seed, same sample sizes), which shares the costly resampling."""
    out = {}
    by_seeds: dict[int, list] = {}
    for key, stack in stacks.items():
        by_seeds.setdefault(np.shape(stack)[1], []).append(key)
    for keys in by_seeds.values():
        merged = intervals(np.concatenate([stacks[k] for k in keys], axis=0), strata, clusters, **kwargs)
        start = 0
        for k in keys:
            out[k] = merged[start:start + len(stacks[k])]
            start += len(stacks[k])
    return out


def compare_many(pairs: dict, strata: Sequence | None = None, clusters: Sequence | None = None,
                 **kwargs) -> dict:
    """Per key, per metric: variant `(M, S_v, Q)` vs reference `(M, S_r, Q)` hit stacks (same
    query columns; seed rows paired by index up to min(S_v, S_r)); the Δ interval is `intervals`
    of the paired differences. P(improve) uses every run of both."""
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
    deltas = intervals_many(diffs, strata, clusters, bounds=(-100.0, 100.0), **kwargs)
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


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (Holm 1979, "A simple sequentially rejective multiple
    test procedure"): with the m finite p-values sorted ascending, p_(i) becomes
    max_{j <= i} min(1, (m - j + 1) p_(j)); rejecting where the adjusted value is below alpha keeps
    the chance of any false rejection in the family <= alpha. NaN entries stay NaN, outside the family."""
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full(p.shape, math.nan)
    finite = np.flatnonzero(np.isfinite(p))
    running = 0.0
    for rank, index in enumerate(finite[np.argsort(p[finite], kind="stable")]):
        running = max(running, min(1.0, (len(finite) - rank) * p[index]))
        adjusted[index] = running
    return adjusted


MAX_SPLITS = 35  # C(8, 4) / 2: every split up to 4 + 4 runs; a fixed random subset beyond


def half_splits(n_runs: int, *, max_splits: int = MAX_SPLITS, seed: int = BOOTSTRAP_SEED) -> list[tuple[list, list]]:
    """The ways to cut runs 0 .. n_runs - 1 into two groups of n_runs // 2 (the odd one out joins the
    second), each unordered split once (run 0 is always in the first group), in lexicographic
    order, so the first split is (first half, second half). Beyond `max_splits`, the first split and
    a fixed random choice of the others."""
    import itertools

    k = n_runs // 2
    if k < 1:
        return []
    splits = [(list(a), [i for i in range(n_runs) if i not in a])
              for a in itertools.combinations(range(n_runs), k) if a[0] == 0]
    if len(splits) > max_splits:
        rng = np.random.default_rng(seed)
        keep = sorted(rng.choice(np.arange(1, len(splits)), size=max_splits - 1, replace=False).tolist())
        splits = [splits[0]] + [splits[i] for i in keep]
    return splits


def split_flags(stack: np.ndarray, strata: Sequence | None = None, clusters: Sequence | None = None,
                **kwargs) -> np.ndarray:
    """A/A calibration. `stack (M, R, Q)`: R runs of one configuration (the reference and its
    negative control, seeds disjoint). Every `half_splits` split of the runs is compared as
    variant (second group) against reference (first group), exactly as a table compares a variant
    with `full`; returns resolved (S_splits, M) booleans. With a calibrated method about 5 % of the
    cells come out resolved, whatever the seed distribution. All splits share one bootstrap call."""
    stack = np.asarray(stack, dtype=float)
    splits = half_splits(stack.shape[1])
    compared = compare_many({i: (stack[:, b], stack[:, a]) for i, (a, b) in enumerate(splits)}, strata, clusters,
                            **kwargs)
    return np.array([[c.resolved for c in compared[i]] for i in range(len(splits))], dtype=bool).reshape(
        len(splits), stack.shape[0])
