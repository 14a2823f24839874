"""Seconds <-> grid formulas and video-centric grouping / cropping (reference §4.1, §4.3, §1.8)."""

from __future__ import annotations

import numpy as np
import pytest

from hieramamba.data.grid import FeatureGrid, grid_to_seconds, seconds_to_grid
from hieramamba.data.records import Query, Split, Video
from hieramamba.data.sampling import CropError, eval_samples, group_queries, random_crop, train_samples, window_seconds

TACOS = FeatureGrid(29.4, 16, 4, 4)
EGO4D = FeatureGrid(30.0, 32, 8, 2)
MAD = FeatureGrid(5.0, 1, 1, 1)


def test_grid_formulas_per_dataset():
    t = np.array([0.0, 1.0, 10.0, 123.4], dtype=np.float64)
    np.testing.assert_allclose(seconds_to_grid(t, 29.4, 10**6, TACOS), t * 29.4 / 16 - 0.5)
    np.testing.assert_allclose(seconds_to_grid(t, 30.0, 10**6, EGO4D), t * 30 / 16 - 1.0)
    np.testing.assert_allclose(seconds_to_grid(t, 5.0, 10**6, MAD), t * 5 - 0.5)
    assert TACOS.stride == 16 and EGO4D.stride == 16 and MAD.stride == 1
    assert EGO4D.features_per_second(30.0) == pytest.approx(1.875)


def test_grid_clamps_frames_and_round_trips():
    # frames are clamped to [0, num_frames] before dividing (SnAG)
    g = seconds_to_grid(np.array([-3.0, 50.0]), 29.4, 1000, TACOS)
    np.testing.assert_allclose(g, [0 / 16 - 0.5, 1000 / 16 - 0.5])
    t = np.array([[0.5, 9.25], [3.0, 30.0]])
    g = seconds_to_grid(t, 29.4, 10**6, TACOS)
    np.testing.assert_allclose(grid_to_seconds(g, 29.4, 100.0, TACOS), t)
    # model grid = feature grid / vid_stride (MAD uses vid_stride 2)
    np.testing.assert_allclose(grid_to_seconds(seconds_to_grid(t, 5.0, 10**6, MAD) / 2, 5.0, 100.0, MAD, vid_stride=2), t)
    # predictions are clamped to the video
    np.testing.assert_allclose(grid_to_seconds(np.array([-10.0, 10**5]), 29.4, 42.0, TACOS), [0.0, 42.0])


def test_grid_validates_parameters():
    with pytest.raises(ValueError):
        FeatureGrid(30.0, 32, 0, 1)
    with pytest.raises(ValueError):
        FeatureGrid(30.0, 32, 8, 0)
    assert FeatureGrid(30.0, 32, 8, 2).num_used(1799) == 900
    assert FeatureGrid(29.4, 16, 4, 4).estimate_num_clips(100.0, 29.4) == 735


def test_window_seconds_matches_snag():
    # whole video fits: W = ceil(0.9 * num_clips) with the crop ratio; else max_vid_len
    assert window_seconds(100, 2304, 29.4, TACOS, (0.9, 1.0)) == pytest.approx((16 * 89 + 16) / 29.4)
    assert window_seconds(100, 2304, 29.4, TACOS, None) == pytest.approx((16 * 99 + 16) / 29.4)
    assert window_seconds(5000, 2304, 29.4, TACOS, (0.9, 1.0)) == pytest.approx((16 * 2303 + 16) / 29.4)


def test_group_queries_greedy_hand_case():
    segs = np.array([[0.0, 5.0], [50.0, 60.0], [2.0, 8.0], [1.0, 40.0], [55.0, 100.0], [200.0, 400.0]])
    groups = group_queries(segs, win_len=20.0, max_num_text=None, rng=np.random.default_rng(0))
    # probe 0 (start 0): window [0, 20] holds 0 and 2; probe 3 (start 1): [1, 21] - longer than it? no,
    # 3 is 39 s > 20 s -> alone; probe 1 (50): [50, 70] holds 1; probe 4 (55..100) alone; 5 alone.
    assert sorted(map(sorted, groups)) == sorted([[0, 2], [3], [1], [4], [5]])
    assert sorted(i for g in groups for i in g) == list(range(len(segs)))


