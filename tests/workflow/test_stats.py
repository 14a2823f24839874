"""workflow/scripts/stats.py on fixture hit matrices whose answers are known: an identical pair
and an A/A pair cover 0 and are not resolved, a planted difference is resolved, the interval's
scale is the binomial one, strata and seeds are resampled as documented, P(improve) and
seeds-needed match hand/textbook values, and a fixed seed makes everything deterministic."""

from __future__ import annotations

import importlib.util
import math
import sys

import numpy as np
import pytest

from wfhelpers import SCRIPTS

_spec = importlib.util.spec_from_file_location("wf_stats", SCRIPTS / "stats.py")
stats = importlib.util.module_from_spec(_spec)
sys.modules["wf_stats"] = stats  # dataclasses look their module up while the class is built
_spec.loader.exec_module(stats)

Q, PLAIN = 2000, 1500
STRATA = np.array(["plain"] * PLAIN + ["long_range"] * (Q - PLAIN))


def full_hits(recalls=(40.0, 41.0, 42.0), seed=0) -> np.ndarray:
    """(S, Q) hits with exactly the given recall per seed, hits spread over both kinds."""
    rng = np.random.default_rng(seed)
    rows = []
    for recall in recalls:
        row = np.zeros(Q)
        row[rng.permutation(Q)[: round(recall * Q / 100)]] = 1.0
        rows.append(row)
    return np.stack(rows)


def test_identical_pair_is_zero_and_not_resolved():
    full = full_hits()
    (cmp,) = stats.compare(full[None], full[None], STRATA)
    assert (cmp.delta.value, cmp.delta.lo, cmp.delta.hi) == (0.0, 0.0, 0.0)
    assert cmp.delta.lo <= 0.0 <= cmp.delta.hi and not cmp.delta.resolved
    assert cmp.p_improve == 0.5 and math.isinf(cmp.seeds_needed) and cmp.pairs == 3


def test_aa_pair_covers_zero_and_is_not_resolved():
    """Same recall per seed, different queries hit (each variant row is a permutation of full's
    row): Δ is exactly 0 but the per-query differences are not, so the interval has width."""
    full = full_hits()
    rng = np.random.default_rng(1)
    twin = np.stack([row[rng.permutation(Q)] for row in full])
    (cmp,) = stats.compare(twin[None], full[None], STRATA)
    assert cmp.delta.value == pytest.approx(0.0, abs=1e-12)
    assert cmp.delta.lo < 0.0 < cmp.delta.hi and not cmp.delta.resolved
    assert cmp.delta.hi - cmp.delta.lo > 1.0  # two independent 40 % recalls on 2,000 queries


def test_planted_difference_is_resolved():
    """The variant loses 100 of each seed's hits: Δ = -5 points exactly, every pair worse."""
    full = full_hits()
    variant = full.copy()
    for row in variant:
        row[np.flatnonzero(row)[:100]] = 0.0
    (cmp,) = stats.compare(variant[None], full[None], STRATA)
    assert cmp.delta.value == pytest.approx(-5.0)
    assert cmp.delta.lo < -5.0 < cmp.delta.hi < 0.0 and cmp.delta.resolved
    assert cmp.p_improve == 0.0  # 35-37 % vs 40-42 %: every (variant, full) run pair is worse
    assert cmp.seeds_needed == 2.0  # the same -5 on every seed
    assert cmp.resolved and not cmp.excludes_zero_on_few_seeds


def test_an_interval_on_fewer_than_three_seeds_is_not_called_resolved():
    """The same planted -5 on 2 paired seeds: the interval still excludes 0, but a seed draw of
    2 has 3 outcomes, too coarse to trust: marked † (excludes 0, too few seeds), not resolved."""
    full = full_hits()[:2]
    variant = full.copy()
    for row in variant:
        row[np.flatnonzero(row)[:100]] = 0.0
    (cmp,) = stats.compare(variant[None], full[None], STRATA)
    assert cmp.pairs == 2 and cmp.delta.resolved
    assert not cmp.resolved and cmp.excludes_zero_on_few_seeds


