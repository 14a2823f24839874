"""MS-Temba (thearkaprava/MS-Temba) as a grounding backbone (seed-backbones.md §2).

We follow the **current release** (``vim/models_MSTemba.py`` at d983f2f, Dec 2025, the one that
matches the paper's v3 parameter count), written in the brief's v1 vocabulary:

- **Temba block i** (dilation d_i = 1, 2, 3): Temporal Local Module = ``LinearProjection``
  (Linear -> LayerNorm -> GELU; the current release has no temporal conv here), then the
  **Dilated Temporal SSM**: the sequence is split into d_i *interleaved* sub-sequences
  X_g = (X_g, X_{g+d}, X_{g+2d}, ...), each processed by its *own* bi-Mamba unit, and the outputs
  are written back to their positions. Blocks are sequential.
- **Temba Fuser**: f = LN(Linear_1(x1)) + LN(Linear_2(x2)) + LN(Linear_3(x3)) with one LayerNorm
  shared by the three scales, then one bi-Mamba unit over f.
- bi-Mamba unit: Vim's wrapper with depth 1, U(X) = RMSNorm_f(X + DropPath_0.1(BiMamba(RMSNorm(X))))
  with the two directions **averaged** (Vim's ``if_divide_out``), d_state 16.

The earlier release (34a6ffd, Jan 2025, paper v1) differs: its TLM is a dilated Conv1d (k=3) ->
LN -> GELU, and its "dilation" cuts the sequence into d **contiguous** segments processed by one
**shared** unit (so an SSM only sees T/d frames). Not implemented; see docs/backbones.md.

Grounding adaptation (§2.9, option A "MS-Temba trunk + pyramid tail"):

    x (B, C_in, T) -> EmbeddingStem (SnAG/HieraMamba's) -> Temba blocks (d = 1, 2, 3) -> Fuser
      -> level 0 = fused output (length T')
      -> level l = bi-Mamba unit(masked max-pool k3 s2 of level l-1)      (length ceil(T' / 2^l))

- constant width D = ``embd_dim`` everywhere (the release grows 256 -> 384 -> 576; the head needs D);
- dropped: the per-block classification heads, the 1000-way unused unit heads and the C-alignment
  loss (no grounding analogue);
- init: MS-Temba's (every Linear weight trunc-normal 0.02, every Linear bias 0, including both dt
  biases; LayerNorm 1/0) on everything after the stem; the stem keeps SnAG's init;
- masking: the §4.2 recipe inside every unit; for interleaved groups, end-padding of the timeline is
  end-padding of every group (group masks are strided slices of the mask), so valid outputs never
  depend on padding. Both scan directions always run (the public code drops the backward one
  without CUDA).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from hieramamba.errors import ConfigError
from hieramamba.models.attention import MaskedMaxPool1D
from hieramamba.models.backbones import BackboneOutput
from hieramamba.models.selective_scan import DEFAULT_CHUNK_SIZE
from hieramamba.models.stem import EmbeddingStem
from hieramamba.models.vim import VimStack


def bimamba_unit(d_model: int, **kwargs) -> VimStack:
    """MS-Temba's bi-Mamba unit: a depth-1 Vim stack, directions averaged."""
    return VimStack(d_model, depth=1, combine="mean", **kwargs)


