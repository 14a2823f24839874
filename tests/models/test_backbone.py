"""HieraMamba backbone: pyramid lengths, padding invariance, PE, init, registry."""

import importlib.util
import math

import pytest
import torch

from hieramamba.errors import ConfigError
from hieramamba.models.backbone import HieraMambaBackbone
from hieramamba.models.backbones import BackboneOutput, build_backbone

HAVE_SSM = importlib.util.find_spec("hieramamba.models.ssm") is not None
needs_ssm = pytest.mark.skipif(not HAVE_SSM, reason="hieramamba.models.ssm (Hydra) is not written yet")


def small(**kw):
    args = dict(in_dim=6, embd_dim=16, max_seq_len=64, num_levels=4, global_mixer="attention", global_heads=2,
                d_state=8, headdim=8, chunk_size=8, dropout=0.0)
    args.update(kw)
    return HieraMambaBackbone(**args)


def strengthen(module):
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("scale"):
                p.fill_(1.0)
    return module


@pytest.mark.parametrize("s", [2, 3, 4])
@pytest.mark.parametrize("length", [13, 21])
@pytest.mark.parametrize("input_stride", [1, 2])
def test_pyramid_lengths(s, length, input_stride):
    net = small(stride=s, input_stride=input_stride).eval()
    out = net(torch.randn(2, 6, length), torch.ones(2, 1, length, dtype=torch.bool))
    assert isinstance(out, BackboneOutput)
    base = math.ceil(length / input_stride)
    assert [f.shape[-1] for f in out.fpn] == [math.ceil(base / s ** lv) for lv in range(4)]
    assert [a.shape[-1] for a in out.anchors] == [math.ceil(base / s ** (lv + 1)) for lv in range(4)]
    assert [m.shape[-1] for m in out.fpn_masks] == [f.shape[-1] for f in out.fpn]
    assert [m.shape[-1] for m in out.anchor_masks] == [a.shape[-1] for a in out.anchors]
    assert net.level_strides == [input_stride * s ** lv for lv in range(4)]
    assert net.num_levels == len(out.fpn) == 4


@torch.no_grad()
def _backbone_pad_diff(net, dtype=torch.float32, lengths=(29, 17), pad=11):
    torch.manual_seed(3)
    full = max(lengths)
    x = torch.randn(len(lengths), 6, full + pad, dtype=dtype)
    mask = torch.zeros(len(lengths), 1, full + pad, dtype=torch.bool)
    for i, n in enumerate(lengths):
        mask[i, :, :n] = True
        x[i, :, n:] = 1e3 * torch.randn(6, full + pad - n, dtype=dtype)
    batched = net(x, mask)
    worst = 0.0
    for i, n in enumerate(lengths):
        alone = net(x[i:i + 1, :, :n], mask[i:i + 1, :, :n])
        for lv in range(net.num_levels):
            for ours, ref, ref_mask in ((batched.fpn, alone.fpn, alone.fpn_masks),
                                        (batched.anchors, alone.anchors, alone.anchor_masks)):
                k = ref[lv].shape[-1]
                valid = ref_mask[lv][0, 0]
                diff = (ours[lv][i, :, :k] - ref[lv][0])[:, valid]
                worst = max(worst, float(diff.abs().max()) if diff.numel() else 0.0)
    return worst


@pytest.mark.parametrize("mixer", ["attention", "none", pytest.param("hydra", marks=needs_ssm)])
@pytest.mark.parametrize("input_stride", [1, 2])
def test_backbone_padding_invariance(mixer, input_stride):
    torch.manual_seed(0)
    net = small(global_mixer=mixer, input_stride=input_stride, num_window_blocks=2, window_size=3).eval()
    assert _backbone_pad_diff(net) <= 1e-6
    strengthen(net.double())
    assert _backbone_pad_diff(net, torch.float64) <= 1e-10


