"""ACC and SPC: hand-checked tiny cases, loop references, invariances and gradients."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hieramamba.losses import AnchorContrastiveLoss, ProjectionHead, SegmentContrastiveLoss
from hieramamba.losses.contrastive import _random_subset

TAU = 0.07


class Normalize(nn.Module):
    """Stand-in projector: cosines are then those of the raw features."""

    def forward(self, x):
        return F.normalize(x, dim=-1)


def unit(deg: float) -> list[float]:
    return [math.cos(math.radians(deg)), math.sin(math.radians(deg))]


def cols(*vectors):
    """Vectors -> (1, D, N) channels-first features."""
    return torch.tensor(vectors, dtype=torch.float64).T[None]


def mask(*bits):
    return torch.tensor(bits, dtype=torch.bool)[None, None]


# ------------------------------------------------------------------ projector


def test_projection_head_layout_and_unit_norm():
    head = ProjectionHead(8, 16).double()
    assert head.fc1.bias is None and head.fc1.weight.shape == (8, 8)
    assert isinstance(head.norm, nn.LayerNorm) and isinstance(head.act, nn.GELU)
    assert head.fc2.weight.shape == (16, 8) and head.fc2.bias is not None
    out = head(torch.randn(3, 5, 8, dtype=torch.float64))
    assert out.shape == (3, 5, 16)
    assert torch.allclose(out.norm(dim=-1), torch.ones(3, 5, dtype=torch.float64))


# ------------------------------------------------------------------ ACC


def _acc(stride=2, neg_ratio=1.0, gap_ratio=0.0):
    loss = AnchorContrastiveLoss(2, stride=stride, neg_ratio=neg_ratio, gap_ratio=gap_ratio)
    loss.projector = Normalize()
    return loss


def test_acc_hand_case():
    # 3 anchors (stride 2) over 6 tokens; anchor 1 padded; token 5 padded; gap = max(1, 0) = 1
    anchors = cols(unit(0), unit(90), unit(120))
    tokens = cols(unit(30), unit(60), unit(0), unit(0), unit(100), unit(0))
    loss = _acc()([tokens], [mask(1, 1, 1, 1, 1, 0)], [anchors], [mask(1, 0, 1)])
    e = lambda deg: math.exp(math.cos(math.radians(deg)) / TAU)  # noqa: E731
    # anchor 0: positives tokens 0, 1 (30 and 60 degrees); one negative, anchor 2 (120 degrees)
    l0 = -math.log((e(30) + e(60)) / (e(30) + e(60) + e(120) + 1e-9))
    # anchor 2: positive token 4 only (20 degrees); negative anchor 0 (120 degrees)
    l2 = -math.log(e(20) / (e(20) + e(120) + 1e-9))
    assert loss.item() == pytest.approx((l0 + l2) / 2, rel=1e-10)


def test_acc_gap_excludes_near_anchors():
    # 4 anchors, gap_ratio 0.5 -> gap = int(0.5 * 4) = 2: only |i - j| > 2 are negatives (0 <-> 3);
    # anchors 1 and 2 have no candidate and contribute -log(S_pos / (S_pos + 1e-9)) ~ 0
    anchors = cols(unit(0), unit(10), unit(20), unit(150))
    tokens = cols(*[unit(0)] * 8)
    loss = _acc(gap_ratio=0.5)([tokens], [mask(*[1] * 8)], [anchors], [mask(1, 1, 1, 1)])
    e = lambda deg: math.exp(math.cos(math.radians(deg)) / TAU)  # noqa: E731
    l0 = -math.log(2 * e(0) / (2 * e(0) + e(150) + 1e-9))
    l3 = -math.log(2 * e(150) / (2 * e(150) + e(150) + 1e-9))
    l1 = -math.log(2 * e(10) / (2 * e(10) + 1e-9))
    l2 = -math.log(2 * e(20) / (2 * e(20) + 1e-9))
    assert loss.item() == pytest.approx((l0 + l1 + l2 + l3) / 4, rel=1e-9)


def _acc_loop_reference(tokens, tok_mask, anchors, anc_mask, stride, gap_ratio):
    """Per-anchor loop, all candidates used as negatives."""
    losses = []
    b, _, a_len = anchors.shape
    t_len = tokens.shape[2]
    z_t = F.normalize(tokens, dim=1)
    z_a = F.normalize(anchors, dim=1)
    gap = max(1, int(gap_ratio * a_len))
    for r in range(b):
        def n_pos(a):
            return sum(1 for j in range(stride) if stride * a + j < t_len and tok_mask[r, 0, stride * a + j])

        valid = [bool(anc_mask[r, 0, a]) and n_pos(a) > 0 for a in range(a_len)]
        for a in range(a_len):
            if not valid[a]:
                continue
            s_pos = sum(
                math.exp(float(z_a[r, :, a] @ z_t[r, :, stride * a + j]) / TAU)
                for j in range(stride)
                if stride * a + j < t_len and tok_mask[r, 0, stride * a + j]
            )
            s_neg = sum(
                math.exp(float(z_a[r, :, a] @ z_a[r, :, o]) / TAU)
                for o in range(a_len)
                if valid[o] and abs(o - a) > gap
            )
            losses.append(-math.log(s_pos / (s_pos + s_neg + 1e-9)))
    return sum(losses) / len(losses)


@pytest.mark.parametrize(("stride", "t_len"), [(2, 11), (3, 13), (4, 16)])
def test_acc_matches_loop_reference(stride, t_len):
    gen = torch.Generator().manual_seed(stride)
    a_len = math.ceil(t_len / stride)
    tokens = torch.randn(2, 4, t_len, generator=gen, dtype=torch.float64)
    anchors = torch.randn(2, 4, a_len, generator=gen, dtype=torch.float64)
    tok_mask = torch.rand(2, 1, t_len, generator=gen) > 0.2
    anc_mask = torch.rand(2, 1, a_len, generator=gen) > 0.2
    loss = AnchorContrastiveLoss(4, stride=stride, neg_ratio=1000.0, gap_ratio=0.2)
    loss.projector = Normalize()
    got = loss([tokens], [tok_mask], [anchors], [anc_mask])
    ref = _acc_loop_reference(tokens, tok_mask, anchors, anc_mask, stride, 0.2)
    assert got.item() == pytest.approx(ref, rel=1e-9)


def test_acc_sums_levels_and_is_invariant_to_row_order_and_padding():
    gen = torch.Generator().manual_seed(3)
    acc = _acc(neg_ratio=1000.0, gap_ratio=0.0)  # gap fixed at 1, all candidates: deterministic
    levels = []
    for t_len in (12, 6):
        a_len = t_len // 2
        levels.append((
            torch.randn(3, 2, t_len, generator=gen, dtype=torch.float64),
            torch.ones(3, 1, t_len, dtype=torch.bool),
            torch.randn(3, 2, a_len, generator=gen, dtype=torch.float64),
            torch.ones(3, 1, a_len, dtype=torch.bool),
        ))
    fpn, fm, anc, am = (list(x) for x in zip(*levels))
    total = acc(fpn, fm, anc, am)
    assert total.item() == pytest.approx(sum(acc([f], [m], [a], [n]).item() for f, m, a, n in levels))
    # the mean runs over all anchors of all rows, so permuting rows changes nothing
    perm = torch.tensor([2, 0, 1])
    assert acc([f[perm] for f in fpn], [m[perm] for m in fm], [a[perm] for a in anc],
               [n[perm] for n in am]).item() == pytest.approx(total.item())
    # padding tokens and anchors (mask False) with garbage changes nothing
    pad = lambda x, n, v: torch.cat([x, torch.full((*x.shape[:2], n), v, dtype=x.dtype)], dim=2)  # noqa: E731
    padded = acc(
        [pad(f, 4, 7.0) for f in fpn], [pad(m, 4, False) for m in fm],
        [pad(a, 2, -3.0) for a in anc], [pad(n, 2, False) for n in am],
    )
    assert padded.item() == pytest.approx(total.item())


def test_acc_no_valid_anchor_gives_zero():
    acc = _acc()
    out = acc([torch.randn(1, 2, 4)], [mask(0, 0, 0, 0)], [torch.randn(1, 2, 2)], [mask(1, 1)])
    assert out.item() == 0.0
    with pytest.raises(ValueError, match="levels"):
        acc([torch.randn(1, 2, 4)], [mask(1, 1, 1, 1)], [], [])


def test_acc_negative_subsampling_is_seeded():
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randn(2, 8, 40, generator=gen)
    anchors = torch.randn(2, 8, 20, generator=gen)
    ones_t, ones_a = torch.ones(2, 1, 40, dtype=torch.bool), torch.ones(2, 1, 20, dtype=torch.bool)
    torch.manual_seed(0)
    acc = AnchorContrastiveLoss(8, stride=2, neg_ratio=1.0, gap_ratio=0.1)
    run = lambda seed: acc([tokens], [ones_t], [anchors], [ones_a], torch.Generator().manual_seed(seed))  # noqa: E731
    assert run(5).item() == run(5).item()
    assert run(5).item() != run(6).item()


def test_random_subset_picks_exactly_k_candidates():
    gen = torch.Generator().manual_seed(1)
    cand = torch.rand(50, 30, generator=gen) > 0.5
    k = torch.minimum(torch.randint(0, 10, (50,), generator=gen), cand.sum(-1))
    chosen = _random_subset(cand, k, gen)
    assert (chosen.sum(-1) == k).all()
    assert not (chosen & ~cand).any()
    # uniform: with k = 1 of 2 candidates, each is chosen about half the time
    cand2 = torch.zeros(4000, 5, dtype=torch.bool)
    cand2[:, [1, 3]] = True
    picks = _random_subset(cand2, torch.ones(4000, dtype=torch.long), gen)
    assert abs(picks[:, 1].float().mean().item() - 0.5) < 0.05


def test_acc_gradients_reach_projector_and_features():
    torch.manual_seed(0)
    acc = AnchorContrastiveLoss(8, stride=2, neg_ratio=2.0, gap_ratio=0.1)
    tokens = torch.randn(2, 8, 16, requires_grad=True)
    anchors = torch.randn(2, 8, 8, requires_grad=True)
    out = acc([tokens], [torch.ones(2, 1, 16, dtype=torch.bool)], [anchors], [torch.ones(2, 1, 8, dtype=torch.bool)],
              torch.Generator().manual_seed(0))
    out.backward()
    assert out.item() > 0
    for p in acc.projector.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
    assert tokens.grad.abs().sum() > 0 and anchors.grad.abs().sum() > 0


# ------------------------------------------------------------------ SPC


def _spc(neg_ratio=1.0):
    loss = SegmentContrastiveLoss(2, neg_ratio=neg_ratio)
    loss.projector = Normalize()
    return loss


def _lse(xs):
    m = max(xs)
    return m + math.log(sum(math.exp(x - m) for x in xs))


def test_spc_hand_case():
    # points 1, 2 positive; span 1..3; negatives 0 and 4 (both kept: k = int(2 * 1.0) = 2)
    feats = cols(unit(170), unit(10), unit(50), unit(200), unit(80))
    pos = torch.tensor([[False, True, True, False, False]])
    span = torch.tensor([[False, True, True, True, False]])
    valid = torch.ones(1, 5, dtype=torch.bool)
    out = _spc()([feats], [valid], [pos], [span])
    proto = 30.0  # normalised mean of the 10 and 50 degree vectors
    sim = lambda deg: math.cos(math.radians(deg - proto)) / TAU  # noqa: E731
    expected = -(_lse([sim(10), sim(50)]) - _lse([sim(10), sim(50), sim(170), sim(80)]))
    assert out.item() == pytest.approx(expected, rel=1e-10)


def test_spc_one_positive_one_negative_by_hand():
    feats = cols(unit(0), unit(0), unit(90))
    pos = torch.tensor([[False, True, False]])
    span = pos.clone()
    valid = torch.tensor([[False, True, True]])  # point 0 is padding
    out = _spc()([feats], [valid], [pos], [span])
    # prototype = the positive itself: sim_pos = 1/tau, sim_neg = cos 90 / tau = 0
    expected = -(1 / TAU - _lse([1 / TAU, 0.0]))
    assert out.item() == pytest.approx(expected, rel=1e-10)


def test_spc_averages_only_rows_with_positives_and_negatives():
    base = cols(unit(0), unit(0), unit(90))
    feats = base.expand(4, -1, -1).clone()
    pos = torch.tensor([[False, True, False], [False, False, False], [True, True, True], [False, True, False]])
    span = pos.clone()
    valid = torch.tensor([[False, True, True]]).expand(4, -1)
    out = _spc()([feats], [valid], [pos], [span])
    # rows 1 (no positive) and 2 (no negative) are skipped; rows 0 and 3 are the hand case
    single = _spc()([feats[:1]], [valid[:1]], [pos[:1]], [span[:1]])
    assert out.item() == pytest.approx(single.item())
    # neg_ratio 0.4 with one positive: int(0.4) = 0 negatives -> every row skipped -> 0
    assert _spc(neg_ratio=0.4)([feats], [valid], [pos], [span]).item() == 0.0


def test_spc_negatives_exclude_the_span_and_padding():
    feats = cols(unit(0), unit(0), unit(0), unit(90), unit(180))
    pos = torch.tensor([[True, False, False, False, False]])
    span = torch.tensor([[True, True, True, False, False]])
    valid = torch.tensor([[True, True, True, True, False]])
    out = _spc(neg_ratio=10.0)([feats], [valid], [pos], [span])
    expected = -(1 / TAU - _lse([1 / TAU, 0.0]))  # only point 3 (90 degrees) is a negative
    assert out.item() == pytest.approx(expected, rel=1e-10)


def _spc_loop_reference(feats, valid, pos, span):
    losses = []
    for r in range(feats.shape[0]):
        z = F.normalize(feats[r].T, dim=-1)
        p = [t for t in range(z.shape[0]) if valid[r, t] and pos[r, t]]
        n = [t for t in range(z.shape[0]) if valid[r, t] and not pos[r, t] and not span[r, t]]
        if not p or not n:
            continue
        proto = F.normalize(z[p].mean(0), dim=0)
        sims = [float(z[t] @ proto) / TAU for t in range(z.shape[0])]
        losses.append(_lse([sims[t] for t in p + n]) - _lse([sims[t] for t in p]))
    return sum(losses) / len(losses)


def test_spc_matches_loop_reference_and_late_fusion_repeat():
    gen = torch.Generator().manual_seed(4)
    feats_v = torch.randn(2, 3, 20, generator=gen, dtype=torch.float64)
    qpv = torch.tensor([2, 3])
    feats_q = feats_v.repeat_interleave(qpv, dim=0)
    valid = torch.rand(5, 1, 20, generator=gen) > 0.1
    starts = torch.randint(0, 12, (5,), generator=gen)
    idx = torch.arange(20)
    span = (idx >= starts[:, None]) & (idx < starts[:, None] + 6)
    pos = span & (torch.rand(5, 20, generator=gen) > 0.4)
    spc = _spc(neg_ratio=1000.0)  # all negatives: deterministic
    ref = _spc_loop_reference(feats_q, valid[:, 0], pos, span)
    assert spc([feats_q], [valid], [pos], [span]).item() == pytest.approx(ref, rel=1e-9)
    late = spc([feats_v], [valid], [pos], [span], queries_per_video=qpv)
    assert late.item() == pytest.approx(ref, rel=1e-9)
    # two levels sum
    two = spc([feats_q, feats_q], [valid, valid], [pos, pos], [span, span])
    assert two.item() == pytest.approx(2 * ref, rel=1e-9)


def test_spc_subsampling_is_seeded_and_bounded():
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(3, 4, 30, generator=gen, dtype=torch.float64)
    pos = torch.zeros(3, 30, dtype=torch.bool)
    pos[:, 10:13] = True
    span = torch.zeros(3, 30, dtype=torch.bool)
    span[:, 9:14] = True
    valid = torch.ones(3, 30, dtype=torch.bool)
    spc = _spc(neg_ratio=1.0)  # 3 of the 25 candidates
    run = lambda seed: spc([feats], [valid], [pos], [span], torch.Generator().manual_seed(seed)).item()  # noqa: E731
    assert run(1) == run(1)
    assert run(1) != run(2)
    full = _spc(neg_ratio=1000.0)([feats], [valid], [pos], [span]).item()
    assert 0 < run(1) < full  # fewer negatives -> smaller loss


def test_spc_gradients_reach_projector_and_features():
    torch.manual_seed(0)
    spc = SegmentContrastiveLoss(6, neg_ratio=1.0)
    feats = torch.randn(2, 6, 16, requires_grad=True)
    pos = torch.zeros(2, 16, dtype=torch.bool)
    pos[:, 4:7] = True
    span = pos.clone()
    out = spc([feats], [torch.ones(2, 1, 16, dtype=torch.bool)], [pos], [span], torch.Generator().manual_seed(0))
    out.backward()
    assert out.item() > 0
    for p in spc.projector.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
    assert feats.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="shapes"):
        spc([feats], [torch.ones(2, 15, dtype=torch.bool)], [pos], [span])


def test_losses_keep_similarities_in_float32_under_autocast():
    torch.manual_seed(0)
    acc = AnchorContrastiveLoss(8, stride=2, neg_ratio=1000.0, gap_ratio=0.1)
    spc = SegmentContrastiveLoss(8, neg_ratio=1000.0)
    tokens, anchors = torch.randn(2, 8, 16), torch.randn(2, 8, 8)
    tm, am = torch.ones(2, 1, 16, dtype=torch.bool), torch.ones(2, 1, 8, dtype=torch.bool)
    pos = torch.zeros(2, 16, dtype=torch.bool)
    pos[:, 4:7] = True
    ref_acc = acc([tokens], [tm], [anchors], [am])
    ref_spc = spc([tokens], [tm], [pos], [pos])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out_acc = acc([tokens], [tm], [anchors], [am])
        out_spc = spc([tokens], [tm], [pos], [pos])
    assert out_acc.dtype == torch.float32 and out_spc.dtype == torch.float32
    # only the projector ran in bf16
    assert out_acc.item() == pytest.approx(ref_acc.item(), rel=0.05)
    assert out_spc.item() == pytest.approx(ref_spc.item(), rel=0.05)
