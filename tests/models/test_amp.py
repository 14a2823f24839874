"""AMP block: interleave/split, masks, anchor pooling, padding invariance, ablation switches."""

import importlib.util
import math

import pytest
import torch

from hieramamba.errors import ConfigError
from hieramamba.models.amp import (
    AMPBlock,
    AnchorPooling,
    downsample_mask,
    interleave,
    interleave_mask,
    pad_to_blocks,
    quirk_interleave_mask,
    split,
)

HAVE_SSM = importlib.util.find_spec("hieramamba.models.ssm") is not None
needs_ssm = pytest.mark.skipif(not HAVE_SSM, reason="hieramamba.models.ssm (Hydra) is not written yet")
MIXERS = ["attention", "none", pytest.param("hydra", marks=needs_ssm), pytest.param("mamba", marks=needs_ssm)]
SMALL = dict(d_state=8, headdim=8, expand=2, chunk_size=8)


def small_block(d=16, **kw):
    args = dict(SMALL, local_heads=2, global_heads=2, dropout=0.0)
    args.update(kw)
    return AMPBlock(d, **args)


@pytest.mark.parametrize("s", [2, 3, 4])
@pytest.mark.parametrize("length", [1, 5, 7, 12, 13])
def test_interleave_split_round_trip(s, length):
    torch.manual_seed(0)
    x = torch.randn(2, 3, length)
    nb = math.ceil(length / s)
    a = torch.randn(2, 3, nb)
    mixed = interleave(x, a, s)
    assert mixed.shape == (2, (s + 1) * nb, 3)
    for k in range(nb):
        assert torch.equal(mixed[:, k * (s + 1)], a[:, :, k])
        for j in range(s):
            t = k * s + j
            expected = x[:, :, t] if t < length else torch.zeros(2, 3)
            assert torch.equal(mixed[:, k * (s + 1) + 1 + j], expected)
    a2, x2 = split(mixed, s, length)
    assert torch.equal(a2, a) and torch.equal(x2, x)


@pytest.mark.parametrize("s", [2, 3])
def test_interleaved_mask_is_per_sample_and_quirk_is_batch_summed(s):
    length = 7
    mask = torch.zeros(2, 1, length, dtype=torch.bool)
    mask[0, :, :7] = True
    mask[1, :, :3] = True
    amask = downsample_mask(mask, s)
    assert amask[1, 0].tolist() == [j * s < 3 for j in range(math.ceil(length / s))]
    m = interleave_mask(mask, amask, s)
    # interleaving the masks like the features gives the same layout
    mixed = interleave(mask.float(), amask.float(), s)[..., 0] > 0
    assert torch.equal(m, mixed)
    n1 = 3 + math.ceil(3 / s)
    assert m[1].tolist() == [True] * n1 + [False] * (m.shape[1] - n1)
    q = quirk_interleave_mask(mask, amask, s)
    assert q[1].sum() > m[1].sum()  # the authors' prefix is too long for B > 1
    assert torch.equal(quirk_interleave_mask(mask[1:], amask[1:], s), m[1:])  # right for B = 1


@pytest.mark.parametrize("method", ["mean", "max", "attn", "gated"])
def test_anchor_pooling_shapes(method):
    torch.manual_seed(0)
    pool = AnchorPooling(3, method, d_model=6)
    x = pad_to_blocks(torch.randn(2, 6, 7), 3)
    out = pool(x)
    assert out.shape == (2, 6, 3)
    blocks = x.reshape(2, 6, 3, 3)
    if method == "mean":
        assert torch.allclose(out, blocks.mean(-1))
    if method == "max":
        assert torch.equal(out, blocks.amax(-1))


@pytest.mark.parametrize("s", [2, 3])
def test_anchor_is_block_mean_at_init(s):
    torch.manual_seed(0)
    block = small_block(global_mixer="attention", stride=s).eval()
    x = torch.randn(2, 16, 11)
    mask = torch.ones(2, 1, 11, dtype=torch.bool)
    anchors, tokens, amask, _ = block(x, mask)
    means = pad_to_blocks(x, s).reshape(2, 16, -1, s).mean(-1)
    # every residual branch starts at LayerScale 1e-4, so the block is near the identity
    assert (anchors - means).abs().max() < 1e-2
    assert (tokens - x).abs().max() < 1e-2
    assert torch.allclose(block.pool(pad_to_blocks(x, s)), means, atol=1e-6)


