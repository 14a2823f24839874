"""SnAG attention blocks: MaskedMHA (global / banded), encoder and decoder layers, global mixer."""

import math

import pytest
import torch

from hieramamba.models.attention import (
    GlobalAttentionMixer,
    MaskedConv1D,
    MaskedMHA,
    TransformerDecoder,
    TransformerEncoder,
    sinusoid_encoding,
)


def _proj(conv, x):
    # 1x1 conv as a matmul: (B, C_in, T) -> (B, C_out, T)
    return torch.einsum("oc,bct->bot", conv.weight[..., 0], x) + conv.bias[None, :, None]


def dense_reference(mha, x, mask, band):
    """Textbook masked attention: softmax(Q K^T / sqrt(d)) over allowed keys; allowed = valid key
    and (if band) |t - s| <= band; rows of invalid queries zero when band is given."""
    b, _, t = x.shape
    h, d = mha.n_heads, mha.n_channels
    q = _proj(mha.query, x).view(b, h, d, t)
    k = _proj(mha.key, x).view(b, h, d, t)
    v = _proj(mha.value, x).view(b, h, d, t)
    logits = torch.einsum("bhdt,bhds->bhts", q, k) / math.sqrt(d)
    allowed = mask[:, :, None, :].expand(b, 1, t, t)
    if band is not None:
        idx = torch.arange(t)
        allowed = allowed & ((idx[:, None] - idx[None, :]).abs() <= band)
    logits = logits.masked_fill(~allowed, float("-inf"))
    attn = torch.softmax(logits, -1)
    if band is not None:
        attn = torch.where(mask[:, :, :, None], attn, torch.zeros_like(attn))
    out = torch.einsum("bhts,bhds->bhdt", attn, v).reshape(b, h * d, t)
    return _proj(mha.proj, out)


@pytest.mark.parametrize("window", [3, 5, 7])
@pytest.mark.parametrize("length", [1, 2, 9, 13, 16])
def test_windowed_mha_equals_dense_band_masked_attention(window, length):
    torch.manual_seed(window * 100 + length)
    mha = MaskedMHA(8, n_heads=2, window_size=window).double()
    x = torch.randn(3, 8, length, dtype=torch.float64)
    mask = torch.ones(3, 1, length, dtype=torch.bool)
    mask[1, :, max(1, length - 3):] = False
    mask[2, :, max(1, length // 2):] = False
    out = mha(x, kv_mask=mask)
    ref = dense_reference(mha, x, mask, band=window // 2)
    assert torch.allclose(out, ref, atol=1e-10, rtol=0)


def test_global_mha_equals_dense_reference_and_handles_empty_rows():
    torch.manual_seed(1)
    mha = MaskedMHA(12, n_heads=3).double()
    x = torch.randn(2, 12, 11, dtype=torch.float64)
    mask = torch.ones(2, 1, 11, dtype=torch.bool)
    mask[1, :, 6:] = False
    assert torch.allclose(mha(x, kv_mask=mask), dense_reference(mha, x, mask, band=None), atol=1e-10)
    # q and k are each scaled by d_head^(-1/4)
    assert mha.scale == pytest.approx(4 ** -0.25)
    empty = torch.zeros(1, 1, 11, dtype=torch.bool)
    out = mha(x[:1], kv_mask=empty)
    assert torch.isfinite(out).all()


def test_mha_kv_size_repeats_query_rows():
    torch.manual_seed(2)
    mha = MaskedMHA(8, kv_dim=6, n_heads=2).double()
    q = torch.randn(2, 8, 5, dtype=torch.float64)
    kv = torch.randn(3, 6, 4, dtype=torch.float64)
    kv_mask = torch.ones(3, 1, 4, dtype=torch.bool)
    sizes = torch.tensor([1, 2])
    out = mha(q, kv, None, kv_mask, sizes)
    assert out.shape == (3, 8, 5)
    assert torch.allclose(out[2], mha(q[1:2], kv[2:3], None, kv_mask[2:3])[0])


def test_window_size_must_be_odd():
    with pytest.raises(ValueError):
        MaskedMHA(8, n_heads=2, window_size=4)


@pytest.mark.parametrize("stride,length", [(1, 9), (2, 9), (2, 10), (0, 7)])
def test_encoder_lengths_and_padding_invariance(stride, length):
    torch.manual_seed(3)
    enc = TransformerEncoder(8, stride=stride, n_heads=2, window_size=5 if stride else 0).eval()
    x = torch.randn(1, 8, length)
    mask = torch.ones(1, 1, length, dtype=torch.bool)
    out, out_mask = enc(x, mask)
    expected_len = length if stride <= 1 else math.ceil(length / stride)
    assert out.shape == (1, 8, expected_len) and out_mask.shape == (1, 1, expected_len)
    pad = 6
    xp = torch.cat((x, 1e3 * torch.randn(1, 8, pad)), -1)
    mp = torch.cat((mask, torch.zeros(1, 1, pad, dtype=torch.bool)), -1)
    outp, maskp = enc(xp, mp)
    n = int(out_mask.sum())
    assert torch.equal(maskp[..., :expected_len], out_mask)
    assert (outp[..., :n] - out[..., :n]).abs().max() <= 1e-6


def test_masked_conv_stride2_mask():
    conv = MaskedConv1D(2, 2, 5, stride=2, padding=2, bias=False)
    mask = torch.tensor([[[True] * 5 + [False] * 3]])
    out, m = conv(torch.randn(1, 2, 8), mask)
    assert out.shape[-1] == 4 and m.tolist() == [[[True, True, True, False]]]
    assert conv(torch.randn(1, 2, 7), None)[0].shape[-1] == 4


@pytest.mark.parametrize("mode", ["adaln", "affine"])
def test_decoder_repeats_video_per_query(mode):
    torch.manual_seed(4)
    dec = TransformerDecoder(8, 6, n_heads=2, xattn_mode=mode).eval()
    vid = torch.randn(2, 8, 7)
    vid_mask = torch.ones(2, 1, 7, dtype=torch.bool)
    text = torch.randn(3, 6, 4)
    text_mask = torch.ones(3, 1, 4, dtype=torch.bool)
    sizes = torch.tensor([2, 1])
    out, out_mask = dec(vid, vid_mask, text, text_mask, sizes)
    assert out.shape == (3, 8, 7) and out_mask.shape == (3, 1, 7)
    single, _ = dec(vid[1:], vid_mask[1:], text[2:], text_mask[2:])
    assert torch.allclose(out[2:], single, atol=1e-6)
    assert isinstance(dec.adaln, torch.nn.Identity) == (mode == "affine")


def test_global_attention_mixer_ignores_padding():
    torch.manual_seed(5)
    mixer = GlobalAttentionMixer(8, n_heads=2)
    u = torch.randn(2, 6, 8)
    mask = torch.ones(2, 6, dtype=torch.bool)
    out = mixer(u, mask)
    up = torch.cat((u, 1e4 * torch.randn(2, 5, 8)), 1)
    mp = torch.cat((mask, torch.zeros(2, 5, dtype=torch.bool)), 1)
    outp = mixer(up, mp)
    assert (outp[:, :6] - out).abs().max() <= 1e-6
    assert torch.all(outp[:, 6:] == 0)


def test_sinusoid_encoding_values():
    pe = sinusoid_encoding(5, 3)
    assert pe.shape == (6, 5)
    t = torch.arange(5, dtype=torch.float64)
    assert torch.allclose(pe[1], torch.sin(t / 10000 ** (1 / 3)))
    assert torch.allclose(pe[3], torch.cos(t))
