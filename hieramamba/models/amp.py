"""The Anchor-Mamba-Pooling (AMP) block (reference §1.2-§1.3), for any anchor stride s >= 2.

One block turns a level's tokens ``x (B, D, L)`` into

- refined tokens ``(B, D, L)`` (one pyramid level), and
- refined anchors ``(B, D, ceil(L / s))`` (the next level's input),

by pooling one anchor per block of s tokens, interleaving ``[a_k, x_{ks} .. x_{ks+s-1}]``,
running a global mixer (Hydra) and a local mixer (windowed attention) over the interleaved
sequence, and splitting it back.

Ablation switches (all from config, see ``docs/model.md``):

- ``gate``: sigmoid-gated fusion after each mixer (the authors' ``AnchorMambaPoolingBlockGated``)
  or plain residuals (``AnchorMambaPoolingBlock``).
- ``global_mixer``: ``hydra`` | ``mamba`` (unidirectional scan) | ``attention`` | ``none``.
- ``local_mixer``: ``window_attention`` (SnAG encoder layer; ``window_size=0`` = global) | ``none``.
- ``stride`` s, ``pool``: ``mean`` | ``max`` | ``attn`` | ``gated``.
- ``reference_mask_quirk``: reproduce the authors' batch-summed interleaved mask.
- ``reference_padding_leak``: reproduce the authors' unmasked SSM mixer (their Hydra, and their
  ``Mamba2``, take no mask): the global mixer runs over the whole interleaved sequence, padded
  tokens and anchors and the zero token that fills an odd last block included, so those steps
  reach valid outputs through the depthwise-conv bias and the backward scan. The block's own
  masking (input zeroed, mask applied after each branch) stays as in their code.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from hieramamba.errors import ConfigError
from hieramamba.models.attention import GlobalAttentionMixer, TransformerEncoder
from hieramamba.models.dropout import Dropout
from hieramamba.models.norms import LayerScale, RMSNorm

POOL_METHODS = ("mean", "max", "attn", "gated")
GLOBAL_MIXERS = ("hydra", "mamba", "attention", "none")
LOCAL_MIXERS = ("window_attention", "none")
SSM_MIXERS = ("hydra", "mamba")  # the mixers the authors' code calls without a mask
FFN_TYPES = ("auto", "linear", "swiglu")


def _check(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ConfigError(f"model.backbone.{name} = {value!r} is not one of {list(allowed)}")


# --------------------------------------------------------------------------------------------
# interleave / split / masks
# --------------------------------------------------------------------------------------------

def num_blocks(length: int, stride: int) -> int:
    """Number of anchor blocks nb = ceil(L / s)."""
    return -(-length // stride)


def pad_to_blocks(x: torch.Tensor, stride: int) -> torch.Tensor:
    """Right-pad the last axis with zeros (False for masks) to a multiple of ``stride``."""
    pad = (-x.shape[-1]) % stride
    if pad == 0:
        return x
    if x.dtype == torch.bool:
        return F.pad(x, (0, pad), value=False)
    return F.pad(x, (0, pad))


def downsample_mask(mask: torch.Tensor, stride: int) -> torch.Tensor:
    """Anchor validity ``(B, 1, ceil(L/s))``: an anchor is valid iff any token of its block is."""
    blocks = pad_to_blocks(mask, stride)
    return blocks.reshape(*blocks.shape[:-1], -1, stride).any(-1)


def interleave(tokens: torch.Tensor, anchors: torch.Tensor, stride: int) -> torch.Tensor:
    """``tokens (B, D, L)``, ``anchors (B, D, nb)`` -> interleaved channels-last ``(B, (s+1)nb, D)``.

    Block k becomes ``[a_k, x_{ks}, .., x_{ks+s-1}]``; tokens past L (last partial block) are 0.
    Anchor k sits at position k(s+1), token j of block k at k(s+1) + 1 + j.

    The result is a contiguous ``(B, T', D)``: every op of the block after it (RMSNorm over D,
    the Linear layers, the window attention's fused LayerNorm and 1x1 convs as GEMMs) then reads
    whole rows. (Assembled channels-first and permuted, the (B, T', D) was a view with D the
    slowest axis, and that layout ran through the whole block: its LayerNorms as ~7 elementwise
    passes, strided RMSNorm reductions; 5-9 % of HieraMamba's forward at L = 16k, measured.)
    """
    b, d, _ = tokens.shape
    nb = anchors.shape[-1]
    blocks = pad_to_blocks(tokens, stride).view(b, d, nb, stride)  # (B, D, nb, s)
    mixed = tokens.new_empty(b, nb, stride + 1, d)  # (B, nb, s+1, D)
    mixed[:, :, 0] = anchors.transpose(1, 2)
    mixed[:, :, 1:] = blocks.permute(0, 2, 3, 1)
    return mixed.view(b, -1, d)  # (B, (s+1) nb, D)


def interleave_mask(mask: torch.Tensor, anchor_mask: torch.Tensor, stride: int) -> torch.Tensor:
    """Per-sample mask of the interleaved sequence, ``(B, 1, L)`` + ``(B, 1, nb)`` -> ``(B, T')``."""
    b = mask.shape[0]
    blocks = pad_to_blocks(mask[:, 0], stride).reshape(b, -1, stride)  # (B, nb, s)
    return torch.cat((anchor_mask[:, 0, :, None], blocks), dim=-1).reshape(b, -1)  # (B, T')


def quirk_interleave_mask(mask: torch.Tensor, anchor_mask: torch.Tensor, stride: int) -> torch.Tensor:
    """The authors' interleaved mask: the first (sum over the *whole batch* of valid tokens and
    anchors) positions are True in every row. Right for B = 1, too long for B > 1."""
    b, _, length = mask.shape
    total = num_blocks(length, stride) * (stride + 1)
    n_valid = int(mask.sum()) + int(anchor_mask.sum())
    prefix = torch.arange(total, device=mask.device) < n_valid
    return prefix[None].expand(b, total)


def split(mixed: torch.Tensor, stride: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse of ``interleave``: ``(B, (s+1)nb, D)`` -> anchors ``(B, D, nb)``, tokens ``(B, D, L)``."""
    b, total, d = mixed.shape
    view = mixed.reshape(b, total // (stride + 1), stride + 1, d)  # (B, nb, s+1, D)
    anchors = view[:, :, 0].transpose(1, 2)  # (B, D, nb)
    tokens = view[:, :, 1:].reshape(b, -1, d).transpose(1, 2)[..., :length]  # (B, D, L)
    return anchors, tokens


# --------------------------------------------------------------------------------------------
# anchor pooling
# --------------------------------------------------------------------------------------------

class AnchorPooling(nn.Module):
    """One anchor per block of s tokens, ``(B, D, nb * s)`` -> ``(B, D, nb)``.

    - ``mean``: block average; ``max``: block maximum (no parameters).
    - ``gated``: g = sigmoid(Conv1d_{2D->D, k=1}([mean ; max])), anchor = g * max + (1 - g) * mean.
    - ``attn``: a learnable query (1, 1, D), init N(0, 1)/sqrt(D), attends with single-head
      ``nn.MultiheadAttention`` over the s tokens of its block.

    The input is the zero-padded, masked token sequence, so a last partial block pools over
    zeros exactly as the authors' (who pad with zeros before pooling).
    """

    def __init__(self, stride: int, method: str = "mean", d_model: int = 0, dropout: float = 0.0):
        super().__init__()
        _check("pool", method, POOL_METHODS)
        self.stride = stride
        self.method = method
        if method == "gated":
            self.gate = nn.Conv1d(2 * d_model, d_model, kernel_size=1)
        elif method == "attn":
            self.query = nn.Parameter(torch.randn(1, 1, d_model) / d_model ** 0.5)
            self.attn = nn.MultiheadAttention(d_model, num_heads=1, dropout=dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, D, nb*s) -> (B, D, nb)
        s = self.stride
        if self.method == "mean":
            return F.avg_pool1d(x, s, s)
        if self.method == "max":
            return F.max_pool1d(x, s, s)
        if self.method == "gated":
            mean, mx = F.avg_pool1d(x, s, s), F.max_pool1d(x, s, s)
            g = torch.sigmoid(self.gate(torch.cat((mean, mx), dim=1)))
            return g * mx + (1.0 - g) * mean
        b, d, length = x.shape
        nb = length // s
        kv = x.reshape(b, d, nb, s).permute(3, 0, 2, 1).reshape(s, b * nb, d)  # (s, B*nb, D)
        q = self.query.expand(-1, b * nb, -1)  # (1, B*nb, D)
        out, _ = self.attn(q, kv, kv, need_weights=False)  # (1, B*nb, D)
        return out[0].reshape(b, nb, d).transpose(1, 2)


# --------------------------------------------------------------------------------------------
# FFNs and mixers
# --------------------------------------------------------------------------------------------

class LinearFFN(nn.Module):
    """The released block's FFN (local branch on): Linear(D -> D), GELU, Dropout."""

    def __init__(self, d_model: int, dropout: float):
        super().__init__()
        self.fc = nn.Linear(d_model, d_model)
        self.dropout = Dropout(dropout)

    def forward(self, x):
        return self.dropout(F.gelu(self.fc(x)))


class SwiGLUFFN(nn.Module):
    """The authors' FFN without local branch: w2(silu(gate) * up), [gate | up] = w12(x), hidden int(8D/3)."""

    def __init__(self, d_model: int, dropout: float):
        super().__init__()
        hidden = int(2 * (4 * d_model) / 3)
        self.w12 = nn.Linear(d_model, 2 * hidden, bias=False)
        self.w2 = nn.Linear(hidden, d_model, bias=False)
        self.dropout = Dropout(dropout)

    def forward(self, x):
        gate, up = self.w12(x).chunk(2, dim=-1)
        return self.dropout(self.w2(F.silu(gate) * up))


def build_global_mixer(kind: str, d_model: int, *, d_state: int = 64, d_conv: int = 7, expand: int = 2,
                       headdim: int = 64, chunk_size: int = 64, ssm_backend: str = "auto",
                       n_heads: int = 4, reference_precision: bool = False) -> nn.Module | None:
    """The AMP global mixer with interface ``(B, L, D), (B, L) -> (B, L, D)``; None for ``none``."""
    _check("global_mixer", kind, GLOBAL_MIXERS)
    if kind in ("hydra", "mamba"):
        from hieramamba.models.ssm import Hydra  # imported here: the SSM core is its own module

        return Hydra(d_model, d_state=d_state, d_conv=d_conv, expand=expand, headdim=headdim,
                     chunk_size=chunk_size, backend=ssm_backend, bidirectional=(kind == "hydra"),
                     reference_precision=reference_precision)
    if kind == "attention":
        return GlobalAttentionMixer(d_model, n_heads=n_heads)
    return None


def gated_merge(gate: nn.Linear, f: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """w = sigmoid(gate([f ; h])); w h + (1 - w) f, for f, h (B, T, D) -> (B, T, D).

    ``gate`` (2D -> D) is applied as its two (D -> D) halves, f's matmul accumulating h's in place,
    so the (B, T, 2D) concatenation is never written; the mix is one ``lerp`` (f + w (h - f)).
    """
    d = f.shape[-1]
    logits = F.linear(f, gate.weight[:, :d], gate.bias)  # (B, T, D)
    logits.view(-1, d).addmm_(h.reshape(-1, d), gate.weight[:, d:].t())
    return torch.lerp(f, h, torch.sigmoid(logits))


# --------------------------------------------------------------------------------------------
# the block
# --------------------------------------------------------------------------------------------

class AMPBlock(nn.Module):
    """Anchor-Mamba-Pooling block. ``forward(x (B, D, L), mask (B, 1, L))`` ->
    ``(anchors (B, D, ceil(L/s)), tokens (B, D, L), anchor_mask (B, 1, ceil(L/s)), mask (B, 1, L))``.

    Gated (default, §1.2), with c = interleaved input and m its mask:
        g  = (LS_g(G(RMSNorm_g(c), m)) + c) * m;   w1 = sigmoid(W1 [c ; g]);   f1 = w1 g + (1 - w1) c
        l  = (LS_l(Loc(RMSNorm_l(f1), m)) + f1) * m; w2 = sigmoid(W2 [f1 ; l]); f = w2 l + (1 - w2) f1
        out = LS_f(FFN(RMSNorm_f(f))) + f
    Plain (``gate=False``): g = (c + LS_g(G(RMSNorm_g(c)))) * m; l = (g + LS_l(Loc(RMSNorm_l(g)))) * m;
    out = l + LS_f(FFN(RMSNorm_f(l))). A branch whose mixer is ``none`` is skipped (with its gate).

    ``ffn``: ``auto`` picks the authors' choice (Linear+GELU when the local branch is on, SwiGLU
    when it is off); ``linear`` / ``swiglu`` force one.
    """

    def __init__(self, d_model: int, stride: int = 2, pool: str = "mean", gate: bool = True,
                 global_mixer: str = "hydra", local_mixer: str = "window_attention", window_size: int = 5,
                 local_heads: int = 2, global_heads: int = 4, dropout: float = 0.1, ffn: str = "auto",
                 d_state: int = 64, d_conv: int = 7, expand: int = 2, headdim: int = 64, chunk_size: int = 64,
                 ssm_backend: str = "auto", reference_mask_quirk: bool = False, reference_precision: bool = False,
                 reference_padding_leak: bool = False, activation_checkpointing: bool = False):
        super().__init__()
        if int(stride) < 2:
            raise ConfigError(f"model.backbone.stride = {stride!r} must be an int >= 2")
        _check("local_mixer", local_mixer, LOCAL_MIXERS)
        _check("ffn", ffn, FFN_TYPES)
        if window_size != 0 and window_size % 2 != 1:
            raise ConfigError(f"model.backbone.window_size = {window_size!r} must be odd (or 0 for global attention)")
        self.stride = int(stride)
        self.d_model = d_model
        self.gated = bool(gate)
        self.global_kind = global_mixer
        self.local_kind = local_mixer
        self.reference_mask_quirk = bool(reference_mask_quirk)
        if reference_padding_leak and global_mixer not in SSM_MIXERS:
            # the leak is a property of the authors' SSM call; an attention or absent global mixer
            # has no counterpart in their code, so the switch would mean nothing there
            raise ConfigError(f"model.backbone.reference_padding_leak = true reproduces the authors' unmasked "
                              f"SSM mixer and needs global_mixer in {list(SSM_MIXERS)}, got {global_mixer!r}")
        self.reference_padding_leak = bool(reference_padding_leak)

        self.pool = AnchorPooling(self.stride, pool, d_model, dropout)
        self.global_mixer = build_global_mixer(global_mixer, d_model, d_state=d_state, d_conv=d_conv, expand=expand,
                                               headdim=headdim, chunk_size=chunk_size, ssm_backend=ssm_backend,
                                               n_heads=global_heads, reference_precision=reference_precision)
        if self.global_mixer is not None:
            self.norm_global = RMSNorm(d_model, reference_precision=reference_precision)
            self.scale_global = LayerScale(d_model, dropout, channel_dim=-1)
            if self.gated:
                self.gate_global = nn.Linear(2 * d_model, d_model)
        self.local_mixer = None
        if local_mixer == "window_attention":
            self.local_mixer = TransformerEncoder(d_model, stride=1, n_heads=local_heads, window_size=window_size)
            self.norm_local = RMSNorm(d_model, reference_precision=reference_precision)
            self.scale_local = LayerScale(d_model, dropout, channel_dim=-1)
            if self.gated:
                self.gate_local = nn.Linear(2 * d_model, d_model)
        if ffn == "auto":
            ffn = "linear" if self.local_mixer is not None else "swiglu"
        self.ffn_kind = ffn
        self.ffn = LinearFFN(d_model, dropout) if ffn == "linear" else SwiGLUFFN(d_model, dropout)
        self.norm_ffn = RMSNorm(d_model, reference_precision=reference_precision)
        self.scale_ffn = LayerScale(d_model, dropout, channel_dim=-1)
        self.activation_checkpointing = bool(activation_checkpointing)

    # The three branches, each a unit of activation checkpointing: in training with the switch on,
    # a branch keeps only its input for the backward and is rerun there (RNG state restored, so
    # dropout draws the same masks), so at most one branch's activations exist at a time.
    def _branch(self, fn, *args):
        if self.activation_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(fn, *args, use_reentrant=False)
        return fn(*args)

    def _global_branch(self, f, mixer_mask):  # (B, T', D) -> (B, T', D)
        return self.global_mixer(self.norm_global(f), mixer_mask)

    def _local_branch(self, f, m):  # (B, T', D), (B, T') -> (B, T', D)
        return self.local_mixer(self.norm_local(f).transpose(1, 2), m[:, None, :])[0].transpose(1, 2)

    def _ffn_branch(self, f):  # (B, T', D) -> (B, T', D)
        return self.ffn(self.norm_ffn(f))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None):
        b, d, length = x.shape
        s = self.stride
        if mask is None:
            mask = torch.ones((b, 1, length), dtype=torch.bool, device=x.device)
        x = x * mask.to(x.dtype)  # out of place (the authors' masked_fill_ is in place)

        anchors = self.pool(pad_to_blocks(x, s))  # (B, D, nb)
        anchor_mask = downsample_mask(mask, s)  # (B, 1, nb)
        c = interleave(x, anchors, s)  # (B, T', D)
        if self.reference_mask_quirk:
            m = quirk_interleave_mask(mask, anchor_mask, s)  # (B, T')
        else:
            m = interleave_mask(mask, anchor_mask, s)  # (B, T')
        m_f = m[..., None].to(c.dtype)  # (B, T', 1)

        # the authors' Hydra gets no mask: padded steps feed its conv and backward scan
        mixer_mask = None if self.reference_padding_leak else m

        f = c
        if self.global_mixer is not None:
            g = (self.scale_global(self._branch(self._global_branch, f, mixer_mask)) + f) * m_f
            if self.gated:
                g = gated_merge(self.gate_global, f, g)
            f = g
        if self.local_mixer is not None:
            h = (self.scale_local(self._branch(self._local_branch, f, m)) + f) * m_f
            if self.gated:
                h = gated_merge(self.gate_local, f, h)
            f = h
        out = self.scale_ffn(self._branch(self._ffn_branch, f)) + f  # (B, T', D)

        anchors_out, tokens_out = split(out, s, length)
        return anchors_out, tokens_out, anchor_mask, mask
