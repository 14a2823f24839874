"""VideoMamba over the clip-feature sequence, with a pooled grounding pyramid (seed-backbones.md §3).

With one token per time step VideoMamba's spatial-first scan is plain temporal order, so the model
is a stack of Vim blocks (bidirectional Mamba-1 mixer, directions **summed**, pre-RMSNorm, float32
residual stream, linear drop-path schedule, final add + RMSNorm) over time (§3.4). VideoMamba is
isotropic, so the pyramid is added as option A of §3.5:

    x (B, C_in, T) -> EmbeddingStem (SnAG/HieraMamba's, shared for a controlled comparison)
      -> VimStack(depth) at full length T'            -> level 0
      -> masked max-pool k3 s2 of level l-1           -> level l   (length ceil(T' / 2^l))

Choices (documented in docs/backbones.md):
- depth 24 (VideoMamba-S's depth; at the Ego4D width D = 384 this is VideoMamba-S, ~26 M parameters
  against HieraMamba's ~29 M), width D = the dataset's ``embd_dim``.
- stem: HieraMamba's embedding (1x1 conv + 2 masked convs + the dataset's sinusoidal PE) instead of
  VideoMamba's patch embedding and learned zero-init temporal PE (the scans encode order anyway);
  no cls token (no role in dense per-step outputs).
- init: VideoMamba's (§1.3): every Linear weight of the stack trunc-normal(0.02), every Linear
  bias 0 (so both dt biases are 0, dt ~ softplus(0) at init), then ``out_proj`` kaiming-uniform
  (a = sqrt 5) / sqrt(depth). The stem keeps SnAG's init.
- pooling: max-pool k3 s2 (ActionMamba's ``MaxPooler``), mask nearest-downsampled as SnAG does.
- both scan directions always run (the public code drops the backward one without CUDA).
- masking: the §4.2 recipe inside every mixer; padded outputs are zero.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from hieramamba.errors import ConfigError
from hieramamba.models.attention import MaskedMaxPool1D
from hieramamba.models.backbones import BackboneOutput
from hieramamba.models.selective_scan import DEFAULT_CHUNK_SIZE
from hieramamba.models.stem import EmbeddingStem
from hieramamba.models.vim import VimStack


def videomamba_init_(stack: VimStack) -> None:
    """VideoMamba's effective init of a Vim stack (§1.3): ``segm_init_weights`` on everything, then
    Mamba's ``_init_weights`` (zero non-``_no_reinit`` biases, rescale ``out_proj``)."""
    depth = len(stack.mixers)
    for m in stack.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)  # includes the forward dt_proj bias
    for mixer in stack.mixers:
        nn.init.kaiming_uniform_(mixer.out_proj.weight, a=math.sqrt(5))
        with torch.no_grad():
            mixer.out_proj.weight.div_(math.sqrt(depth))


class VideoMambaBackbone(nn.Module):
    """``forward(x (B, C_in, T), mask (B, 1, T) | (B, T)) -> BackboneOutput(fpn, fpn_masks)``;
    ``num_levels`` levels of width ``embd_dim``, level l of length ceil(T' / 2^l)."""

    def __init__(self, in_dim: int, embd_dim: int, max_seq_len: int = 2304, num_levels: int = 8,
                 num_convs: int = 2, input_stride: int = 1, use_abs_pe: bool = True, depth: int = 24,
                 d_state: int = 16, d_conv: int = 4, expand: int = 2, drop_path_rate: float = 0.1,
                 chunk_size: int = DEFAULT_CHUNK_SIZE, ssm_backend: str = "auto", reference_precision: bool = False):
        super().__init__()
        if num_levels < 1:
            raise ConfigError(f"model.backbone.num_levels = {num_levels} must be >= 1")
        if depth < 1:
            raise ConfigError(f"model.backbone.depth = {depth} must be >= 1")
        self.embd_dim = embd_dim
        self.num_levels = num_levels
        self.level_strides = [input_stride * 2 ** level for level in range(num_levels)]
        self.stem = EmbeddingStem(in_dim, embd_dim, max_seq_len, num_convs, input_stride, use_abs_pe,
                                  reference_precision)
        self.blocks = VimStack(embd_dim, depth, drop_path_rate=drop_path_rate, d_state=d_state, d_conv=d_conv,
                               expand=expand, combine="sum", chunk_size=chunk_size, backend=ssm_backend)
        videomamba_init_(self.blocks)
        self.pool = MaskedMaxPool1D(3, stride=2)

    @property
    def backend_name(self) -> str:
        return self.blocks.mixers[0].backend_name

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> BackboneOutput:
        if mask.ndim == 2:
            mask = mask[:, None, :]  # (B, T) -> (B, 1, T)
        x, mask = self.stem(x, mask)  # (B, D, T'), (B, 1, T')
        x = self.blocks(x.transpose(1, 2), mask[:, 0]).transpose(1, 2)  # (B, D, T')
        fpn, fpn_masks = [x], [mask]
        for _ in range(1, self.num_levels):
            pooled, _ = self.pool(x, mask)  # (B, D, ceil(T_l / 2))
            mask = mask[..., ::2]  # nearest downsampling, as SnAG's strided layers
            x = pooled * mask.to(pooled.dtype)
            fpn.append(x)
            fpn_masks.append(mask)
        return BackboneOutput(fpn=fpn, fpn_masks=fpn_masks)

    def mixers(self) -> dict[str, str]:
        """Which mixers the blocks use (for the model summary)."""
        return {"global_mixer": "bimamba", "local_mixer": "none"}