def strengthen(module):
    """Set every LayerScale to 1 so each branch matters (at init they are 1e-4)."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("scale"):
                p.fill_(1.0)
    return module


@torch.no_grad()
def _pad_invariance_case(block, s, lengths=(13, 8), pad=7, dtype=torch.float32):
    """Max abs difference between the valid outputs of a padded batch (padding = large random
    values) and each sample run alone at its own length."""
    torch.manual_seed(1)
    d = block.d_model
    full = max(lengths)
    x = torch.randn(len(lengths), d, full + pad, dtype=dtype)
    mask = torch.zeros(len(lengths), 1, full + pad, dtype=torch.bool)
    for i, n in enumerate(lengths):
        mask[i, :, :n] = True
        x[i, :, n:] = 1e3 * torch.randn(d, full + pad - n, dtype=dtype)  # large garbage in the padding
    batched = block(x, mask)
    diffs = []
    for i, n in enumerate(lengths):
        alone = block(x[i:i + 1, :, :n], mask[i:i + 1, :, :n])
        nb = math.ceil(n / s)
        diffs.append((batched[1][i, :, :n] - alone[1][0]).abs().max())
        diffs.append((batched[0][i, :, :nb] - alone[0][0]).abs().max())
        assert torch.equal(batched[2][i, :, :nb], alone[2][0])
    return max(float(d) for d in diffs)


@pytest.mark.parametrize("mixer", MIXERS)
@pytest.mark.parametrize("s", [2, 3])
def test_padding_does_not_change_valid_outputs(mixer, s):
    torch.manual_seed(0)
    block = small_block(global_mixer=mixer, stride=s, window_size=3).eval()
    assert _pad_invariance_case(block, s) <= 1e-6  # float32, weights at init
    # every branch at full strength, float64: exact up to rounding
    strengthen(block.double())
    assert _pad_invariance_case(block, s, dtype=torch.float64) <= 1e-10


@pytest.mark.parametrize("mixer", ["attention", pytest.param("hydra", marks=needs_ssm)])
def test_reference_mask_quirk_leaks_padding_at_batch_above_one(mixer):
    torch.manual_seed(0)
    block = small_block(global_mixer=mixer, reference_mask_quirk=True, window_size=3).eval()
    strengthen(block.double())
    assert _pad_invariance_case(block, 2, dtype=torch.float64) > 1e-3


@pytest.mark.parametrize("gate", [True, False])
@pytest.mark.parametrize("global_mixer", MIXERS)
@pytest.mark.parametrize("local_mixer", ["window_attention", "none"])
def test_ablation_switches_forward_backward(gate, global_mixer, local_mixer):
    torch.manual_seed(0)
    block = small_block(gate=gate, global_mixer=global_mixer, local_mixer=local_mixer)
    x = torch.randn(2, 16, 9, requires_grad=True)
    mask = torch.ones(2, 1, 9, dtype=torch.bool)
    mask[1, :, 6:] = False
    anchors, tokens, _, _ = block(x, mask)
    (anchors.square().sum() + tokens.square().sum()).backward()
    for name, p in block.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    assert hasattr(block, "gate_global") == (gate and global_mixer != "none")
    assert hasattr(block, "gate_local") == (gate and local_mixer != "none")
    assert block.ffn_kind == ("linear" if local_mixer != "none" else "swiglu")


@pytest.mark.parametrize("pool", ["mean", "max", "attn", "gated"])
@pytest.mark.parametrize("s", [2, 3, 4])
def test_pool_and_stride_switches(pool, s):
    torch.manual_seed(0)
    block = small_block(global_mixer="attention", pool=pool, stride=s, ffn="swiglu")
    x = torch.randn(2, 16, 11)
    anchors, tokens, amask, mask = block(x, torch.ones(2, 1, 11, dtype=torch.bool))
    assert anchors.shape == (2, 16, math.ceil(11 / s)) and tokens.shape == x.shape
    (anchors.sum() + tokens.sum()).backward()
    assert all(p.grad is not None for p in block.parameters())


def test_bad_switch_values_raise_config_errors():
    for kw in (dict(pool="median"), dict(global_mixer="rnn"), dict(local_mixer="conv"), dict(stride=1),
               dict(window_size=4), dict(ffn="mlp")):
        with pytest.raises(ConfigError):
            small_block(**kw)


def test_input_is_not_modified_in_place():
    block = small_block(global_mixer="attention")
    x = torch.randn(1, 16, 6)
    mask = torch.tensor([[[True] * 4 + [False] * 2]])
    before = x.clone()
    block(x, mask)
    assert torch.equal(x, before)


# --------------------------------------------------------------------------------------------
# reference_padding_leak: the authors' Hydra takes no mask (reference §1.2 step 5, §1.10-2)
# --------------------------------------------------------------------------------------------

def leaky_weights(block):
    """Every branch at full strength and random non-zero biases (the trained state the leak needs:
    the depthwise-conv bias and dt_bias make padded steps non-zero inside Hydra)."""
    strengthen(block)
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, p in block.named_parameters():
            if name.endswith("bias"):
                p.copy_(0.5 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return block


def _max_diff(ours, ref, valid_tokens=None, valid_anchors=None):
    """Max abs difference of (anchors, tokens); restricted to the valid columns when given."""
    cut_a = slice(None) if valid_anchors is None else slice(0, valid_anchors)
    cut_t = slice(None) if valid_tokens is None else slice(0, valid_tokens)
    a, t = ours[0][..., cut_a] - ref[0][..., cut_a], ours[1][..., cut_t] - ref[1][..., cut_t]
    return max(float(a.abs().max()), float(t.abs().max()))


# (length, valid length per row, reference_mask_quirk)
AUTHORS_CASES = {
    "padded window, B=1": (12, (7,), False),
    "odd length, every input valid, B=1": (9, (9,), False),
    "padded batch, B=2, batch-summed mask": (12, (5, 2), True),
}


@needs_ssm
@pytest.mark.parametrize("case", sorted(AUTHORS_CASES))
def test_padding_leak_reproduces_the_authors_block(case):
    from authors_amp import authors_gated_block

    length, valid, quirk = AUTHORS_CASES[case]
    torch.manual_seed(0)
    block = leaky_weights(small_block(window_size=3, reference_mask_quirk=quirk,
                                      reference_padding_leak=True).double().eval())
    x = torch.randn(len(valid), 16, length, dtype=torch.float64)
    mask = torch.zeros(len(valid), 1, length, dtype=torch.bool)
    for i, n in enumerate(valid):
        mask[i, :, :n] = True
        x[i, :, n:] = 1e3  # the authors zero the padded input first; so do we
    ref = authors_gated_block(block, x, mask)
    with torch.no_grad():
        ours = block(x, mask)
    assert torch.equal(ours[2], ref[2])
    assert _max_diff(ours, ref) <= 1e-10  # every position, padded ones included
    # the same weights with our masked Hydra: the valid outputs move, so the switch is what matches
    block.reference_padding_leak = False
    with torch.no_grad():
        fixed = block(x, mask)
    moved = [_max_diff([o[i:i + 1] for o in fixed], [r[i:i + 1] for r in ref], n, math.ceil(n / 2))
             for i, n in enumerate(valid)]
    assert max(moved) > 1e-4, moved  # (1e-2, 2e-2, 2e-3 with these seeds)


@needs_ssm
@pytest.mark.parametrize("mixer", ["hydra", "mamba"])
def test_padding_leak_equals_the_unmasked_mixer_on_the_padded_sequence(mixer):
    """Hand expectation without the local branch (the SSM is then the only mixing across steps):
    with the switch on, the valid outputs of a masked window are those of the same block run with
    every step valid on the sequence the authors' Hydra sees (zeros at padded tokens, and an odd
    last block filled with a zero token)."""
    torch.manual_seed(0)
    block = leaky_weights(small_block(global_mixer=mixer, local_mixer="none",
                                      reference_padding_leak=True).double().eval())
    with torch.no_grad():
        # a padded window: 7 valid steps of 12, garbage in the padding
        x = torch.randn(1, 16, 12, dtype=torch.float64)
        mask = torch.zeros(1, 1, 12, dtype=torch.bool)
        mask[..., :7] = True
        padded = x.masked_fill(~mask, 0.0)
        leaky = block(x.masked_fill(~mask, 1e3), mask)
        assert _max_diff(leaky, block(padded, None), 7, 4) <= 1e-10
        # an odd length with every step valid = the even length with a real zero step appended
        odd = torch.randn(1, 16, 9, dtype=torch.float64)
        leaky_odd = block(odd, None)
        assert _max_diff(leaky_odd, block(torch.cat((odd, torch.zeros(1, 16, 1, dtype=odd.dtype)), -1), None),
                         9, 5) <= 1e-10
        # switch off: the padded window gives the unpadded window's outputs (padding invariance)
        block.reference_padding_leak = False
        alone = block(x[..., :7], None)
        assert _max_diff(block(x.masked_fill(~mask, 1e3), mask), alone, 7, 4) <= 1e-10
        if mixer == "hydra":  # the backward scan carries the padded steps into valid outputs
            assert _max_diff(leaky, alone, 7, 4) > 1e-4  # 3e-3 with these seeds
            assert _max_diff(leaky_odd, block(odd, None), 9, 5) > 1e-4  # 2e-3
        else:  # the causal scan and conv cannot see steps after the valid ones: nothing leaks
            assert _max_diff(leaky, alone, 7, 4) <= 1e-10
            assert _max_diff(leaky_odd, block(odd, None), 9, 5) <= 1e-10


@pytest.mark.parametrize("mixer", ["attention", "none"])
def test_padding_leak_needs_an_ssm_global_mixer(mixer):
    with pytest.raises(ConfigError, match="reference_padding_leak.*global_mixer"):
        small_block(global_mixer=mixer, reference_padding_leak=True)
    assert not small_block(global_mixer=mixer).reference_padding_leak