@pytest.mark.parametrize("mixer", ["attention", pytest.param("hydra", marks=needs_ssm)])
def test_backbone_quirk_changes_valid_outputs(mixer):
    torch.manual_seed(0)
    net = strengthen(small(global_mixer=mixer, reference_mask_quirk=True).double().eval())
    assert _backbone_pad_diff(net, torch.float64) > 1e-3


@needs_ssm
def test_backbone_padding_leak_reproduces_the_authors_blocks():
    """An evaluation window as the authors pad it (B = 1, 19 valid steps zero-padded to 24, a multiple
    of the coarsest stride 8): with the switch on, every level equals the authors' blocks (restated
    in authors_amp.py) chained on the embedded input; the last level has odd length 3, so its zero
    pad token enters Hydra too. With the switch off the valid outputs move."""
    from authors_amp import authors_gated_block

    torch.manual_seed(0)
    net = strengthen(small(global_mixer="hydra", window_size=3, num_window_blocks=2,
                           reference_padding_leak=True).double().eval())
    assert all(block.reference_padding_leak for block in net.branch)
    with torch.no_grad():
        for name, p in net.named_parameters():  # trained-like: non-zero biases (conv, dt, gates)
            if name.endswith("bias"):
                p.copy_(0.5 * torch.randn_like(p))
        x = torch.randn(1, 6, 24, dtype=torch.float64)
        mask = torch.zeros(1, 1, 24, dtype=torch.bool)
        mask[..., :19] = True
        out = net(x, mask)
        tokens, token_mask = net.embed(x, mask)
        for level, block in enumerate(net.branch):
            anchors, fpn, anchor_mask, _ = authors_gated_block(block, tokens, token_mask)
            assert float((out.fpn[level] - fpn).abs().max()) <= 1e-10, level
            assert float((out.anchors[level] - anchors).abs().max()) <= 1e-10, level
            assert torch.equal(out.anchor_masks[level], anchor_mask)
            tokens, token_mask = anchors, anchor_mask
        assert [f.shape[-1] for f in out.fpn] == [24, 12, 6, 3]
        for block in net.branch:
            block.reference_padding_leak = False
        fixed = net(x, mask)
    moved = max(float((a - b)[..., m[0, 0]].abs().max()) for a, b, m in zip(fixed.fpn, out.fpn, out.fpn_masks))
    assert moved > 1e-4, moved


def test_window_schedule_and_bias_init():
    net = small(num_levels=7, window_size=3, num_window_blocks=5)
    windows = [blk.local_mixer.attn.attn.window_size for blk in net.branch]
    assert windows == [3, 3, 3, 3, 3, 0, 0]
    for name, module in net.named_modules():
        if isinstance(module, (torch.nn.Linear, torch.nn.Conv1d)) and module.bias is not None:
            assert torch.all(module.bias == 0), name


def test_position_encoding_interpolates_at_eval_only():
    net = small(max_seq_len=16, num_levels=2)
    x, mask = torch.randn(1, 6, 24), torch.ones(1, 1, 24, dtype=torch.bool)
    with pytest.raises(ValueError):
        net.train()(x, mask)
    out = net.eval()(x, mask)
    assert out.fpn[0].shape[-1] == 24
    no_pe = small(use_abs_pe=False)
    assert no_pe.pe is None


def test_reference_precision_pe_is_float32_table():
    exact, ref = small(), small(reference_precision=True)
    assert exact.pe.dtype == torch.float64 and ref.pe.dtype == torch.float32
    assert torch.allclose(exact.pe.float(), ref.pe, atol=1e-4)


@pytest.mark.parametrize("kw", [dict(num_levels=2), dict(num_levels=5), dict(window_size=7),
                                dict(gate=False), dict(local_mixer="none"), dict(pool="gated"),
                                dict(stride=3)])
