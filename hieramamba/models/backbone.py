"""HieraMamba's video backbone (reference §1.4): embedding convs, absolute PE, a stack of AMP blocks.

    x (B, C_in, T) -> embd_fc (masked 1x1 conv) -> num_convs x [masked conv, LayerNorm, ReLU]
      -> + sinusoidal PE (optional) -> AMP block 0 .. num_levels-1
    level l = refined tokens of block l (length ceil(T' / s^l), T' the embedded length);
    block l > 0 consumes block l-1's anchors.

MAD uses ``input_stride=2``: the first embedding conv is kernel 5, stride 2 (mask downsampled),
so every level stride is doubled relative to the input grid.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from hieramamba.errors import ConfigError
from hieramamba.models.amp import AMPBlock
from hieramamba.models.attention import MaskedConv1D, sinusoid_encoding
from hieramamba.models.backbones import BackboneOutput
from hieramamba.models.norms import LayerNorm


def zero_linear_conv_biases(module: nn.Module) -> None:
    """The authors' init: zero the bias of every ``nn.Linear`` / ``nn.Conv1d`` inside ``module``."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv1d)) and m.bias is not None:
            nn.init.zeros_(m.bias)


def position_table(max_seq_len: int, embd_dim: int, reference_precision: bool = False) -> torch.Tensor:
    """The backbone's PE ``(D, max_seq_len)``: SnAG's sinusoid table divided by sqrt(D).

    Computed in float64 (then cast to the activations' dtype at use); ``reference_precision``
    computes it in float32 as the authors do (their third float32 round-trip).
    """
    if embd_dim % 2:
        raise ConfigError(f"model.embd_dim = {embd_dim} must be even for the sinusoidal position encoding")
    dtype = torch.float32 if reference_precision else torch.float64
    return sinusoid_encoding(max_seq_len, embd_dim // 2, dtype=dtype) / embd_dim ** 0.5


def positions_for_length(pe: torch.Tensor, length: int, training: bool) -> torch.Tensor:
    """PE for ``length`` steps: a prefix of the table, or (eval only) the table linearly
    interpolated to ``length`` when the video is longer than ``max_seq_len``."""
    if length <= pe.shape[-1]:
        return pe[..., :length]
    if training:
        raise ValueError(f"training sequence length {length} exceeds max_seq_len {pe.shape[-1]}")
    return F.interpolate(pe[None], size=length, mode="linear", align_corners=True)[0]


class HieraMambaBackbone(nn.Module):
    """Embedding + AMP pyramid. ``forward(x (B, C_in, T), mask (B, 1, T) | (B, T)) -> BackboneOutput``.

    Block i uses local window ``window_size`` when i < ``num_window_blocks`` (5, as the authors)
    and global attention in its local branch above. All Linear/Conv1d biases start at zero.
    """

    def __init__(self, in_dim: int, embd_dim: int, max_seq_len: int = 2304, num_levels: int = 8,
                 num_convs: int = 2, input_stride: int = 1, use_abs_pe: bool = True, stride: int = 2,
                 pool: str = "mean", gate: bool = True, global_mixer: str = "hydra",
                 local_mixer: str = "window_attention", window_size: int = 5, num_window_blocks: int = 5,
                 local_heads: int = 2, global_heads: int = 4, dropout: float = 0.1, ffn: str = "auto",
                 d_state: int = 64, d_conv: int = 7, expand: int = 2, headdim: int = 64, chunk_size: int = 64,
                 ssm_backend: str = "auto", reference_mask_quirk: bool = False, reference_precision: bool = False):
        super().__init__()
        if input_stride < 1 or input_stride & (input_stride - 1):
            raise ConfigError(f"model.backbone.input_stride = {input_stride} must be a power of 2")
        if num_convs < int(math.log2(input_stride)):
            raise ConfigError(f"model.backbone.num_convs = {num_convs} cannot realise input_stride {input_stride}")
        if num_levels < 1:
            raise ConfigError(f"model.backbone.num_levels = {num_levels} must be >= 1")
        self.embd_dim = embd_dim
        self.max_seq_len = max_seq_len
        self.num_levels = num_levels
        self.input_stride = input_stride
        self.stride = int(stride)
        self.level_strides = [input_stride * self.stride ** level for level in range(num_levels)]
        self.global_mixer_kind = global_mixer
        self.local_mixer_kind = local_mixer

        self.embd_fc = MaskedConv1D(in_dim, embd_dim, 1)
        self.embd_convs = nn.ModuleList()
        self.embd_norms = nn.ModuleList()
        remaining = input_stride
        for _ in range(num_convs):
            strided = remaining > 1
            self.embd_convs.append(MaskedConv1D(embd_dim, embd_dim, kernel_size=5 if strided else 3,
                                                stride=2 if strided else 1, padding=2 if strided else 1, bias=False))
            self.embd_norms.append(LayerNorm(embd_dim))
            remaining = max(remaining // 2, 1)
        if use_abs_pe:
            self.register_buffer("pe", position_table(max_seq_len, embd_dim, reference_precision), persistent=False)
        else:
            self.pe = None

        self.branch = nn.ModuleList(
            AMPBlock(embd_dim, stride=self.stride, pool=pool, gate=gate, global_mixer=global_mixer,
                     local_mixer=local_mixer, window_size=window_size if i < num_window_blocks else 0,
                     local_heads=local_heads, global_heads=global_heads, dropout=dropout, ffn=ffn,
                     d_state=d_state, d_conv=d_conv, expand=expand, headdim=headdim, chunk_size=chunk_size,
                     ssm_backend=ssm_backend, reference_mask_quirk=reference_mask_quirk,
                     reference_precision=reference_precision)
            for i in range(num_levels)
        )
        zero_linear_conv_biases(self)

    def embed(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Input projection, embedding convs and PE: ``(B, C_in, T)`` -> ``(B, D, T / input_stride)``."""
        x, _ = self.embd_fc(x, mask)
        for conv, norm in zip(self.embd_convs, self.embd_norms):
            x, mask = conv(x, mask)
            x = F.relu(norm(x))
        mask_f = mask.to(x.dtype)
        if self.pe is not None:
            x = x + positions_for_length(self.pe, x.shape[-1], self.training).to(x.dtype)
        return x * mask_f, mask

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> BackboneOutput:
        if mask.ndim == 2:
            mask = mask[:, None, :]  # (B, T) -> (B, 1, T)
        x, mask = self.embed(x, mask)
        fpn, fpn_masks, anchors, anchor_masks = [], [], [], []
        for block in self.branch:
            x, tokens, anchor_mask, token_mask = block(x, mask)
            fpn.append(tokens)
            fpn_masks.append(token_mask)
            anchors.append(x)
            anchor_masks.append(anchor_mask)
            mask = anchor_mask
        return BackboneOutput(fpn=fpn, fpn_masks=fpn_masks, anchors=anchors, anchor_masks=anchor_masks)

    def mixers(self) -> dict[str, str]:
        """Which mixers the blocks use (for the model summary)."""
        return {"global_mixer": self.global_mixer_kind, "local_mixer": self.local_mixer_kind}
