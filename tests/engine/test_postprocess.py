"""Inference post-processing: candidate collection, soft-NMS vs a per-pair reference of the authors'
C++ routine, segment voting by hand, and the whole per-query pipeline."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hieramamba.engine.postprocess import (
    PostprocessConfig,
    collect_segments,
    postprocess_batch,
    postprocess_query,
    segment_voting,
    soft_nms,
)


def reference_soft_nms(segs: np.ndarray, scores: np.ndarray, sigma: float, min_score: float):
    """Element-by-element re-statement of `softnms_1d_cpu` (Gaussian, method 2) in float32 scalars:
    select the first maximum, swap it to position i, decay the rest pairwise, discard by swapping
    with the last element."""
    f = np.float32
    x1 = [f(v) for v in segs[:, 0]]
    x2 = [f(v) for v in segs[:, 1]]
    sc = [f(v) for v in scores]
    area = [f(b - a + f(1e-6)) for a, b in zip(x1, x2)]
    ind = list(range(len(sc)))
    n = len(sc)
    out = []
    i = 0
    while i < n:
        max_pos = i
        for pos in range(i + 1, n):
            if sc[max_pos] < sc[pos]:
                max_pos = pos
        for arr in (x1, x2, sc, area, ind):
            arr[i], arr[max_pos] = arr[max_pos], arr[i]
        out.append((ind[i], float(sc[i])))
        pos = i + 1
        while pos < n:
            inter = max(f(0), f(min(x2[i], x2[pos]) - max(x1[i], x1[pos])))
            ovr = f(inter / f(area[i] + area[pos] - inter))
            sc[pos] = f(sc[pos] * f(math.exp(-float(ovr * ovr) / sigma)))
            if sc[pos] < f(min_score):
                for arr in (x1, x2, sc, area, ind):
                    arr[pos] = arr[n - 1]
                n -= 1
                pos -= 1
            pos += 1
        i += 1
    return out


def _random_case(seed: int, n: int, quantised: bool):
    rng = np.random.default_rng(seed)
    start = rng.uniform(0, 100, n)
    length = rng.uniform(0.2, 30, n)
    scores = rng.uniform(0.001, 1.0, n)
    if quantised:  # many exact ties in coordinates, lengths and scores
        start, length, scores = np.round(start / 10) * 10, np.round(length / 5) * 5 + 5, np.round(scores, 1) + 0.05
    segs = np.stack([start, start + length], 1).astype(np.float32)
    order = np.argsort(-scores, kind="stable")  # the authors feed score-sorted candidates
    return segs[order], scores.astype(np.float32)[order]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("quantised", [False, True])
@pytest.mark.parametrize("max_num_segs", [5, 0])
def test_soft_nms_matches_the_cpp_semantics(seed, quantised, max_num_segs):
    segs, scores = _random_case(seed, 60, quantised)
    ref = reference_soft_nms(segs, scores, sigma=0.9, min_score=0.001)
    if max_num_segs > 0:
        ref = ref[:max_num_segs]
    got_segs, got_scores = soft_nms(torch.from_numpy(segs), torch.from_numpy(scores), sigma=0.9, min_score=0.001,
                                    max_num_segs=max_num_segs)
    ref_idx = [i for i, _ in ref]
    assert got_segs.tolist() == segs[ref_idx].tolist()
    assert got_scores.tolist() == pytest.approx([s for _, s in ref], rel=1e-5)


def test_soft_nms_min_score_drops_and_keeps_the_first_pick():
    segs = torch.tensor([[0.0, 10.0], [0.0, 10.0], [20.0, 30.0]])
    scores = torch.tensor([0.9, 0.5, 0.0005])
    out_segs, out_scores = soft_nms(segs, scores, sigma=0.9, min_score=0.001, max_num_segs=0)
    # the duplicate decays by exp(-1 / 0.9); the 0.0005 one falls below min_score and is dropped
    assert out_segs.tolist() == [[0.0, 10.0], [0.0, 10.0]]
    assert out_scores.tolist() == pytest.approx([0.9, 0.5 * math.exp(-1 / 0.9)], rel=1e-6)
    # a lone segment below min_score is still returned: it is selected before any decay test
    lone, lone_score = soft_nms(torch.tensor([[0.0, 1.0]]), torch.tensor([0.0005]), sigma=0.9, min_score=0.001)
    assert lone.tolist() == [[0.0, 1.0]] and lone_score.tolist() == pytest.approx([0.0005])
    empty = soft_nms(torch.zeros(0, 2), torch.zeros(0))
    assert empty[0].shape == (0, 2) and empty[1].shape == (0,)


def test_soft_nms_decay_uses_the_epsilon_lengths():
    segs = torch.tensor([[0.0, 2.0], [1.0, 3.0]], dtype=torch.float64)
    scores = torch.tensor([1.0, 1.0], dtype=torch.float64)
    _, out_scores = soft_nms(segs, scores, sigma=0.9, min_score=0.0, max_num_segs=0)
    iou = 1.0 / (2 * (2.0 + 1e-6) - 1.0)
    assert out_scores[1].item() == pytest.approx(math.exp(-iou * iou / 0.9), rel=1e-12)


def test_segment_voting_by_hand():
    kept = torch.tensor([[0.0, 10.0]], dtype=torch.float64)
    all_segs = torch.tensor([[0.0, 10.0], [0.0, 10.2], [0.1, 10.0], [5.0, 15.0]], dtype=torch.float64)
    all_scores = torch.tensor([0.9, 0.6, 0.3, 0.5], dtype=torch.float64)
    out = segment_voting(kept, all_segs, all_scores, 0.95)
    # IoUs 1, 10/10.2, 9.9/10 pass; [5, 15] (IoU 1/3) does not
    assert out[0].tolist() == pytest.approx([0.03 / 1.8, 18.12 / 1.8])
    # a stricter threshold keeps only the segment itself
    assert segment_voting(kept, all_segs, all_scores, 0.999)[0].tolist() == pytest.approx([0.0, 10.0])


def _level_inputs():
    points = [
        torch.tensor([[float(t), 0.0, 4.0, 1.0] for t in range(8)], dtype=torch.float64),
        torch.tensor([[float(t), 2.0, 8.0, 2.0] for t in range(0, 8, 2)], dtype=torch.float64),
    ]
    logit = lambda p: math.log(p / (1 - p))  # noqa: E731
    logits = [
        torch.tensor([logit(p) for p in (0.9, 0.0005, 0.5, 0.3, 0.2, 0.8, 0.1, 0.7)], dtype=torch.float64),
        torch.tensor([logit(p) for p in (0.6, 0.95, 0.4, 0.05)], dtype=torch.float64),
    ]
    offsets = [
        torch.tensor([[1.0, 1.0], [1, 1], [0.02, 0.05], [1, 2], [0.5, 0.5], [2, 1], [1, 0], [0, 3]], dtype=torch.float64),
        torch.tensor([[1.0, 1.0], [0.5, 1.5], [1, 1], [1, 1]], dtype=torch.float64),
    ]
    masks = [torch.tensor([1, 1, 1, 1, 1, 1, 1, 0], dtype=torch.bool), torch.ones(4, dtype=torch.bool)]
    return points, logits, offsets, masks


def test_collect_segments_by_hand():
    points, logits, offsets, masks = _level_inputs()
    segs, scores = collect_segments(points, logits, offsets, masks, PostprocessConfig(pre_nms_topk=6))
    # kept: scores > 0.001 and mask; point 7 masked, point 1 below threshold; top 6 of
    # 0.95 (l1 t2), 0.9 (t0), 0.8 (t5), 0.6 (l1 t0), 0.5 (t2), 0.4 (l1 t4), ...
    # then t2 decodes to [1.98, 2.05], length 0.07 <= 0.1 -> dropped after the top-k
    assert scores.tolist() == pytest.approx([0.95, 0.9, 0.8, 0.6, 0.4])
    expected = torch.tensor([[1.0, 5.0], [-1.0, 1.0], [3.0, 6.0], [-2.0, 2.0], [2.0, 6.0]], dtype=torch.float64)
    assert torch.allclose(segs, expected)


def test_postprocess_query_pipeline_and_batch():
    points, logits, offsets, masks = _level_inputs()
    cfg = PostprocessConfig(max_num_segs=3, voting_thresh=0.0)
    segs, scores = postprocess_query(points, logits, offsets, masks, cfg)
    cand_segs, cand_scores = collect_segments(points, logits, offsets, masks, cfg)
    ref_segs, ref_scores = soft_nms(cand_segs, cand_scores, sigma=0.9, min_score=0.001, max_num_segs=3)
    assert segs.tolist() == ref_segs.tolist() and scores.tolist() == ref_scores.tolist()
    assert scores.tolist() == sorted(scores.tolist(), reverse=True)
    # with voting the kept boundaries move towards near-duplicates, the scores do not change
    voted, voted_scores = postprocess_query(points, logits, offsets, masks, PostprocessConfig(max_num_segs=3,
                                                                                              voting_thresh=0.5))
    assert voted_scores.tolist() == scores.tolist()
    assert voted.shape == (3, 2) and not torch.equal(voted, segs)
    # batch: rows are queries; row results equal the per-query call
    batch = postprocess_batch(points, [x[None].repeat(2, 1) for x in logits],
                              [x[None].repeat(2, 1, 1) for x in offsets], [m[None, None].repeat(2, 1, 1) for m in masks],
                              cfg)
    assert len(batch) == 2
    assert torch.allclose(batch[1][0].double(), segs, atol=1e-5)


def test_query_with_no_candidate_returns_empty():
    points, logits, offsets, masks = _level_inputs()
    low = [torch.full_like(x, -20.0) for x in logits]
    segs, scores = postprocess_query(points, low, offsets, masks)
    assert segs.shape == (0, 2) and scores.shape == (0,)


def test_config_defaults_and_validation():
    cfg = PostprocessConfig()
    assert (cfg.pre_nms_thresh, cfg.pre_nms_topk, cfg.seg_len_thresh) == (0.001, 2000, 0.1)
    assert (cfg.sigma, cfg.min_score, cfg.max_num_segs, cfg.voting_thresh) == (0.9, 0.001, 5, 0.95)
    with pytest.raises(ValueError):
        PostprocessConfig(sigma=0.0)


def test_soft_nms_tie_order_follows_the_cpp_array_compaction():
    # after picking A, B decays below min_score and is overwritten by the last element (D), so the
    # array reads [A, D, C] and the tie between C and D (both 0.5, disjoint from A) goes to D
    segs = torch.tensor([[0.0, 10.0], [0.0, 10.0], [20.0, 30.0], [40.0, 50.0]])
    scores = torch.tensor([0.9, 0.0011, 0.5, 0.5])
    out, _ = soft_nms(segs, scores, sigma=0.9, min_score=0.001, max_num_segs=0)
    assert out.tolist() == [[0.0, 10.0], [40.0, 50.0], [20.0, 30.0]]
    ref = reference_soft_nms(segs.numpy(), scores.numpy(), 0.9, 0.001)
    assert [i for i, _ in ref] == [0, 3, 2]


@pytest.mark.parametrize("seed", range(4))
def test_soft_nms_many_ties_and_drops_match_the_reference(seed):
    rng = np.random.default_rng(100 + seed)
    n = 40
    start = rng.integers(0, 20, n) * 10.0
    segs = np.stack([start, start + 10.0], 1).astype(np.float32)
    scores = rng.choice(np.array([0.5, 0.3, 0.0011, 0.0015], dtype=np.float32), n)
    ref = reference_soft_nms(segs, scores, 0.9, 0.001)
    got, got_scores = soft_nms(torch.from_numpy(segs), torch.from_numpy(scores), sigma=0.9, min_score=0.001,
                               max_num_segs=0)
    assert got.tolist() == segs[[i for i, _ in ref]].tolist()
    assert got_scores.tolist() == pytest.approx([s for _, s in ref], rel=1e-5)
