"""Each seed backbone's model config has hieramamba.yaml's structure, every backbone key reaches
its constructor, it builds, and its ablation file selects it (with ACC off: no anchors)."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import yaml

from hieramamba.models.backbones import backbone_class, build_backbone

ROOT = Path(__file__).resolve().parents[2]

# small sizes so each builds in well under a second
TINY = {"snag": {"n_heads": 2}, "mstemba": {"d_state": 4}, "videomamba": {"d_state": 4, "depth": 2}}


@pytest.mark.parametrize("name", sorted(TINY))
def test_model_config_and_ablation_file(name):
    ref = yaml.safe_load((ROOT / "hieramamba/conf/model/hieramamba.yaml").read_text())
    cfg = yaml.safe_load((ROOT / f"hieramamba/conf/model/{name}.yaml").read_text())
    assert list(cfg) == list(ref)
    assert {k: v for k, v in cfg.items() if k != "backbone"} == {k: v for k, v in ref.items() if k != "backbone"}
    backbone = dict(cfg["backbone"])
    assert backbone.pop("name") == name
    params = inspect.signature(backbone_class(name).__init__).parameters
    assert set(backbone) <= set(params), set(backbone) - set(params)  # every key reaches the constructor
    model = build_backbone(name, in_dim=6, embd_dim=16, max_seq_len=64, reference_precision=cfg["reference_precision"],
                           **{**backbone, **TINY[name], "num_levels": 3})
    assert model.num_levels == 3
    ablation = yaml.safe_load((ROOT / f"ablations/{name}.yaml").read_text())
    assert set(ablation) == {"description", "tables", "overrides"}
    assert ablation["tables"] == ["backbones"]
    assert ablation["overrides"]["model.backbone.name"] == name
    assert ablation["overrides"]["train.acc.enable"] is False