def test_backbone_switches_forward_backward(kw):
    torch.manual_seed(0)
    net = small(**kw)
    x = torch.randn(2, 6, 19)
    mask = torch.ones(2, 1, 19, dtype=torch.bool)
    mask[0, :, 15:] = False
    out = net(x, mask)
    loss = sum(f.square().mean() for f in out.fpn)
    loss.backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_registry():
    net = build_backbone("hieramamba", in_dim=4, embd_dim=8, num_levels=2, global_mixer="none")
    assert isinstance(net, HieraMambaBackbone)
    with pytest.raises(ConfigError, match="hieramamba"):
        build_backbone("transformerxl")
    with pytest.raises(ConfigError):
        small(input_stride=3)


@pytest.mark.parametrize("input_stride,num_convs", [(1, 2), (2, 2), (4, 3)])
def test_stem_layers_keep_checkpoint_keys(input_stride, num_convs):
    """The shared stem's layers sit on the backbone itself: the keys ``embd_fc.*``, ``embd_convs.*``,
    ``embd_norms.*`` of the authors' checkpoints (hieramamba.models.compat), no ``stem.`` prefix,
    and no PE in the checkpoint (non-persistent buffer)."""
    net = small(num_levels=1, input_stride=input_stride, num_convs=num_convs)
    stem_keys = sorted(k for k in net.state_dict() if not k.startswith("branch."))
    expected = ["embd_fc.conv.bias", "embd_fc.conv.weight"]
    for i in range(num_convs):
        expected += [f"embd_convs.{i}.conv.weight", f"embd_norms.{i}.bias", f"embd_norms.{i}.weight"]
    assert stem_keys == sorted(expected)
    # the stride-2 convs (kernel 5) come first, as many as log2(input_stride)
    strided = [conv.conv.stride[0] == 2 and conv.conv.kernel_size[0] == 5 for conv in net.embd_convs]
    assert strided == [i < int(math.log2(input_stride)) for i in range(num_convs)]
    assert net.input_stride == input_stride and net.pe is not None


def test_stem_argument_errors():
    with pytest.raises(ConfigError, match="power of 2"):
        small(input_stride=3)
    with pytest.raises(ConfigError, match="cannot realise"):
        small(input_stride=8, num_convs=2)
    with pytest.raises(ConfigError, match="num_levels"):
        small(num_levels=0)


def test_helpers_importable_from_backbone():
    from hieramamba.models import backbone, stem

    assert backbone.position_table is stem.position_table
    assert backbone.positions_for_length is stem.positions_for_length
    assert callable(backbone.zero_linear_conv_biases)


@needs_ssm
def test_activation_checkpointing_gives_the_same_outputs_and_gradients():
    # dropout on, padded batch, Hydra: the recomputed blocks must draw the same dropout masks
    x = torch.randn(2, 6, 29)
    mask = torch.ones(2, 1, 29, dtype=torch.bool)
    mask[1, :, 21:] = False
    runs = []
    for ckpt in (False, True):
        torch.manual_seed(0)
        net = strengthen(small(global_mixer="hydra", dropout=0.3, activation_checkpointing=ckpt)).train()
        torch.manual_seed(1)  # the same dropout draws in both runs
        out = net(x, mask)
        loss = sum(f.square().sum() for f in out.fpn) + sum(a.square().sum() for a in out.anchors)
        loss.backward()
        runs.append((out, {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}))
    (out0, g0), (out1, g1) = runs
    for a, b in zip(out0.fpn + out0.anchors, out1.fpn + out1.anchors):
        assert torch.equal(a, b)
    assert g0.keys() == g1.keys() and len(g0) > 20
    for name in g0:
        torch.testing.assert_close(g1[name], g0[name], rtol=1e-6, atol=1e-7, msg=name)


@needs_ssm
def test_activation_checkpointing_keeps_less_for_the_backward():
    def saved_bytes(ckpt):
        torch.manual_seed(0)
        net = small(global_mixer="hydra", max_seq_len=256, activation_checkpointing=ckpt).train()
        seen = {}

        def pack(t):
            seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            net(torch.randn(1, 6, 256), torch.ones(1, 1, 256, dtype=torch.bool))
        return sum(seen.values())

    assert saved_bytes(True) < 0.25 * saved_bytes(False)
