"""Video-text fusion: SnAG's ``XAttNFusion`` (n cross-attention decoder layers + a final LayerNorm).

``forward(vid, vid_masks, text, text_masks, text_size)`` takes one ``(B_v, D, T)`` tensor or a
list of them (every pyramid level) and returns query-conditioned video, one row per query:
video rows are repeated ``text_size[i]`` times when ``B_v != B_q``. ``xattn_mode``: ``adaln``
(non-affine LayerNorm, then text-predicted scale/shift) or ``affine`` (scale/shift only).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from hieramamba.models.attention import TransformerDecoder
from hieramamba.models.backbone import zero_linear_conv_biases
from hieramamba.models.norms import LayerNorm


class XAttnFusion(nn.Module):
    def __init__(self, vid_dim: int, text_dim: int, n_layers: int = 2, n_heads: int = 4, attn_pdrop: float = 0.0,
                 proj_pdrop: float = 0.1, path_pdrop: float = 0.1, xattn_mode: str = "adaln"):
        super().__init__()
        self.layers = nn.ModuleList(
            TransformerDecoder(vid_dim, text_dim, n_heads=n_heads, attn_pdrop=attn_pdrop, proj_pdrop=proj_pdrop,
                               path_pdrop=path_pdrop, xattn_mode=xattn_mode)
            for _ in range(n_layers)
        )
        self.ln_out = LayerNorm(vid_dim)
        self.xattn_mode = xattn_mode
        zero_linear_conv_biases(self)

    def fuse(self, q, q_mask, kv, kv_mask, kv_size=None):
        # q (B_v, D, T), kv (B_q, C_t, t) -> (B_q, D, T), (B_q, 1, T)
        for layer in self.layers:
            q, q_mask = layer(q, q_mask, kv, kv_mask, kv_size)
        q = self.ln_out(q)
        if kv_size is not None and q.shape[0] != kv.shape[0]:  # only when there are no layers
            q = q.repeat_interleave(kv_size, dim=0)
            q_mask = q_mask.repeat_interleave(kv_size, dim=0)
        return q, q_mask

    def forward(self, vid, vid_masks, text, text_masks, text_size=None):
        if isinstance(vid, torch.Tensor):
            return self.fuse(vid, vid_masks, text, text_masks, text_size)
        out, out_masks = [], []
        for x, mask in zip(vid, vid_masks):
            x, mask = self.fuse(x, mask, text, text_masks, text_size)
            out.append(x)
            out_masks.append(mask)
        return out, out_masks
