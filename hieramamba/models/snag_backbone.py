"""SnAG's video backbone (reference §4.4; fmu2/snag_release ``VideoTransformer``) on the embedding
stem SnAG and HieraMamba share (§1.4 steps 1-3; ``hieramamba.models.stem``).

    x (B, C_in, T) -> EmbeddingStem: embd_fc (masked 1x1 conv) -> num_convs x [masked conv (no bias),
      channel LayerNorm, ReLU] -> + sinusoidal PE (optional) -> x * mask
    -> branch 0: TransformerEncoder(stride 1)  -> level 0
    -> branch l: TransformerEncoder(stride 2)  -> level l   (length ceil(T' / 2^l))

Each encoder is windowed self-attention (window 19 for Ego4D/TACoS, 17 for MAD; 4 heads) with
depthwise-conv q/k/v (stride 2 on levels >= 1, masked max-pool skip) and an FFN, from
``hieramamba.models.attention``. SnAG's ``arch[1]`` stem transformers are 0 in every released
config and are left out. SnAG is late-fusion only; the fusion and heads are the model's.
MAD uses ``input_stride=2`` (first embedding conv kernel 5, stride 2), which doubles every level
stride relative to the input grid.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from hieramamba.errors import ConfigError
from hieramamba.models.attention import TransformerEncoder
from hieramamba.models.backbone import zero_linear_conv_biases
from hieramamba.models.backbones import BackboneOutput
from hieramamba.models.stem import EmbeddingStem


class SnAGBackbone(nn.Module):
    """SnAG's windowed-attention pyramid. ``forward(x (B, C_in, T), mask (B, 1, T) | (B, T))
    -> BackboneOutput(fpn, fpn_masks)`` (no anchors); level l has length ceil(T' / 2^l).

    Defaults are SnAG's released settings: 4 heads, attention dropout 0, projection and path
    dropout 0.1, all Linear/Conv1d biases zero at init. ``window_size`` 19 (Ego4D, TACoS) or 17 (MAD).
    """

    def __init__(self, in_dim: int, embd_dim: int, max_seq_len: int = 2304, num_levels: int = 8,
                 num_convs: int = 2, input_stride: int = 1, use_abs_pe: bool = True, n_heads: int = 4,
                 window_size: int = 19, attn_pdrop: float = 0.0, proj_pdrop: float = 0.1,
                 path_pdrop: float = 0.1, reference_precision: bool = False):
        super().__init__()
        if num_levels < 1:
            raise ConfigError(f"model.backbone.num_levels = {num_levels} must be >= 1")
        if window_size < 0 or (window_size > 0 and window_size % 2 == 0):
            raise ConfigError(f"model.backbone.window_size = {window_size} must be odd (or 0 = global)")
        self.embd_dim = embd_dim
        self.num_levels = num_levels
        self.level_strides = [input_stride * 2 ** level for level in range(num_levels)]
        self.stem = EmbeddingStem(in_dim, embd_dim, max_seq_len, num_convs, input_stride, use_abs_pe,
                                  reference_precision)
        self.branch = nn.ModuleList(
            TransformerEncoder(embd_dim, stride=2 if level > 0 else 1, n_heads=n_heads, window_size=window_size,
                               attn_pdrop=attn_pdrop, proj_pdrop=proj_pdrop, path_pdrop=path_pdrop)
            for level in range(num_levels)
        )
        zero_linear_conv_biases(self)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> BackboneOutput:
        if mask.ndim == 2:
            mask = mask[:, None, :]  # (B, T) -> (B, 1, T)
        x, mask = self.stem(x, mask)
        fpn, fpn_masks = [], []
        for block in self.branch:
            x, mask = block(x, mask)  # (B, D, T_l), (B, 1, T_l)
            x = x * mask.to(x.dtype)  # the encoder leaves padded outputs unspecified
            fpn.append(x)
            fpn_masks.append(mask)
        return BackboneOutput(fpn=fpn, fpn_masks=fpn_masks)

    def mixers(self) -> dict[str, str]:
        """Which mixers the blocks use (for the model summary)."""
        return {"global_mixer": "none", "local_mixer": "window_attention"}
