"""HieraMamba model parts (tensors only; imports neither data nor engine).

Names are imported lazily on first access, so ``import hieramamba.models`` stays cheap and an
optional piece (e.g. a seed backbone) never breaks the others.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Hydra": "hieramamba.models.ssm",
    "ssd_scan": "hieramamba.models.ssd",
    "RMSNorm": "hieramamba.models.norms",
    "LayerNorm": "hieramamba.models.norms",
    "LayerScale": "hieramamba.models.norms",
    "Scale": "hieramamba.models.norms",
    "MaskedMHA": "hieramamba.models.attention",
    "MaskedConv1D": "hieramamba.models.attention",
    "TransformerEncoder": "hieramamba.models.attention",
    "TransformerDecoder": "hieramamba.models.attention",
    "GlobalAttentionMixer": "hieramamba.models.attention",
    "AMPBlock": "hieramamba.models.amp",
    "AnchorPooling": "hieramamba.models.amp",
    "HieraMambaBackbone": "hieramamba.models.backbone",
    "BackboneOutput": "hieramamba.models.backbones",
    "build_backbone": "hieramamba.models.backbones",
    "TextIdentity": "hieramamba.models.text",
    "TextTransformer": "hieramamba.models.text",
    "XAttnFusion": "hieramamba.models.fusion",
    "ClsHead": "hieramamba.models.heads",
    "RegHead": "hieramamba.models.heads",
    "PointGenerator": "hieramamba.models.points",
    "GroundingModel": "hieramamba.models.model",
    "ModelOutput": "hieramamba.models.model",
    "build_model": "hieramamba.models.model",
    "convert_authors_state_dict": "hieramamba.models.compat",
    "load_authors_state_dict": "hieramamba.models.compat",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'hieramamba.models' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
