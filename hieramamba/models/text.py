"""Text encoders over pre-extracted token features (SnAG's ``text_net``).

- ``identity`` (Ego4D, MAD): masked 1x1 conv ``in_dim -> embd_dim`` (when ``embd_dim`` is given),
  optional PE, then ``AttNPool1D``: prepend the masked mean token, one global self-attention over
  [mean ; tokens], keep slot 0 and prepend it to the tokens (length t + 1).
- ``transformer`` (TACoS): masked 1x1 conv, sinusoidal PE, a learnable background token
  (trunc-normal, std 0.02) prepended, ``n_layers`` global ``TransformerEncoder`` layers without
  convs (stride 0).

``forward(x (B_q, C_t, t), mask (B_q, 1, t) | (B_q, t)) -> ((B_q, D_t, t'), (B_q, 1, t'))``.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from hieramamba.errors import ConfigError
from hieramamba.models.attention import MaskedConv1D, MaskedMHA, TransformerEncoder
from hieramamba.models.backbone import position_table, positions_for_length, zero_linear_conv_biases

TEXT_NETS = ("identity", "transformer")


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over valid steps, ``(B, C, t), (B, 1, t) -> (B, C, 1)`` (0 for an empty row)."""
    m = mask.to(x.dtype)
    return (x * m).sum(-1, keepdim=True) / m.sum(-1, keepdim=True).clamp(min=1.0)


class AttNPool1D(nn.Module):
    """Prepend an attention-pooled summary token: ``(B, C, t) -> (B, C, t + 1)``."""

    def __init__(self, embd_dim: int, n_heads: int = 4):
        super().__init__()
        self.attn = MaskedMHA(embd_dim, n_heads=n_heads)

    def forward(self, x, mask):
        h = torch.cat((masked_mean(x, mask), x), dim=-1)
        mask = torch.cat((mask[..., :1], mask), dim=-1)
        pooled = self.attn(h, kv_mask=mask)[..., :1]
        return torch.cat((pooled, x), dim=-1), mask


class _PositionMixin(nn.Module):
    def _add_pe(self, x, mask):
        if self.pe is None:
            return x
        return x + positions_for_length(self.pe, x.shape[-1], self.training).to(x.dtype) * mask.to(x.dtype)


class TextIdentity(_PositionMixin):
    def __init__(self, in_dim: int, embd_dim: int | None = None, max_seq_len: int = 32, n_heads: int = 4,
                 use_abs_pe: bool = False, use_bkgd_token: bool = True, reference_precision: bool = False):
        super().__init__()
        self.embd_fc = MaskedConv1D(in_dim, embd_dim, 1) if embd_dim is not None else None
        embd_dim = in_dim if embd_dim is None else embd_dim
        self.out_dim = embd_dim
        if use_abs_pe:
            self.register_buffer("pe", position_table(max_seq_len, embd_dim, reference_precision), persistent=False)
        else:
            self.pe = None
        self.attn_pool = AttNPool1D(embd_dim, n_heads=n_heads) if use_bkgd_token else None
        zero_linear_conv_biases(self)

    def forward(self, x, mask):
        if mask.ndim == 2:
            mask = mask[:, None, :]
        if self.embd_fc is not None:
            x, _ = self.embd_fc(x, mask)
        x = self._add_pe(x, mask)
        if self.attn_pool is not None:
            x, mask = self.attn_pool(x, mask)
        return x, mask


class TextTransformer(_PositionMixin):
    def __init__(self, in_dim: int, embd_dim: int, max_seq_len: int = 32, n_heads: int = 4, n_layers: int = 5,
                 attn_pdrop: float = 0.0, proj_pdrop: float = 0.1, path_pdrop: float = 0.1, use_abs_pe: bool = True,
                 use_bkgd_token: bool = True, reference_precision: bool = False):
        super().__init__()
        self.out_dim = embd_dim
        self.embd_fc = MaskedConv1D(in_dim, embd_dim, 1)
        if use_abs_pe:
            self.register_buffer("pe", position_table(max_seq_len, embd_dim, reference_precision), persistent=False)
        else:
            self.pe = None
        if use_bkgd_token:
            self.bkgd_token = nn.Parameter(torch.empty(embd_dim, 1))
            nn.init.trunc_normal_(self.bkgd_token, mean=0.0, std=0.02, a=-2.0, b=2.0)
        else:
            self.bkgd_token = None
        self.transformer = nn.ModuleList(
            TransformerEncoder(embd_dim, stride=0, n_heads=n_heads, attn_pdrop=attn_pdrop, proj_pdrop=proj_pdrop,
                               path_pdrop=path_pdrop)
            for _ in range(n_layers)
        )
        zero_linear_conv_biases(self)

    def forward(self, x, mask):
        if mask.ndim == 2:
            mask = mask[:, None, :]
        x, _ = self.embd_fc(x, mask)
        x = self._add_pe(x, mask)
        if self.bkgd_token is not None:
            x = torch.cat((self.bkgd_token.to(x.dtype).expand(x.shape[0], -1, -1), x), dim=-1)
            mask = torch.cat((mask[..., :1], mask), dim=-1)
        for layer in self.transformer:
            x, _ = layer(x, mask)
        return x, mask


def build_text_net(name: str, **kwargs) -> nn.Module:
    """``identity`` or ``transformer`` text net (see module docstring)."""
    if name == "identity":
        return TextIdentity(**kwargs)
    if name == "transformer":
        return TextTransformer(**kwargs)
    raise ConfigError(f"model.text.name = {name!r} is not one of {list(TEXT_NETS)}")
