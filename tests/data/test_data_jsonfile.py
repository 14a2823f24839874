"""Annotation JSON: non-finite numbers are refused and duplicate keys counted, in every reader
(issue 12, classes 1 and 2)."""

from __future__ import annotations

import json

import pytest
from readers_fixtures import (  # noqa: F401
    ego4d_config,
    ego4d_dir,
    mad_config,
    mad_dir,
    snag_config,
    snag_dir,
    tacos_config,
    tacos_dir,
)

from hieramamba.data.cli import main as data_main
from hieramamba.data.dataset import GroundingDataset
from hieramamba.data.jsonfile import format_location, read_json
from hieramamba.errors import DataError


def _edit_text(path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


# ------------------------------------------------------------------ class 1: non-finite numbers


@pytest.mark.parametrize("split", ["train", "test"])
@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_tacos_non_finite_frame_index_is_an_error_naming_file_and_record(tacos_dir, split, literal):
    path = tacos_dir / "annotations" / f"{split}.json"
    key = "s13-d21.avi" if split == "train" else "s31-d28.avi"
    data = json.loads(path.read_text())
    data[key]["timestamps"][1][1] = "@"
    path.write_text(json.dumps(data).replace('"@"', literal))
    with pytest.raises(DataError) as err:
        GroundingDataset.from_config(tacos_config(tacos_dir))
    msg = str(err.value)
    assert str(path) in msg and f'["{key}"]["timestamps"][1][1]' in msg and "non-finite" in msg


def test_data_check_strict_or_not_fails_on_a_nan_frame_index(tacos_dir, capsys):
    path = tacos_dir / "annotations" / "train.json"
    _edit_text(path, "[400, 700]", "[NaN, 700]")
    for extra in ([], ["--strict"]):
        assert data_main(["check", _cfg_file(tacos_dir)] + extra) == 1
        err = capsys.readouterr().err
        assert "train.json" in err and '["s13-d21.avi"]["timestamps"][1][0]' in err and "Traceback" not in err


def _cfg_file(root):
    import yaml

    path = root / "tacos_fixture.yaml"
    path.write_text(yaml.safe_dump(tacos_config(root)))
    return str(path)


@pytest.mark.parametrize("field,old,new", [
    ("movie_duration", '"movie_duration": 200.0', '"movie_duration": NaN'),
    ("ext_timestamps", '"ext_timestamps": [10.0, 12.0]', '"ext_timestamps": [10.0, Infinity]'),
    ("timestamps", '"timestamps": [10.0, 12.0]', '"timestamps": [NaN, 12.0]'),  # kept in the identity
])
def test_mad_non_finite_fields(mad_dir, field, old, new):
    path = mad_dir / "annotations" / "MAD_train.json"
    _edit_text(path, old, new)
    with pytest.raises(DataError, match=rf"MAD_train\.json, record '\[\"105\d\"\]\[\"{field}\"\].*non-finite"):
        GroundingDataset.from_config(mad_config(mad_dir))


def test_ego4d_non_finite_query_time(ego4d_dir):
    path = ego4d_dir / "annotations" / "nlq_val.json"
    data = json.loads(path.read_text())
    data["videos"][1]["clips"][0]["annotations"][0]["language_queries"][0]["clip_end_sec"] = "@"
    path.write_text(json.dumps(data).replace('"@"', "NaN"))
    with pytest.raises(DataError, match=r'nlq_val\.json, record \'\["videos"\]\[1\]\["clips"\]\[0\]\["annotations"\]\[0\]'
                                        r'\["language_queries"\]\[0\]\["clip_end_sec"\]\''):
        GroundingDataset.from_config(ego4d_config(ego4d_dir))


def test_snag_non_finite_fps_and_segment(snag_dir):
    path = snag_dir / "snag.json"
    original = path.read_text()
    for old, new, where in (('"fps": 30.0, "num_frames": 1500, "annotations"', '"fps": NaN, "num_frames": 1500, "annotations"', '["train"]["vidB"]["fps"]'),
                            ('"segment": [5.0, 15.0]', '"segment": [5.0, -Infinity]', '["test"]["vidD"]["annotations"][0]["segment"][1]')):
        path.write_text(original.replace(old, new, 1))
        with pytest.raises(DataError) as err:
            GroundingDataset.from_config(snag_config(snag_dir))
        assert where in str(err.value) and "non-finite" in str(err.value)


def test_non_finite_feature_grid_parameters_are_config_errors(tacos_dir):
    from hieramamba.errors import ConfigError

    cfg = tacos_config(tacos_dir)
    cfg["features"]["fps"] = float("nan")
    with pytest.raises(ConfigError, match="fps must be a finite number"):
        GroundingDataset.from_config(cfg)


# ------------------------------------------------------------------ class 2: duplicate keys


def test_read_json_reports_every_duplicate_with_its_location(tmp_path):
    path = tmp_path / "a.json"
    path.write_text('{"v1": {"fps": 1, "fps": 2}, "v2": [{"x": 1, "x": 1, "x": 3}], "v1": {"fps": 5}}')
    found = []
    data = read_json(path, on_duplicate=lambda loc, key: found.append((format_location(loc), key)))
    assert data == {"v1": {"fps": 5}, "v2": [{"x": 3}]}  # Python's json: the last value is kept
    # parse order; the duplicate inside the replaced first "v1" is part of that (reported) loss
    assert found == [('["v2"][0]', "x"), ('["v2"][0]', "x"), ("<top level>", "v1")]
    with pytest.raises(DataError, match="appears twice"):
        read_json(path)  # no callback: an error


def test_tacos_duplicate_video_key_is_counted_and_strict_fails(tacos_dir, capsys):
    path = tacos_dir / "annotations" / "train.json"
    data = json.loads(path.read_text())
    first = json.dumps({"s13-d21.avi": data["s13-d21.avi"]})[1:-1]
    path.write_text(json.dumps(data)[:-1] + ", " + first + "}")  # the same video key again, at the end
    ds = GroundingDataset.from_config(tacos_config(tacos_dir))
    assert ds.records.quirks.get("train", "duplicate_json_key_dropped") == 1
    assert ds.records.quirks.examples["train"]["duplicate_json_key_dropped"] == ["<top level> key 's13-d21.avi'"]
    cfg = _cfg_file(tacos_dir)
    assert data_main(["check", cfg, "--no-features"]) == 0
    assert "quirk train/duplicate_json_key_dropped: 1" in capsys.readouterr().out
    out = tacos_dir / "report"
    assert data_main(["check", cfg, "--no-features", "--strict", "--out", str(out)]) == 1
    errors = json.loads((out / "data_report.json").read_text())["errors"]
    assert errors["counts"]["strict:duplicate_json_key_dropped"] == 1
    assert errors["items"]["strict:duplicate_json_key_dropped"][0]["record"] == "<top level> key 's13-d21.avi'"


def test_mad_duplicate_annotation_id_is_counted(mad_dir):
    path = mad_dir / "annotations" / "MAD_test.json"
    text = path.read_text()
    path.write_text(text.replace('"3002":', '"3001":', 1))
    ds = GroundingDataset.from_config(mad_config(mad_dir))
    assert ds.records.quirks.get("test", "duplicate_json_key_dropped") == 1
    assert ds.split("test").num_queries == 1  # the last entry is kept, the loss is counted


def test_ego4d_and_snag_duplicate_keys_are_counted_under_their_split(ego4d_dir, snag_dir):
    path = ego4d_dir / "annotations" / "nlq_val.json"
    _edit_text(path, '"version": "v2"', '"version": "v2", "version": "v2"')
    ds = GroundingDataset.from_config(ego4d_config(ego4d_dir))
    assert ds.records.quirks.get("val", "duplicate_json_key_dropped") == 1
    assert ds.records.quirks.get("train", "duplicate_json_key_dropped") == 0
    path = snag_dir / "snag.json"
    _edit_text(path, '"vidD": {', '"vidD": {"fps": 30.0, ')
    ds = GroundingDataset.from_config(snag_config(snag_dir))
    assert ds.records.quirks.get("test", "duplicate_json_key_dropped") == 1
    assert ds.records.quirks.examples["test"]["duplicate_json_key_dropped"] == ['["test"]["vidD"] key \'fps\'']
