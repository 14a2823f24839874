"""What a run reports of the data it used: reader quirks per split, text truncations, the
reader's drops (issue 12, classes 7 and 9), and evaluation samples cut to max_text_len."""

from __future__ import annotations

import json

import pytest
from readers_fixtures import mad_config, mad_dir, snag_config, snag_dir, tacos_config, tacos_dir  # noqa: F401

from hieramamba.data.dataset import GroundingDataset
from hieramamba.data.run_quirks import describe, dropped_queries, run_data_quirks, truncated_queries


def _long_test_query(root, words: int) -> None:
    path = root / "annotations" / "test.json"
    data = json.loads(path.read_text())
    data["s31-d28.avi"]["sentences"][1] = " ".join(["she ate it"] * (words // 3))
    path.write_text(json.dumps(data))


def test_text_truncations_are_counted_per_split_only_where_the_run_cuts(tacos_dir):
    _long_test_query(tacos_dir, 30)
    ds = GroundingDataset.from_config(tacos_config(tacos_dir))
    assert truncated_queries(ds, "test", 4) == ["s31-d28.avi_0001"]
    # 4, 4, 4, 5 and 3 words: all but "He rinsed it"
    assert truncated_queries(ds, "train", 3) == ["s13-d21.avi_0000", "s13-d21.avi_0001", "s13-d21.avi_0002", "s27-d50.avi_0000"]
    quirks = run_data_quirks(ds, {"train": True, "test": True}, 3)
    assert quirks == {
        "train": {"end_past_video_clamped": 1, "exact_duplicate_kept": 1, "text_truncated": 4, "whitespace_stripped": 1},
        "test": {"text_truncated": 2},  # "She peeled an orange" too, at 3 tokens
    }
    assert run_data_quirks(ds, {"train": True, "test": False}, 3)["test"] == {}
    assert run_data_quirks(ds, {"train": True, "test": True}, None)["train"].get("text_truncated") is None
    assert describe(quirks) == ("train: end_past_video_clamped 1, exact_duplicate_kept 1, text_truncated 4, "
                                "whitespace_stripped 1; test: text_truncated 2")
    assert describe({"test": {}}) == "test: none"


def test_evaluation_samples_are_cut_to_max_text_len(tacos_dir):
    _long_test_query(tacos_dir, 3000)
    ds = GroundingDataset.from_config(tacos_config(tacos_dir))
    sample = ds.eval_samples("test")[0]
    assert [len(t) for t in ds.load_sample(sample).texts] == [4, 3000]  # eval.truncate_text=false
    assert [len(t) for t in ds.load_sample(sample, max_text_len=8).texts] == [4, 8]


def test_reader_drops_of_a_split_are_summed(mad_dir):
    ds = GroundingDataset.from_config(mad_config(mad_dir))
    counts = ds.records.quirks.as_dict()["train"]
    assert counts["reversed_dropped"] == 1 and dropped_queries(counts) == 1
    assert dropped_queries({"exact_duplicate_kept": 4, "duplicate_json_key_dropped": 2}) == 0  # not queries of the split


@pytest.mark.parametrize("fixture_config", ["snag", "mad"])
def test_text_shapes_match_the_loaded_arrays(fixture_config, snag_dir, mad_dir):
    ds = GroundingDataset.from_config(snag_config(snag_dir) if fixture_config == "snag" else mad_config(mad_dir))
    for split in ds.records.splits.values():
        for q in split.queries():
            assert tuple(ds.text_source.shape(q)) == ds.load_text_features(q).shape


def test_real_tacos_queries_longer_than_the_paper_max_text_len(shared_tacos_dir, tmp_path):
    """What evaluation's default cut changes on the release: paper-scale TACoS has max_text_len 48."""
    glove = tmp_path / "glove.txt"
    glove.write_text("the 0.1 0.2\n")  # the count depends on the tokenizer only
    ds = GroundingDataset.from_config("tacos", overrides={"root": str(shared_tacos_dir), "video_features": None,
                                                          "glove": str(glove)})
    assert {s: len(truncated_queries(ds, s, 48)) for s in ("train", "val", "test")} == {"train": 0, "val": 5, "test": 1}
