"""The two auxiliary contrastive losses of HieraMamba and their projector.

- ACC (anchor-conditioned contrast, config `train.acc`; the authors' `ds_contrast` =
  `MultiScaleMaskedContrastive` + `contrastive_subsample_negative_mp`): each anchor is pulled towards
  the tokens of its own block and pushed from far-away anchors of the same row.
- SPC (segment-pooled contrast, config `train.spc`; the authors' `gt_contrast` =
  `MultiScaleMaskedGTPointContrastive`, `point_gt_contr_pooled`): per query, the mean of the
  positive points' projections is pulled towards the positives and pushed from points outside the
  ground-truth span.

Both are vectorised over rows and anchors/points (one Python loop over pyramid levels). Negatives are
drawn with an explicit `torch.Generator` (on the tensors' device) so runs are reproducible.
Each loss owns a `ProjectionHead`; whether it is trained (our default) or frozen (the authors'
accidental behaviour, `train.frozen_projectors`) is the trainer's business.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ProjectionHead", "AnchorContrastiveLoss", "SegmentContrastiveLoss"]


class ProjectionHead(nn.Module):
    """The authors' `LNProjector` with 2 layers: Linear(D -> H, no bias) -> LayerNorm -> GELU ->
    Linear(H -> out_dim), then L2 normalisation. H = int(expand * D) (expand 1.0 in every config).

    forward(x (..., D)) -> (..., out_dim) unit vectors (channels-last).
    """

    def __init__(self, in_dim: int, out_dim: int = 256, expand: float = 1.0):
        super().__init__()
        hidden = int(expand * in_dim)
        self.fc1 = nn.Linear(in_dim, hidden, bias=False)
        self.norm = nn.LayerNorm(hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.fc2(self.act(self.norm(self.fc1(x))))
        return F.normalize(z, p=2, dim=-1)


def _flat_mask(mask: torch.Tensor) -> torch.Tensor:
    """(B, 1, T) or (B, T) -> (B, T) bool."""
    if mask.ndim == 3:
        mask = mask.squeeze(1)
    return mask.bool()


def _random_subset(candidates: torch.Tensor, k: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Pick k[...] candidates uniformly at random along the last dim, independently per row.

    candidates: (..., N) bool; k: (...) long with k <= candidates.sum(-1). Returns (..., N) bool.
    Every candidate gets a uniform key; non-candidates sort last; a candidate is kept when its rank
    among the sorted keys is below k.
    """
    # draw on the generator's own device, so a CPU generator reproduces the same subset on CUDA
    draw_device = generator.device if generator is not None else candidates.device
    keys = torch.rand(candidates.shape, generator=generator, device=draw_device).to(candidates.device)
    keys = torch.where(candidates, keys, torch.full_like(keys, 2.0))
    order = keys.argsort(dim=-1)
    positions = torch.arange(order.shape[-1], device=order.device).expand_as(order)
    ranks = torch.empty_like(order).scatter_(-1, order, positions)
    return candidates & (ranks < k[..., None])


def _similarity_dtype(z: torch.Tensor) -> torch.Tensor:
    # exp(cos / 0.07) reaches 1.6e6: keep it out of half precision
    return z.float() if z.dtype in (torch.float16, torch.bfloat16) else z


def _full_precision(device: torch.device):
    """Disable autocast around the similarity maths (einsum would otherwise run in bf16 on CUDA)."""
    return torch.autocast(device_type=device.type, enabled=False)


