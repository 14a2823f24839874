"""Load the authors' checkpoints (jbistanbul/hieramamba) into our modules.

Key layout of the authors' ``HieraMamba`` model (libs/modeling/model.py and the modules it builds)
versus ours:

| authors | ours |
|---|---|
| ``vid_net.`` (``HieraMambaBackbone``) | ``backbone.`` |
| ``vid_net.branch.{i}.anchor_pooling.pooler.pool_q`` | ``backbone.branch.{i}.pool.query`` |
| ``...anchor_pooling.pooler.pool_attn.*`` / ``.gate_proj.*`` | ``...pool.attn.*`` / ``...pool.gate.*`` |
| ``...global_encoder.*`` (goombalab ``Hydra``) | ``...global_mixer.*`` (same Hydra names) |
| ``...drop_path_global.scale`` / ``_local`` / ``_ffn`` | ``...scale_global.scale`` / ``scale_local`` / ``scale_ffn`` |
| ``...gate1.0.*`` / ``...gate2.0.*`` | ``...gate_global.*`` / ``...gate_local.*`` |
| ``...local_encoder.*`` (SnAG ``TransformerEncoder``) | ``...local_mixer.*`` (same inner names) |
| ``...ffn.0.*`` (Linear of Linear-GELU-Dropout) | ``...ffn.fc.*`` |
| ``...ffn.w12.weight``, ``...ffn.w2.weight`` (SwiGLU) | same |
| ``...norm_global/local/ffn.weight`` | same |

Everything else (``text_net.*``, ``vid_proj.*``, ``fusion.*``, ``cls_head.*``, ``reg_head.*``, the
backbone's ``embd_fc`` / ``embd_convs`` / ``embd_norms``) has the same names. Only the gated block
(``AnchorMambaPoolingBlockGated``, every released config) is converted; the authors' plain block
and their unidirectional ``Mamba2`` variant (no released config uses either) are rejected.

The authors' code does three float32 round-trips that ours does not by default (RMSNorm in
float32 then weight, ``A = -exp(A_log.float())``, the PE table in float32). Build the model with
``reference_precision=True`` (config ``model.reference_precision``), or call
:func:`set_reference_precision` on a built model, to reproduce them. Their outputs on a padded
window (every evaluation window is padded to a multiple of the coarsest stride) or at an odd level
length also need their unmasked Hydra, ``model.backbone.reference_padding_leak=true``, and at
B > 1 their interleaved mask, ``model.backbone.reference_mask_quirk=true``; both are structural
config keys, so they are set when the model is built, not here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
import torch.nn as nn

HYDRA_KEYS = ("in_proj.weight", "conv1d.weight", "conv1d.bias", "dt_bias", "A_log", "D", "fc_D.weight",
              "norm.weight", "out_proj.weight")

# authors' sub-key prefix inside a gated AMP block -> ours (ordered; first match wins)
BLOCK_RULES: tuple[tuple[str, str], ...] = (
    ("anchor_pooling.pooler.pool_q", "pool.query"),
    ("anchor_pooling.pooler.pool_attn.", "pool.attn."),
    ("anchor_pooling.pooler.gate_proj.", "pool.gate."),
    ("global_encoder.", "global_mixer."),
    ("norm_global.weight", "norm_global.weight"),
    ("drop_path_global.scale", "scale_global.scale"),
    ("gate1.0.", "gate_global."),
    ("gate2.0.", "gate_local."),
    ("norm_local.weight", "norm_local.weight"),
    ("drop_path_local.scale", "scale_local.scale"),
    ("local_encoder.", "local_mixer."),
    ("ffn.0.", "ffn.fc."),
    ("ffn.w12.weight", "ffn.w12.weight"),
    ("ffn.w2.weight", "ffn.w2.weight"),
    ("norm_ffn.weight", "norm_ffn.weight"),
    ("drop_path_ffn.scale", "scale_ffn.scale"),
)

# prefixes of the whole model that keep their names
SAME_NAME_PREFIXES = ("text_net.", "vid_proj.", "fusion.", "cls_head.", "reg_head.")
BACKBONE_SAME = ("embd_fc.", "embd_convs.", "embd_norms.")


class StateDictMismatch(ValueError):
    """The checkpoint does not fit the module: unknown, missing or mis-shaped keys (all listed)."""


def extract_state_dict(checkpoint: Mapping, prefer: str = "model_ema") -> dict[str, torch.Tensor]:
    """The model's state_dict from an authors' checkpoint file's content.

    Their ``last.pth`` holds ``model`` and ``model_ema`` (evaluation loads the EMA); a bare
    state_dict is returned as is. A DataParallel ``module.`` prefix is removed.
    """
    sd = checkpoint
    for key in (prefer, "model", "model_ema", "state_dict"):
        if key in checkpoint and isinstance(checkpoint[key], Mapping):
            sd = checkpoint[key]
            break
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in sd.items()}


def _convert_hydra_key(key: str) -> str | None:
    return key if key in HYDRA_KEYS else None


def _convert_block_key(key: str) -> str | None:
    for theirs, ours in BLOCK_RULES:
        if key.startswith(theirs):
            rest = key[len(theirs):]
            if theirs == "global_encoder.":
                return None if _convert_hydra_key(rest) is None else ours + rest
            return ours + rest
    return None


def _convert_backbone_key(key: str) -> str | None:
    if key.startswith(BACKBONE_SAME):
        return key
    m = re.match(r"branch\.(\d+)\.(.+)$", key)
    if m:
        inner = _convert_block_key(m.group(2))
        return None if inner is None else f"branch.{m.group(1)}.{inner}"
    return None


def _convert_model_key(key: str) -> str | None:
    if key.startswith(SAME_NAME_PREFIXES):
        return key
    if key.startswith("vid_net."):
        inner = _convert_backbone_key(key[len("vid_net."):])
        return None if inner is None else "backbone." + inner
    return None


def _converter_for(target: nn.Module):
    from hieramamba.models.amp import AMPBlock
    from hieramamba.models.backbone import HieraMambaBackbone
    from hieramamba.models.model import GroundingModel

    if isinstance(target, GroundingModel):
        if not isinstance(target.backbone, HieraMambaBackbone):
            raise StateDictMismatch("the authors' checkpoints are HieraMamba models; this model's backbone is "
                                    f"{type(target.backbone).__name__}")
        return _convert_model_key, "HieraMamba model"
    if isinstance(target, HieraMambaBackbone):
        return _convert_backbone_key, "HieraMambaBackbone"
    if isinstance(target, AMPBlock):
        if not target.gated:
            raise StateDictMismatch("only the authors' gated block (AnchorMambaPoolingBlockGated) converts; "
                                    "this AMPBlock has gate=False")
        return _convert_block_key, "AnchorMambaPoolingBlockGated"
    if type(target).__name__ == "Hydra":
        return _convert_hydra_key, "Hydra"
    raise TypeError(f"no converter for {type(target).__name__}; expected a Hydra, an AMPBlock, a "
                    "HieraMambaBackbone or a GroundingModel")


def convert_authors_state_dict(state_dict: Mapping[str, torch.Tensor], target: nn.Module) -> dict[str, torch.Tensor]:
    """Rename an authors'-layout state_dict to ``target``'s layout and check it fits exactly.

    ``target`` is a ``Hydra``, a (gated) ``AMPBlock``, a ``HieraMambaBackbone`` or a
    ``GroundingModel``. Raises :class:`StateDictMismatch` listing every authors' key that has no
    place in ``target`` (unknown), every ``target`` key the checkpoint lacks (missing), and every
    shape that differs.
    """
    convert, what = _converter_for(target)
    expected = target.state_dict()
    out: dict[str, torch.Tensor] = {}
    unknown, shapes = [], []
    misshaped: set[str] = set()
    for key, value in extract_state_dict(state_dict).items():
        ours = convert(key)
        if ours is None or ours not in expected:
            unknown.append(key if ours is None else f"{key} (-> {ours})")
            continue
        if tuple(value.shape) != tuple(expected[ours].shape):
            shapes.append(f"{key}: checkpoint {tuple(value.shape)} vs module {tuple(expected[ours].shape)}")
            misshaped.add(ours)
            continue
        out[ours] = value
    missing = [k for k in expected if k not in out and k not in misshaped]
    if unknown or missing or shapes:
        parts = [f"authors' {what} state_dict does not fit {type(target).__name__}:"]
        if unknown:
            parts.append(f"  {len(unknown)} unknown key(s): " + ", ".join(unknown[:20]) + (" ..." if len(unknown) > 20 else ""))
        if missing:
            parts.append(f"  {len(missing)} missing key(s) (ours): " + ", ".join(missing[:20]) + (" ..." if len(missing) > 20 else ""))
        if shapes:
            parts.append(f"  {len(shapes)} shape mismatch(es): " + "; ".join(shapes[:20]))
        raise StateDictMismatch("\n".join(parts))
    return out


def load_authors_state_dict(target: nn.Module, checkpoint: Mapping, reference_precision: bool | None = True) -> nn.Module:
    """Convert and load (strict) an authors' state_dict or checkpoint into ``target``.

    ``reference_precision`` (default True) switches the authors' float32 round-trips on (False:
    off; None: leave as built), so the outputs match theirs.
    """
    target.load_state_dict(convert_authors_state_dict(checkpoint, target), strict=True)
    if reference_precision is not None:
        set_reference_precision(target, reference_precision)
    return target


def set_reference_precision(module: nn.Module, flag: bool) -> nn.Module:
    """Switch the authors' three float32 round-trips on or off in a built module.

    RMSNorm (normalise in float32, multiply by the weight after the cast back), Hydra's
    ``A = -exp(A_log.float())`` and the sinusoidal PE tables (recomputed in float32 / float64).
    """
    from hieramamba.models.backbone import position_table
    from hieramamba.models.norms import RMSNorm

    for sub in module.modules():
        if isinstance(sub, RMSNorm) or type(sub).__name__ == "Hydra":
            sub.reference_precision = bool(flag)
        pe = getattr(sub, "pe", None)
        if isinstance(pe, torch.Tensor) and "pe" in sub._buffers:
            table = position_table(pe.shape[-1], pe.shape[0], reference_precision=bool(flag)).to(pe.device)
            sub.register_buffer("pe", table, persistent=False)
    return module
