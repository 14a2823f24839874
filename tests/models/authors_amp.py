"""Test helper: the authors' gated AMP block forward, restated step by step from
hieramamba-reference.md §1.2 (``AnchorMambaPoolingBlockGated.forward``), run with the weights of one
of our ``AMPBlock`` modules.

It is the expectation the ``reference_*`` switches are tested against, so it follows the reference
text literally and independently of ``hieramamba.models.amp``: the input zeroed at padded tokens,
mean anchors over the zero-padded blocks, the interleaved sequence built by a reshape, the mask of
the interleaved sequence as the batch-summed prefix of step 4, and **Hydra called without a mask**
(step 5). Only the mean pool (every released config) is restated. Eval mode is assumed (no
dropout, LayerScale = its per-channel scale).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


@torch.no_grad()
def authors_gated_block(block, x: torch.Tensor, mask: torch.Tensor):
    """x (B, D, L), mask (B, 1, L) bool -> (anchors (B, D, nb), tokens (B, D, L), anchor_mask, mask)."""
    assert block.gated and block.pool.method == "mean" and not block.training
    s = block.stride
    b, d, length = x.shape
    nb = math.ceil(length / s)
    # 1. padded input tokens set to zero
    x = x.masked_fill(~mask, 0.0)
    # 2. right-pad with zeros to nb * s; anchor k = mean of block k (a half-empty last block
    #    averages with the zero pad); anchor mask = max-pool of the float mask, ceil mode
    blocks = F.pad(x, (0, nb * s - length)).reshape(b, d, nb, s)  # (B, D, nb, s)
    anchors = blocks.mean(-1)  # (B, D, nb)
    anchor_mask = F.max_pool1d(mask.to(x.dtype), s, s, ceil_mode=True) > 0  # (B, 1, nb)
    # 3. block k -> [a_k, x_ks, .., x_ks+s-1], channels-last
    x_comb = torch.cat((anchors[..., None], blocks), dim=-1).permute(0, 2, 3, 1).reshape(b, nb * (s + 1), d)
    # 4. the first (sum over the whole batch of valid tokens + valid anchors) positions, every row
    n_true = int(mask.sum()) + int(anchor_mask.sum())
    expanded = (torch.arange(nb * (s + 1)) < n_true)[None, :, None].expand(b, -1, 1).to(x.dtype)  # (B, T', 1)
    # 5. global branch: Hydra over the whole interleaved sequence, no mask
    g = block.scale_global.scale * block.global_mixer(block.norm_global(x_comb)) + x_comb
    g = g * expanded
    # 6. gate 1
    w1 = torch.sigmoid(block.gate_global(torch.cat((x_comb, g), dim=-1)))
    f1 = w1 * g + (1.0 - w1) * x_comb
    # 7. local branch (channels-first inside) and gate 2
    loc = block.local_mixer(block.norm_local(f1).transpose(1, 2), expanded.transpose(1, 2) > 0)[0].transpose(1, 2)
    loc = (block.scale_local.scale * loc + f1) * expanded
    w2 = torch.sigmoid(block.gate_local(torch.cat((f1, loc), dim=-1)))
    fused = w2 * loc + (1.0 - w2) * f1
    # 8. FFN, no masking after it
    out = block.scale_ffn.scale * block.ffn(block.norm_ffn(fused)) + fused  # (B, T', D)
    # 9. slot 0 of each block = anchors; slots 1..s = tokens, trimmed to L
    view = out.reshape(b, nb, s + 1, d)
    anchors_out = view[:, :, 0].transpose(1, 2)
    tokens_out = view[:, :, 1:].reshape(b, nb * s, d)[:, :length].transpose(1, 2)
    return anchors_out, tokens_out, anchor_mask, mask
