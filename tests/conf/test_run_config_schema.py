"""hieramamba/conf/run_config.schema.yaml: every key of every config group is declared and typed,
every shipped config and ablation validates, and bad values (command line, ablation file, hand-edited
config.yaml) are one ConfigError naming the key, the value and what is allowed (issue 12, class 4)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from hieramamba.engine.config import available_options, compose_config, load_yaml_config, to_yaml
from hieramamba.engine.config_schema import SCHEMA_PATH, check_run_config, schema
from hieramamba.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
ABLATIONS = sorted((REPO / "ablations").glob("*.yaml"))
SCALES = ["smoke", "default", "paper"]
# open keyword-argument mappings: their leaves are typed when known, extra names are the backbone's call
OPEN = ("model.backbone.snag", "model.backbone.mstemba", "model.backbone.videomamba")


def _leaves(tree, prefix=""):
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            yield from _leaves(value, dotted + ".")
        else:
            yield dotted


def _declared(dotted: str) -> bool:
    """The schema names this exact key (through $refs), not merely tolerates it."""
    node = schema()
    for part in dotted.split("."):
        while "$ref" in node:
            node = schema()["$defs"][node["$ref"].rsplit("/", 1)[-1]]
        props = node.get("properties", {})
        if part not in props:
            return False
        node = props[part]
    return True


def test_schema_file_lives_in_the_package_and_is_a_valid_schema():
    assert SCHEMA_PATH.parent == REPO / "hieramamba" / "conf"
    assert schema()["additionalProperties"] is False  # check_schema ran when it was loaded
    # shipped with the wheel: the package-data glob covers it
    pyproject = (REPO / "pyproject.toml").read_text()
    assert '"conf/**/*.yaml"' in pyproject and SCHEMA_PATH.suffix == ".yaml"


@pytest.mark.parametrize("scale", SCALES)
def test_every_key_of_every_group_is_declared(scale):
    combos = [(d, "hieramamba") for d in available_options("dataset")]
    combos += [(d, m) for m in available_options("model") if m != "hieramamba" for d in ("synth_tacos", "mad")]
    undeclared = set()
    for dataset, model in combos:
        cfg = compose_config([f"dataset={dataset}", f"scale={scale}", f"model={model}"])
        plain = OmegaConf.to_container(cfg, resolve=True)
        check_run_config(plain)  # and it validates
        undeclared |= {k for k in _leaves(plain) if not k.startswith(OPEN) and not _declared(k)}
    assert not undeclared, f"keys missing from {SCHEMA_PATH.name}: {sorted(undeclared)}"


@pytest.mark.parametrize("ablation", ABLATIONS, ids=lambda p: p.stem)
def test_every_ablation_validates(ablation):
    for dataset in ("synth_tacos", "synth_mad", "synth_ego4d_nlq"):
        cfg = compose_config([f"dataset={dataset}", "scale=smoke", f"ablation={ablation}"])
        assert cfg.variant == ablation.stem


@pytest.mark.parametrize("override, key, allowed", [
    ("model.backbone.gate=no", "model.backbone.gate", "boolean"),
    ("model.backbone.gate=1", "model.backbone.gate", "boolean"),
    ("train.lr=abc", "train.lr", "number > 0"),
    ("train.lr=nan", "train.lr", "number > 0"),
    ("train.epochs=abc", "train.epochs", "integer >= 0"),
    ("train.epochs=2.0", "train.epochs", "integer >= 0"),
    ("seed=abc", "seed", "integer >= 0"),
    ("seed=-1", "seed", "integer >= 0"),
    ("model.embd_dim=-5", "model.embd_dim", "integer >= 1"),
    ("model.backbone.stride=two", "model.backbone.stride", "integer >= 2"),
    ("model.backbone.stride=1", "model.backbone.stride", "integer >= 2"),
    ("model.backbone.window_size=4", "model.backbone.window_size", "odd"),
    ("model.backbone.pool=median", "model.backbone.pool", '"mean", "max", "attn", "gated"'),
    ("train.device=tpu", "train.device", '"auto", "cpu", "cuda"'),
    ("eval.ranks=[]", "eval.ranks", "at least 1"),
    ("train.acc={enable: maybe}", "train.acc.enable", "boolean"),
    ("dataset.features.video_dim=x", "dataset.features.video_dim", "integer >= 1 or null"),
])
def test_bad_command_line_value_names_key_value_and_what_is_allowed(override, key, allowed):
    with pytest.raises(ConfigError) as err:
        compose_config(["scale=smoke", override])
    msg = str(err.value)
    value = override.split("=", 1)[1]
    assert f"{key} = " in msg and allowed in msg and "command line" in msg, msg
    assert value.strip("{}").split(": ")[-1] in msg or value == "[]", msg
    assert "\n" not in msg


def test_bad_value_in_an_ablation_file_is_refused_and_names_the_file(tmp_path):
    bad = tmp_path / "quoted_no.yaml"
    bad.write_text('description: "gate as a string"\ntables: []\noverrides:\n  model.backbone.gate: "no"\n')
    with pytest.raises(ConfigError) as err:
        compose_config(["scale=smoke", f"ablation={bad}"])
    assert "model.backbone.gate = 'no' (str)" in str(err.value) and str(bad) in str(err.value)
    stride = tmp_path / "stride_two.yaml"
    stride.write_text("overrides:\n  model:\n    backbone:\n      stride: two\n")
    with pytest.raises(ConfigError, match=r"model\.backbone\.stride = 'two'"):
        compose_config(["scale=smoke", f"ablation={stride}"])


def test_a_later_source_owns_the_key_it_replaced():
    # the scale sets train.acc.enable; the command line then replaces train.acc as a whole
    with pytest.raises(ConfigError, match=r"train\.acc\.enable = 'x' \(str\) \(set by command line\)"):
        compose_config(["scale=smoke", "train.acc={enable: x, weight: 1.0}"])


def test_hand_edited_run_config_is_refused_with_the_file_named(tmp_path):
    cfg = compose_config(["scale=smoke", "out=" + str(tmp_path)])
    data = yaml.safe_load(to_yaml(cfg))
    path = tmp_path / "config.yaml"
    path.write_text(to_yaml(cfg))
    assert load_yaml_config(path).model.backbone.gate is True
    data["model"]["backbone"]["gate"] = "no"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"config\.yaml: model\.backbone\.gate = 'no'"):
        load_yaml_config(path)
    data["model"]["backbone"]["gate"] = True
    data["train"]["learning_rate"] = 0.1
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"unknown config key\(s\) train\.learning_rate"):
        load_yaml_config(path)


def test_padding_switch_of_the_model_branch_is_allowed_as_a_boolean():
    # another branch adds model.backbone.reference_padding_leak (class 11): the schema already takes it
    plain = OmegaConf.to_container(compose_config(["scale=smoke"]), resolve=True)
    node = schema()["properties"]["model"]["properties"]["backbone"]["properties"]["reference_padding_leak"]
    assert node["type"] == "boolean" and node["default"] is False
    plain["model"]["backbone"]["reference_padding_leak"] = True
    check_run_config(plain)
    plain["model"]["backbone"]["reference_padding_leak"] = "yes"
    with pytest.raises(ConfigError, match="reference_padding_leak = 'yes'"):
        check_run_config(plain)