class AnchorContrastiveLoss(nn.Module):
    """ACC. For each valid anchor a of a row (level l, anchor stride s):

    - positives: tokens s*a ... s*a + s - 1 of the same row (its own block), those that exist and
      are valid (the authors hard-code s = 2: tokens 2a, 2a+1); anchors with no valid positive are
      skipped;
    - negative candidates: the other valid anchors of the same row whose index differs by more than
      gap = max(1, int(gap_ratio * A_l)) (A_l the padded anchor count);
    - a random subset of min(max(ceil(neg_ratio * n_pos), 1), n_candidates) negatives;
    - loss = -log(S_pos / (S_pos + S_neg + 1e-9)), S = sum of exp(cos / temperature).

    Mean over the valid anchors of the level (all rows together), summed over levels; a level with
    no valid anchor adds 0. With late fusion the trainer multiplies the result by the mean number of
    queries per video, as the authors do.
    """

    def __init__(
        self,
        in_dim: int,
        *,
        stride: int = 2,
        temperature: float = 0.07,
        neg_ratio: float = 4.0,
        gap_ratio: float = 0.3,
        proj_dim: int = 256,
    ):
        super().__init__()
        if stride < 1:
            raise ValueError(f"anchor stride must be >= 1, got {stride}")
        self.stride = int(stride)
        self.temperature = float(temperature)
        self.neg_ratio = float(neg_ratio)
        self.gap_ratio = float(gap_ratio)
        self.projector = ProjectionHead(in_dim, proj_dim)

    def forward(
        self,
        fpn: Sequence[torch.Tensor],
        fpn_masks: Sequence[torch.Tensor],
        anchors: Sequence[torch.Tensor],
        anchor_masks: Sequence[torch.Tensor],
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """fpn[l] (B, D, T_l), fpn_masks[l] (B, 1, T_l), anchors[l] (B, D, A_l),
        anchor_masks[l] (B, 1, A_l) -> scalar loss."""
        if not (len(fpn) == len(fpn_masks) == len(anchors) == len(anchor_masks)):
            raise ValueError("ACC needs as many anchor levels as token levels")
        total = fpn[0].new_zeros(())
        for tokens, tok_mask, anc, anc_mask in zip(fpn, fpn_masks, anchors, anchor_masks):
            total = total + self._level(tokens, _flat_mask(tok_mask), anc, _flat_mask(anc_mask), generator)
        return total

    def _level(
        self,
        tokens: torch.Tensor,  # (B, D, T)
        tok_mask: torch.Tensor,  # (B, T)
        anchors: torch.Tensor,  # (B, D, A)
        anc_mask: torch.Tensor,  # (B, A)
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        num_anchors = anchors.shape[2]
        seq_len = tokens.shape[2]
        device = anchors.device
        z_tok = _similarity_dtype(self.projector(tokens.transpose(1, 2)))  # (B, T, P)
        z_anc = _similarity_dtype(self.projector(anchors.transpose(1, 2)))  # (B, A, P)

        # positives: the s tokens of each anchor's block
        block = self.stride * torch.arange(num_anchors, device=device)[:, None]
        block = block + torch.arange(self.stride, device=device)  # (A, s) token indices
        in_range = block < seq_len  # (A, s)
        block = block.clamp(max=seq_len - 1)
        pos_valid = in_range[None] & tok_mask[:, block]  # (B, A, s)
        z_pos = z_tok[:, block]  # (B, A, s, P)
        n_pos = pos_valid.sum(-1)  # (B, A)
        valid = anc_mask & (n_pos > 0)  # (B, A)
        if not bool(valid.any()):
            return tokens.new_zeros(())

        with _full_precision(device):
            return self._acc_terms(z_anc, z_pos, pos_valid, n_pos, valid, generator)

    def _acc_terms(
        self,
        z_anc: torch.Tensor,  # (B, A, P)
        z_pos: torch.Tensor,  # (B, A, s, P)
        pos_valid: torch.Tensor,  # (B, A, s)
        n_pos: torch.Tensor,  # (B, A)
        valid: torch.Tensor,  # (B, A)
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        num_anchors, device = z_anc.shape[1], z_anc.device
        sim_pos = torch.einsum("bap,basp->bas", z_anc, z_pos) / self.temperature  # (B, A, s)
        exp_pos = (torch.exp(sim_pos) * pos_valid).sum(-1)  # (B, A)

        # negatives: far-away valid anchors of the same row
        gap = max(1, int(self.gap_ratio * num_anchors))
        idx = torch.arange(num_anchors, device=device)
        far = (idx[:, None] - idx[None, :]).abs() > gap  # (A, A); excludes the anchor itself
        candidates = valid[:, :, None] & valid[:, None, :] & far[None]  # (B, A, A)
        n_cand = candidates.sum(-1)  # (B, A)
        want = torch.ceil(self.neg_ratio * n_pos.to(torch.float64)).long().clamp(min=1)
        chosen = _random_subset(candidates, torch.minimum(want, n_cand), generator)  # (B, A, A)
        sim_aa = torch.einsum("bip,bjp->bij", z_anc, z_anc) / self.temperature  # (B, A, A)
        neg_sum = (torch.exp(sim_aa) * chosen).sum(-1)  # (B, A)

        s_pos, s_neg = exp_pos[valid], neg_sum[valid]
        return (-torch.log(s_pos / (s_pos + s_neg + 1e-9))).mean()


class SegmentContrastiveLoss(nn.Module):
    """SPC. Per level and query row:

    - positives: the row's points labelled positive for classification (`label_points`) that are
      valid;
    - negatives: valid points outside the ground-truth span of that level (`gt_span_masks`), a random
      subset of int(n_pos * neg_ratio) when there are more;
    - prototype q = normalise(mean of the positives' projections);
    - loss = -(logsumexp(sim_pos) - logsumexp([sim_pos, sim_neg])), sim = cos(q, .) / temperature.

    Averaged over the rows with positives and at least one kept negative, summed over levels.
    """

    def __init__(self, in_dim: int, *, temperature: float = 0.07, neg_ratio: float = 1.0, proj_dim: int = 256):
        super().__init__()
        self.temperature = float(temperature)
        self.neg_ratio = float(neg_ratio)
        self.projector = ProjectionHead(in_dim, proj_dim)

    def forward(
        self,
        fpn: Sequence[torch.Tensor],
        masks: Sequence[torch.Tensor],
        pos_labels: Sequence[torch.Tensor],
        span_masks: Sequence[torch.Tensor],
        generator: torch.Generator | None = None,
        queries_per_video: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """fpn[l] (B_f, D, T_l) backbone features; masks[l] (B_q, T_l) or (B_q, 1, T_l) validity per
        query row; pos_labels[l], span_masks[l] (B_q, T_l) bool. With late fusion pass
        `queries_per_video` (B_f,) long: feature rows are projected once and repeated per query
        (B_q = queries_per_video.sum()); with early fusion B_f = B_q and it stays None.
        """
        if not (len(fpn) == len(masks) == len(pos_labels) == len(span_masks)):
            raise ValueError("SPC inputs must have the same number of levels")
        total = fpn[0].new_zeros(())
        for feats, mask, pos, span in zip(fpn, masks, pos_labels, span_masks):
            z = _similarity_dtype(self.projector(feats.transpose(1, 2)))  # (B_f, T, P)
            if queries_per_video is not None:
                z = z.repeat_interleave(queries_per_video.to(z.device), dim=0)  # (B_q, T, P)
            with _full_precision(z.device):
                total = total + self._level(z, _flat_mask(mask), pos.bool(), span.bool(), generator)
        return total

    def _level(
        self,
        z: torch.Tensor,  # (B, T, P) unit vectors
        valid: torch.Tensor,  # (B, T)
        labels: torch.Tensor,  # (B, T)
        span: torch.Tensor,  # (B, T)
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        if z.shape[:2] != valid.shape or labels.shape != valid.shape or span.shape != valid.shape:
            raise ValueError(
                f"SPC shapes disagree: features {tuple(z.shape[:2])}, mask {tuple(valid.shape)}, "
                f"labels {tuple(labels.shape)}, span {tuple(span.shape)}"
            )
        pos = labels & valid
        neg = valid & ~labels & ~span
        n_pos = pos.sum(1)  # (B,)
        n_neg = neg.sum(1)
        k = torch.floor(n_pos.to(torch.float64) * self.neg_ratio).long()
        k = torch.minimum(k, n_neg)
        rows = (n_pos > 0) & (k > 0)
        if not bool(rows.any()):
            return z.new_zeros(())
        chosen = _random_subset(neg, k, generator)  # (B, T)

        z, pos, chosen = z[rows], pos[rows], chosen[rows]
        proto = (z * pos[..., None]).sum(1) / pos.sum(1, keepdim=True)  # (R, P)
        proto = F.normalize(proto, p=2, dim=-1)
        sim = torch.einsum("rtp,rp->rt", z, proto) / self.temperature  # (R, T)
        neg_inf = torch.full_like(sim, -math.inf)
        log_pos = torch.logsumexp(torch.where(pos, sim, neg_inf), dim=1)
        log_all = torch.logsumexp(torch.where(pos | chosen, sim, neg_inf), dim=1)
        return (log_all - log_pos).mean()
