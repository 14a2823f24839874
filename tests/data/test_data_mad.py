"""MAD: MAD_{split}.json (ext_timestamps) + frame / language-token h5 files read lazily."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from readers_fixtures import MAD_DIM, mad_config, mad_dir  # noqa: F401

from hieramamba.data import features as features_mod
from hieramamba.data.check import check_dataset
from hieramamba.data.dataset import GroundingDataset
from hieramamba.data.mad import read_mad
from hieramamba.errors import DataError


def test_reads_movies_ext_timestamps_and_quirks(mad_dir):
    rec = read_mad(mad_dir / "annotations")
    tr = rec.splits["train"]
    assert list(tr.videos) == ["10142", "10200"]
    m = tr.videos["10142"]
    assert m.duration == 200.0 and m.fps == 5.0 and m.num_frames == 1000
    # the ground truth is ext_timestamps, not timestamps; query id = annotation id
    assert [q.query_id for q in m.queries] == ["1050", "1051"]
    assert m.queries[0].segment == (162.547, 175.809)
    assert m.queries[0].identity["timestamps"] == [162.5, 175.8]
    assert m.queries[1].sentence == "She smiles."
    # start >= end: dropped (SnAG/HieraMamba), counted
    assert rec.quirks.get("train", "reversed_dropped") == 1
    assert rec.quirks.get("test", "end_past_video_clamped") == 1
    assert rec.splits["test"].videos["0002_Another_Title"].queries[1].segment == (38.0, 40.0)
    assert rec.splits["val"].num_queries == 1


def test_lazy_frames_and_text(mad_dir, monkeypatch):
    reads = []
    real = features_mod.H5Feature.load

    def spy(self):
        reads.append(self.key)
        return real(self)

    monkeypatch.setattr(features_mod.H5Feature, "load", spy)
    ds = GroundingDataset.from_config(mad_config(mad_dir))
    assert reads == []  # building the dataset reads no movie
    f = ds.load_video_features("10142")
    assert reads == ["10142"]
    with h5py.File(mad_dir / "features" / "CLIP_B32_frames_features_5fps.h5") as h:
        np.testing.assert_array_equal(f, h["10142"][()])
    assert f.dtype == np.float32 and f.flags["C_CONTIGUOUS"]
    t = ds.load_text_features(ds.split("train").videos["10142"].queries[0])
    assert t.shape == (7, MAD_DIM)
    np.testing.assert_allclose(ds.targets("10142", [0]), [[162.547 * 5 - 0.5, 175.809 * 5 - 0.5]])


def test_check_reports_short_movie(mad_dir):
    ds = GroundingDataset.from_config(mad_config(mad_dir))
    report = check_dataset(ds)
    assert report["ok"]
    assert report["warnings"]["counts"] == {"feature_length_mismatch": 1}
    assert report["warnings"]["items"]["feature_length_mismatch"][0]["record"] == "10200"
    assert report["features"]["video"]["checked"] == 4 and report["features"]["text"]["checked"] == 6
    assert not check_dataset(ds, strict=True)["ok"]


def test_bad_missing_movie_in_h5(mad_dir):
    with h5py.File(mad_dir / "features" / "CLIP_B32_frames_features_5fps.h5", "a") as f:
        del f["0001_American_Beauty"]
    ds = GroundingDataset.from_config(mad_config(mad_dir))
    with pytest.raises(DataError) as exc:
        ds.load_video_features("0001_American_Beauty")
    assert "CLIP_B32_frames_features_5fps.h5" in str(exc.value) and "'0001_American_Beauty'" in str(exc.value)
    report = check_dataset(ds)
    assert not report["ok"] and report["errors"]["counts"] == {"missing_video_feature": 1}


def test_bad_missing_language_tokens(mad_dir):
    with h5py.File(mad_dir / "features" / "CLIP_B32_language_tokens_features.h5", "a") as f:
        del f["3002"]
    ds = GroundingDataset.from_config(mad_config(mad_dir))
    with pytest.raises(DataError) as exc:
        ds.load_text_features(ds.split("test").videos["0002_Another_Title"].queries[1])
    assert "CLIP_B32_language_tokens_features.h5" in str(exc.value) and "'3002'" in str(exc.value)


def test_bad_wrong_text_dimension(mad_dir):
    cfg = mad_config(mad_dir)
    cfg["features"]["text_dim"] = 768
    ds = GroundingDataset.from_config(cfg)
    with pytest.raises(DataError) as exc:
        ds.load_text_features(ds.split("val").videos["0001_American_Beauty"].queries[0])
    assert "CLIP_B32_language_tokens_features.h5" in str(exc.value) and "'2001'" in str(exc.value) and "768" in str(exc.value)


def test_bad_field_type(mad_dir):
    path = mad_dir / "annotations" / "MAD_val.json"
    data = json.loads(path.read_text())
    data["2001"]["ext_timestamps"] = "3.0-6.0"
    path.write_text(json.dumps(data))
    with pytest.raises(DataError) as exc:
        read_mad(mad_dir / "annotations")
    assert str(path) in str(exc.value) and "'2001'" in str(exc.value) and "ext_timestamps" in str(exc.value)


def test_bad_unreadable_h5(mad_dir):
    (mad_dir / "features" / "CLIP_B32_frames_features_5fps.h5").write_bytes(b"garbage")
    ds = GroundingDataset.from_config(mad_config(mad_dir))
    with pytest.raises(DataError) as exc:
        ds.load_video_features("10142")
    assert "CLIP_B32_frames_features_5fps.h5" in str(exc.value) and "unreadable" in str(exc.value) and "'10142'" in str(exc.value)