class LinearProjection(nn.Module):
    """The current release's local module: Linear -> LayerNorm -> GELU, channels-last."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.fc = nn.Linear(in_dim, out_dim)
        self.norm = nn.LayerNorm(out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, L, C_in) -> (B, L, C_out)
        return F.gelu(self.norm(self.fc(x)))


class DilatedSSM(nn.Module):
    """Dilated Temporal SSM: d interleaved sub-sequences, one bi-Mamba unit each.

    ``forward(x (B, L, D), mask (B, L) bool) -> (B, L, D)``: pad L to a multiple of d (padding
    masked), X_g = x[:, g::d], Y_g = U_g(X_g, mask[:, g::d]), y[:, g::d] = Y_g, crop to L.
    """

    def __init__(self, d_model: int, dilation: int, **unit_kwargs):
        super().__init__()
        if dilation < 1:
            raise ConfigError(f"model.backbone.dilations: {dilation} must be >= 1")
        self.dilation = dilation
        self.units = nn.ModuleList(bimamba_unit(d_model, **unit_kwargs) for _ in range(dilation))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, length, c = x.shape
        d = self.dilation
        pad = -length % d
        if pad:
            x = F.pad(x, (0, 0, 0, pad))
            mask = F.pad(mask, (0, pad), value=False)
        groups = [unit(x[:, g::d], mask[:, g::d]) for g, unit in enumerate(self.units)]  # d x (B, L'/d, D)
        y = torch.stack(groups, dim=2).reshape(b, length + pad, c)  # interleave back
        return y[:, :length]


class TembaBlock(nn.Module):
    """Temporal Local Module (LinearProjection) followed by the Dilated Temporal SSM."""

    def __init__(self, in_dim: int, d_model: int, dilation: int, **unit_kwargs):
        super().__init__()
        self.local = LinearProjection(in_dim, d_model)
        self.dts = DilatedSSM(d_model, dilation, **unit_kwargs)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # (B, L, C) -> (B, L, D)
        return self.dts(self.local(x), mask)


class TembaFuser(nn.Module):
    """Project every scale, shared LayerNorm, sum, one bi-Mamba unit."""

    def __init__(self, in_dims: Sequence[int], d_model: int, **unit_kwargs):
        super().__init__()
        self.projs = nn.ModuleList(nn.Linear(c, d_model) for c in in_dims)
        self.norm = nn.LayerNorm(d_model)
        self.interaction = bimamba_unit(d_model, **unit_kwargs)

    def forward(self, scales: Sequence[torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        f = sum(self.norm(proj(s)) for proj, s in zip(self.projs, scales))  # (B, L, D)
        return self.interaction(f, mask)


def mstemba_init_(module: nn.Module) -> None:
    """MS-Temba's ``_init_weights`` (§1.3): Linear weights trunc-normal(0.02), biases 0, LayerNorm 1/0."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class MSTembaBackbone(nn.Module):
    """``forward(x (B, C_in, T), mask (B, 1, T) | (B, T)) -> BackboneOutput(fpn, fpn_masks)``."""

    def __init__(self, in_dim: int, embd_dim: int, max_seq_len: int = 2304, num_levels: int = 8,
                 num_convs: int = 2, input_stride: int = 1, use_abs_pe: bool = True,
                 dilations: Sequence[int] = (1, 2, 3), d_state: int = 16, d_conv: int = 4, expand: int = 2,
                 drop_path_rate: float = 0.1, chunk_size: int = DEFAULT_CHUNK_SIZE, ssm_backend: str = "auto",
                 reference_precision: bool = False):
        super().__init__()
        if num_levels < 1:
            raise ConfigError(f"model.backbone.num_levels = {num_levels} must be >= 1")
        if len(dilations) < 1:
            raise ConfigError("model.backbone.dilations must list at least one dilation")
        self.embd_dim = embd_dim
        self.num_levels = num_levels
        self.level_strides = [input_stride * 2 ** level for level in range(num_levels)]
        unit = dict(drop_path_rate=drop_path_rate, d_state=d_state, d_conv=d_conv, expand=expand,
                    chunk_size=chunk_size, backend=ssm_backend)
        self.stem = EmbeddingStem(in_dim, embd_dim, max_seq_len, num_convs, input_stride, use_abs_pe,
                                  reference_precision)
        self.blocks = nn.ModuleList(TembaBlock(embd_dim, embd_dim, int(d), **unit) for d in dilations)
        self.fuser = TembaFuser([embd_dim] * len(dilations), embd_dim, **unit)
        self.pyramid = nn.ModuleList(bimamba_unit(embd_dim, **unit) for _ in range(num_levels - 1))
        self.pool = MaskedMaxPool1D(3, stride=2)
        for part in (self.blocks, self.fuser, self.pyramid):
            mstemba_init_(part)

    @property
    def dilations(self) -> list[int]:
        return [block.dts.dilation for block in self.blocks]

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> BackboneOutput:
        if mask.ndim == 2:
            mask = mask[:, None, :]  # (B, T) -> (B, 1, T)
        x, mask = self.stem(x, mask)  # (B, D, T'), (B, 1, T')
        h = x.transpose(1, 2)  # (B, T', D)
        valid = mask[:, 0]  # (B, T')
        scales = []
        for block in self.blocks:
            h = block(h, valid)
            scales.append(h)
        fused = self.fuser(scales, valid).transpose(1, 2)  # (B, D, T')
        fpn, fpn_masks = [fused], [mask]
        x = fused
        for unit in self.pyramid:
            pooled, _ = self.pool(x, mask)  # (B, D, ceil(T_l / 2))
            mask = mask[..., ::2]  # nearest downsampling, as SnAG's strided layers
            x = unit(pooled.transpose(1, 2), mask[:, 0]).transpose(1, 2)  # zero at padded steps
            fpn.append(x)
            fpn_masks.append(mask)
        return BackboneOutput(fpn=fpn, fpn_masks=fpn_masks)

    def mixers(self) -> dict[str, str]:
        """Which mixers the blocks use (for the model summary)."""
        return {"global_mixer": "dilated_bimamba", "local_mixer": "linear_projection"}