def test_group_queries_caps_and_is_deterministic():
    segs = np.stack([np.arange(10.0), np.arange(10.0) + 1], axis=1)
    a = group_queries(segs, 100.0, 3, np.random.default_rng(7))
    b = group_queries(segs, 100.0, 3, np.random.default_rng(7))
    assert a == b
    assert all(len(g) <= 3 for g in a)
    assert sorted(i for g in a for i in g) == list(range(10))


class _Hang(Exception):
    pass


def _within_seconds(seconds: int, fn, *args):
    """fn(*args), or _Hang when it runs longer (the bug this guards: a loop that never ends)."""
    import signal

    def stop(signum, frame):
        raise _Hang(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        return fn(*args)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_group_queries_refuses_non_finite_windows_instead_of_spinning(bad):
    segs = np.array([[1.0, 5.0], [bad, 8.0], [3.0, 4.0]])
    with pytest.raises(ValueError, match=r"non-finite query windows at positions \[1\]"):
        _within_seconds(5, group_queries, segs, 20.0, None, np.random.default_rng(0))
    for win, cap in ((np.nan, None), (0.0, None), (20.0, 0)):
        with pytest.raises(ValueError):
            _within_seconds(5, group_queries, segs[[0, 2]], win, cap, np.random.default_rng(0))


def test_group_queries_terminates_when_a_window_of_exactly_win_len_rounds_past_it():
    # e - s <= w but e > s + w in float64: the probe fitted no window of its own and was never freed
    s, w = 9.954560807291957, 18.25230788791353
    e = float(np.nextafter(s + w, np.inf))
    assert e - s <= w and e > s + w
    groups = _within_seconds(5, group_queries, np.array([[s, e], [s + 1, s + 2]]), w, None, np.random.default_rng(0))
    assert sorted(i for g in groups for i in g) == [0, 1]


def _split_with(segments: list[tuple[float, float]], duration=100.0) -> Split:
    v = Video("v", duration=duration, fps=29.4, num_frames=int(duration * 29.4))
    v.queries = [Query(f"v_{i:04d}", "v", f"q{i}", s, index=i) for i, s in enumerate(segments)]
    return Split("train", {"v": v})


def test_train_and_eval_samples():
    split = _split_with([(1.0, 2.0), (1.5, 3.0), (90.0, 95.0)])
    samples = train_samples(split, TACOS, max_vid_len=2304, max_num_text=2, rng=np.random.default_rng(0), crop_ratio=(0.9, 1.0))
    assert sorted(i for s in samples for i in s.query_indices) == [0, 1, 2]
    assert all(len(s.query_indices) <= 2 for s in samples)
    ev = eval_samples(split)
    assert len(ev) == 1 and ev[0].query_indices == (0, 1, 2)


def test_random_crop_keeps_targets():
    rng = np.random.default_rng(3)
    targets = np.array([[100.0, 140.0], [120.0, 130.0]])
    for _ in range(50):
        ws, we, t = random_crop(3000, targets, 1000, rng, crop_ratio=(0.9, 1.0), trunc_thresh=0.5, offset=0.5)
        assert we - ws == 1000 and 0 <= ws and we <= 3000
        orig_len = targets[:, 1] - targets[:, 0]
        kept = np.minimum(targets[:, 1], we + 0.5) - np.maximum(targets[:, 0], ws - 0.5)
        assert np.all(kept / orig_len > 0.5)
        np.testing.assert_allclose(t, np.clip(targets - ws, -0.5, we - ws + 0.5))
    # short video, no crop ratio: untouched
    ws, we, t = random_crop(500, targets, 1000, rng, crop_ratio=None)
    assert (ws, we) == (0, 500)
    np.testing.assert_array_equal(t, targets)
    # short video with crop ratio: a crop of 90-100 % of the video
    crops = [random_crop(500, targets, 1000, rng, crop_ratio=(0.9, 1.0))[:2] for _ in range(20)]
    assert all(450 <= we - ws <= 500 for ws, we in crops)
    assert any(we - ws < 500 for ws, we in crops)


def test_random_crop_impossible_raises():
    with pytest.raises(CropError):
        random_crop(3000, np.array([[0.0, 10.0], [2000.0, 2010.0]]), 1000, np.random.default_rng(0))
