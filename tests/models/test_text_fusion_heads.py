"""Text nets, the xattn fusion and the heads."""

import pytest
import torch

from hieramamba.errors import ConfigError
from hieramamba.models.fusion import XAttnFusion
from hieramamba.models.heads import ClsHead, RegHead
from hieramamba.models.text import TextIdentity, TextTransformer, build_text_net, masked_mean


def test_identity_text_net_prepends_pooled_token():
    torch.manual_seed(0)
    net = TextIdentity(6, 8, max_seq_len=10, n_heads=2).eval()
    x = torch.randn(3, 6, 5)
    mask = torch.ones(3, 1, 5, dtype=torch.bool)
    mask[1, :, 3:] = False
    out, out_mask = net(x, mask)
    assert out.shape == (3, 8, 6) and out_mask.shape == (3, 1, 6)
    assert torch.equal(out_mask[:, :, 1:], mask) and out_mask[:, 0, 0].all()
    # tokens after the pooled slot are the projected tokens
    assert torch.allclose(out[:, :, 1:], net.embd_fc(x, mask)[0])
    # padding does not change the pooled token of a row
    alone, _ = net(x[1:2, :, :3], mask[1:2, :, :3])
    assert torch.allclose(alone[0, :, 0], out[1, :, 0], atol=1e-6)
    assert TextIdentity(6, None, n_heads=2).embd_fc is None


def test_transformer_text_net_background_token():
    torch.manual_seed(0)
    net = TextTransformer(5, 8, max_seq_len=12, n_heads=2, n_layers=2).eval()
    out, mask = net(torch.randn(2, 5, 7), torch.ones(2, 7, dtype=torch.bool))
    assert out.shape == (2, 8, 8) and mask.shape == (2, 1, 8)
    assert net.bkgd_token.shape == (8, 1) and net.bkgd_token.abs().max() <= 0.04 + 1e-6
    with pytest.raises(ConfigError):
        build_text_net("bert", in_dim=4)


def test_masked_mean():
    x = torch.tensor([[[1.0, 3.0, 100.0]]])
    assert masked_mean(x, torch.tensor([[[True, True, False]]])).item() == 2.0
    assert masked_mean(x, torch.zeros(1, 1, 3, dtype=torch.bool)).item() == 0.0


@pytest.mark.parametrize("mode", ["adaln", "affine"])
def test_fusion_repeats_per_query_and_handles_levels(mode):
    torch.manual_seed(0)
    fusion = XAttnFusion(8, 6, n_layers=2, n_heads=2, xattn_mode=mode).eval()
    vids = [torch.randn(2, 8, 9), torch.randn(2, 8, 5)]
    masks = [torch.ones(2, 1, 9, dtype=torch.bool), torch.ones(2, 1, 5, dtype=torch.bool)]
    text = torch.randn(3, 6, 4)
    text_mask = torch.ones(3, 1, 4, dtype=torch.bool)
    sizes = torch.tensor([1, 2])
    out, out_masks = fusion(vids, masks, text, text_mask, sizes)
    assert [o.shape for o in out] == [(3, 8, 9), (3, 8, 5)]
    assert [m.shape for m in out_masks] == [(3, 1, 9), (3, 1, 5)]
    # the query of the first video only sees that video
    single, _ = fusion(vids[0][:1], masks[0][:1], text[:1], text_mask[:1])
    assert torch.allclose(out[0][:1], single, atol=1e-6)
    # rows already per query are not repeated again (early fusion's second pass)
    again, _ = fusion(out[0], out_masks[0], text, text_mask, sizes)
    assert again.shape == (3, 8, 9)
    for name, module in fusion.named_modules():
        if isinstance(module, (torch.nn.Linear, torch.nn.Conv1d)) and module.bias is not None:
            assert torch.all(module.bias == 0), name


def test_heads_shapes_relu_and_scales():
    torch.manual_seed(0)
    cls, reg = ClsHead(8), RegHead(8, num_levels=2)
    fpn = [torch.randn(3, 8, 10), torch.randn(3, 8, 5)]
    masks = [torch.ones(3, 1, 10, dtype=torch.bool), torch.ones(3, 1, 5, dtype=torch.bool)]
    logits, lmask = cls(fpn, masks)
    offsets, omask = reg(fpn, masks)
    assert [lg.shape for lg in logits] == [(3, 10), (3, 5)] and lmask[0].shape == (3, 10)
    assert [o.shape for o in offsets] == [(3, 10, 2), (3, 5, 2)]
    assert all(bool((o >= 0).all()) for o in offsets)
    with torch.no_grad():
        reg.scales[1].scale.fill_(2.0)
    doubled, _ = reg(fpn, masks)
    assert torch.allclose(doubled[1], 2 * offsets[1]) and torch.allclose(doubled[0], offsets[0])
    assert ClsHead(8, prior_prob=0.01).cls_head.conv.bias.item() == pytest.approx(-4.59512, abs=1e-4)