def test_interval_has_the_binomial_scale():
    """One seed, p = 0.4, 2,000 queries: half-width ~ 1.96 sqrt(p (1-p) / Q) = 2.15 points."""
    hits = full_hits((40.0,))
    interval = stats.two_way_interval(hits)
    expected = 100 * 1.96 * math.sqrt(0.4 * 0.6 / Q)
    assert interval.value == pytest.approx(40.0)
    assert (interval.hi - interval.lo) / 2 == pytest.approx(expected, rel=0.15)
    assert interval.lo < 40.0 < interval.hi


def test_queries_are_resampled_within_their_kind():
    """Every plain query a hit, every long-range query a miss: stratified replicates keep 1,500
    plain and 500 long-range queries, so the mean is always 75 %; unstratified ones vary."""
    hits = np.tile((STRATA == "plain").astype(float), (3, 1))
    stratified = stats.two_way_interval(hits, STRATA)
    assert (stratified.lo, stratified.value, stratified.hi) == pytest.approx((75.0, 75.0, 75.0))
    pooled = stats.two_way_interval(hits)
    assert pooled.lo < 74.0 and pooled.hi > 76.0


def test_seeds_are_resampled():
    """Seed rows all-hit, all-miss, all-hit: queries carry no information; the seed draw of three
    rows gives 0 % with probability 1/27 > 2.5 % and 100 % with probability 8/27 > 2.5 %."""
    hits = np.stack([np.ones(Q), np.zeros(Q), np.ones(Q)])
    interval = stats.two_way_interval(hits, STRATA)
    assert interval.value == pytest.approx(200 / 3)
    assert (interval.lo, interval.hi) == (0.0, 100.0)


def test_probability_of_improvement_by_hand():
    # pairs: 1 vs 2,2,2 -> 0; 2 vs 2,2,2 -> 0.5 each; 3 vs 2,2,2 -> 1 each: (1.5 + 3) / 9
    assert stats.probability_of_improvement([1, 2, 3], [2, 2, 2]) == pytest.approx(0.5)
    assert stats.probability_of_improvement([3, 4], [1, 2]) == 1.0
    assert stats.probability_of_improvement([1], [2, 3]) == 0.0
    assert math.isnan(stats.probability_of_improvement([], [1.0]))


@pytest.mark.parametrize("effect, textbook_n", [(1.0, 10), (0.5, 34)])
def test_seeds_needed_matches_paired_t_power_tables(effect, textbook_n):
    """Paired t-test, two-sided alpha 0.05, power 0.8: Cohen's d = 1 needs 10 pairs, d = 0.5 34
    (G*Power). Differences with mean = effect and sd = 1:"""
    diffs = np.array([-1.0, 0.0, 1.0]) * math.sqrt(1.0) + effect  # mean effect, sd 1
    assert stats.seeds_needed(diffs) == textbook_n
    assert stats.paired_t_power(textbook_n, effect, 1.0) >= 0.8 > stats.paired_t_power(textbook_n - 1, effect, 1.0)


def test_seeds_needed_edge_cases():
    assert math.isnan(stats.seeds_needed([3.0]))
    assert math.isinf(stats.seeds_needed([1.0, -1.0]))
    assert stats.seeds_needed([2.0, 2.0]) == 2.0


def test_deterministic_with_a_fixed_seed():
    full, other = full_hits(), full_hits((38.0, 43.0, 41.0), seed=5)
    a = stats.compare(other[None], full[None], STRATA)
    b = stats.compare(other[None], full[None], STRATA)
    assert a == b
    c = stats.compare(other[None], full[None], STRATA, seed=1)
    assert c[0].delta.value == a[0].delta.value and (c[0].delta.lo, c[0].delta.hi) != (a[0].delta.lo, a[0].delta.hi)


def test_metrics_share_a_call_and_shapes_are_checked():
    full = full_hits()
    stack = np.stack([full, 1.0 - full])
    both = stats.two_way_intervals(stack, STRATA)
    assert [i.value for i in both] == pytest.approx([41.0, 59.0])
    assert both[0] == stats.two_way_interval(full, STRATA)
    with pytest.raises(ValueError, match="share metrics and queries"):
        stats.compare(stack, stack[:, :, :10], STRATA)
    with pytest.raises(ValueError, match="one label per query"):
        stats.two_way_interval(full, STRATA[:10])
