"""HieraMamba's video backbone (reference §1.4): embedding stem, a stack of AMP blocks.

    x (B, C_in, T) -> stem (``hieramamba.models.stem``): embd_fc (masked 1x1 conv) -> num_convs x
      [masked conv, LayerNorm, ReLU] -> + sinusoidal PE (optional) -> AMP block 0 .. num_levels-1
    level l = refined tokens of block l (length ceil(T' / s^l), T' the embedded length);
    block l > 0 consumes block l-1's anchors.

``activation_checkpointing`` (off by default, as the authors train): in training, the activations
of each AMP block's three branches (global mixer, local mixer, FFN) are not kept for the backward
but recomputed from the branch's input (``AMPBlock._branch``, ``torch.utils.checkpoint``): the
same gradients for less memory, at the cost of a second forward of every branch.

MAD uses ``input_stride=2``: the first embedding conv is kernel 5, stride 2 (mask downsampled),
so every level stride is doubled relative to the input grid.

The stem's layers are registered on the backbone itself (``embd_fc``, ``embd_convs``,
``embd_norms``, ``pe``), by the same code that builds the seed backbones' ``EmbeddingStem``, so the
checkpoint keys stay those of the authors' checkpoints.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from hieramamba.errors import ConfigError
from hieramamba.models.amp import AMPBlock
from hieramamba.models.backbones import BackboneOutput
from hieramamba.models.stem import (  # noqa: F401  (position_table, positions_for_length: re-exported)
    add_embedding_layers,
    embed,
    position_table,
    positions_for_length,
)


def zero_linear_conv_biases(module: nn.Module) -> None:
    """The authors' init: zero the bias of every ``nn.Linear`` / ``nn.Conv1d`` inside ``module``."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv1d)) and m.bias is not None:
            nn.init.zeros_(m.bias)


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
                 ssm_backend: str = "auto", reference_mask_quirk: bool = False, reference_precision: bool = False,
                 reference_padding_leak: bool = False, activation_checkpointing: bool = False):
        super().__init__()
        add_embedding_layers(self, in_dim, embd_dim, max_seq_len, num_convs, input_stride, use_abs_pe,
                             reference_precision)  # embd_fc, embd_convs, embd_norms, pe, input_stride
        if num_levels < 1:
            raise ConfigError(f"model.backbone.num_levels = {num_levels} must be >= 1")
        self.embd_dim = embd_dim
        self.max_seq_len = max_seq_len
        self.num_levels = num_levels
        self.stride = int(stride)
        self.level_strides = [input_stride * self.stride ** level for level in range(num_levels)]
        self.global_mixer_kind = global_mixer
        self.local_mixer_kind = local_mixer

        self.branch = nn.ModuleList(
            AMPBlock(embd_dim, stride=self.stride, pool=pool, gate=gate, global_mixer=global_mixer,
                     local_mixer=local_mixer, window_size=window_size if i < num_window_blocks else 0,
                     local_heads=local_heads, global_heads=global_heads, dropout=dropout, ffn=ffn,
                     d_state=d_state, d_conv=d_conv, expand=expand, headdim=headdim, chunk_size=chunk_size,
                     ssm_backend=ssm_backend, reference_mask_quirk=reference_mask_quirk,
                     reference_precision=reference_precision, reference_padding_leak=reference_padding_leak,
                     activation_checkpointing=activation_checkpointing)
            for i in range(num_levels)
        )
        zero_linear_conv_biases(self)

    def embed(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The stem (``hieramamba.models.stem.embed``): ``(B, C_in, T)`` -> ``(B, D, T / input_stride)``."""
        return embed(self, x, mask)

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
