"""Ego4D-NLQ official JSON (datasets.md §1.2 structure), per-clip / per-video features, text."""

from __future__ import annotations

import json

import numpy as np
import pytest
from readers_fixtures import A1, A3, A4, C1, C2, C3, EGO_DIM, EGO_TEXT_DIM, V1, V2, ego4d_config, ego4d_dir, write_pt  # noqa: F401

from hieramamba.data.dataset import GroundingDataset
from hieramamba.data.ego4d import official_clip_rows, read_ego4d
from hieramamba.errors import DataError


def test_reads_structure_identity_and_quirks(ego4d_dir):
    rec = read_ego4d(ego4d_dir / "annotations")
    assert set(rec.splits) == {"train", "val", "test"}
    tr = rec.splits["train"]
    assert list(tr.videos) == [C1, C2, C3]
    c1 = tr.videos[C1]
    assert c1.duration == 480.0 and c1.fps == 30.0 and c1.num_frames == 14400
    assert c1.identity["video_uid"] == V1 and c1.identity["video_start_sec"] == pytest.approx(120.0210286)
    # query 1 is zero-length, query 2 has an empty text: both dropped and counted
    assert [q.query_id for q in c1.queries] == [f"{C1}_{A1}_0"]
    q = c1.queries[0]
    assert q.identity["clip_uid"] == C1 and q.identity["annotation_uid"] == A1 and q.identity["query_idx"] == 0
    assert q.segment == (17.25, 27.5) and q.sentence == "what did I put in the red box?"
    assert rec.quirks.get("train", "zero_length_dropped") == 1
    assert rec.quirks.get("train", "empty_query_dropped") == 1
    # clip-relative window past the clip end (30..45 s in a 40 s clip) is clamped and counted
    c3 = tr.videos[C3]
    assert [x.identity["annotation_uid"] for x in c3.queries] == [A3, A4]
    assert c3.queries[1].segment == (30.0, 40.0)
    assert rec.quirks.get("train", "end_past_video_clamped") == 1
    assert tr.videos[C2].identity["video_uid"] == V2 and tr.videos[C2].queries[0].sentence == "did I open the door?"
    assert rec.quirks.get("train", "whitespace_stripped") == 1
    # test_unannotated: queries without times; the empty query is dropped (counted), index kept
    te = rec.splits["test"]
    assert te.num_queries == 4 and all(x.segment is None for x in te.queries())
    assert [x.identity["query_idx"] for x in te.videos[C1].queries] == [0]
    assert rec.quirks.get("test", "empty_query_dropped") == 4


def test_dataset_per_clip_features_text_and_targets(ego4d_dir):
    ds = GroundingDataset.from_config(ego4d_config(ego4d_dir))
    assert ds.eval_split == "val"
    f = ds.load_video_features(C1)
    assert f.shape == (int(480 * 1.875) + 1, EGO_DIM) and f.dtype == np.float32
    q = ds.split("train").videos[C1].queries[0]
    t = ds.load_text_features(q)
    assert t.shape == (5, EGO_TEXT_DIM)
    # query_idx 1 of A2 exists only as .npy; the reader accepts both suffixes
    assert ds.load_text_features(ds.split("train").videos[C3].queries[0]).shape == (5, EGO_TEXT_DIM)
    # grid: g = t * 30 / 16 - 1 (fps 30, clip 32, stride 16)
    np.testing.assert_allclose(ds.targets(C1), [[17.25 * 30 / 16 - 1, 27.5 * 30 / 16 - 1]])
    np.testing.assert_allclose(ds.to_seconds(C1, ds.targets(C1)), [[17.25, 27.5]])
    # text by query id string, looked up in a split
    np.testing.assert_array_equal(ds.load_text_features(q.query_id, split="train"), t)


def test_text_dict_keyed_by_query_text(ego4d_dir, tmp_path):
    import torch

    table = {"what did I put in the red box?": torch.ones(3, EGO_TEXT_DIM), "did I open the door? ": torch.zeros(2, EGO_TEXT_DIM)}
    torch.save(table, tmp_path / "sentence.pt")
    ds = GroundingDataset.from_config(ego4d_config(ego4d_dir, text_features=str(tmp_path / "sentence.pt")))
    tr = ds.split("train")
    np.testing.assert_array_equal(ds.load_text_features(tr.videos[C1].queries[0]), np.ones((3, EGO_TEXT_DIM)))
    assert ds.load_text_features(tr.videos[C2].queries[0]).shape == (2, EGO_TEXT_DIM)  # raw text with trailing space
    with pytest.raises(DataError) as exc:
        ds.load_text_features(tr.videos[C3].queries[0])
    assert "sentence.pt" in str(exc.value) and f"{C3}_{A3}_0" in str(exc.value)
    # the EgoVLP-style pickled numpy dict works too
    np.save(tmp_path / "sentence.npy", {k: v.numpy() for k, v in table.items()}, allow_pickle=True)
    ds = GroundingDataset.from_config(ego4d_config(ego4d_dir, text_features=str(tmp_path / "sentence.npy")))
    assert ds.load_text_features(ds.split("train").videos[C1].queries[0]).shape == (3, EGO_TEXT_DIM)


def test_per_video_official_features_cut_like_official_prep(ego4d_dir, tmp_path):
    vdir = tmp_path / "slowfast"
    vdir.mkdir()
    n1 = int(700 * 1.875)
    full = np.arange(n1 * 4, dtype=np.float32).reshape(n1, 4)
    write_pt(vdir / f"{V1}.pt", full)
    write_pt(vdir / f"{V2}.pt", full[:200])
    feats = {"fps": 30.0, "clip_size": 32, "clip_stride": 16, "downsample_rate": 1, "video_dim": 4, "layout": "per_video"}
    ds = GroundingDataset.from_config(ego4d_config(ego4d_dir, video_features=str(vdir), features=feats))
    s, e = official_clip_rows(120.0210286, 600.0210286)
    assert (s, e) == (int(120.0210286 * 1.875), int(600.0210286 * 1.875)) == (225, 1125)
    np.testing.assert_array_equal(ds.load_video_features(C1), full[225:1126])  # inclusive end
    # video_start_sec = -4e-07: int() truncates toward 0 -> row 0
    np.testing.assert_array_equal(ds.load_video_features(C2), full[0 : int((60 - 4e-07) * 1.875) + 1])


def test_bad_missing_query_time(ego4d_dir):
    path = ego4d_dir / "annotations" / "nlq_train.json"
    data = json.loads(path.read_text())
    del data["videos"][1]["clips"][1]["annotations"][0]["language_queries"][0]["clip_end_sec"]
    path.write_text(json.dumps(data))
    with pytest.raises(DataError) as exc:
        read_ego4d(ego4d_dir / "annotations")
    msg = str(exc.value)
    assert str(path) in msg and f"{C3}_{A3}_0" in msg and "clip_end_sec" in msg


def test_bad_missing_clip_uid(ego4d_dir):
    path = ego4d_dir / "annotations" / "nlq_val.json"
    data = json.loads(path.read_text())
    del data["videos"][0]["clips"][0]["clip_uid"]
    path.write_text(json.dumps(data))
    with pytest.raises(DataError) as exc:
        read_ego4d(ego4d_dir / "annotations")
    assert str(path) in str(exc.value) and V1 in str(exc.value) and "clip_uid" in str(exc.value)


def test_bad_missing_video_feature_file(ego4d_dir):
    (ego4d_dir / "features" / "video" / f"{C2}.pt").unlink()
    ds = GroundingDataset.from_config(ego4d_config(ego4d_dir))
    with pytest.raises(DataError) as exc:
        ds.load_video_features(C2)
    assert f"{C2}.pt" in str(exc.value) and "not found" in str(exc.value) and repr(C2) in str(exc.value)


def test_bad_missing_text_feature_file(ego4d_dir):
    qid = f"{C1}_{A1}_0"
    (ego4d_dir / "features" / "text" / f"{qid}.pt").unlink()
    ds = GroundingDataset.from_config(ego4d_config(ego4d_dir))
    with pytest.raises(DataError) as exc:
        ds.load_text_features(ds.split("train").videos[C1].queries[0])
    assert str(ego4d_dir / "features" / "text") in str(exc.value) and repr(qid) in str(exc.value)


def test_bad_unreadable_feature_file(ego4d_dir):
    (ego4d_dir / "features" / "video" / f"{C3}.pt").write_bytes(b"not a torch file")
    ds = GroundingDataset.from_config(ego4d_config(ego4d_dir))
    with pytest.raises(DataError) as exc:
        ds.load_video_features(C3)
    assert f"{C3}.pt" in str(exc.value) and "unreadable" in str(exc.value)


def test_bad_feature_not_2d(ego4d_dir):
    write_pt(ego4d_dir / "features" / "video" / f"{C3}.pt", np.zeros(10, dtype=np.float32))
    ds = GroundingDataset.from_config(ego4d_config(ego4d_dir))
    with pytest.raises(DataError) as exc:
        ds.load_video_features(C3)
    assert f"{C3}.pt" in str(exc.value) and "2-D" in str(exc.value) and repr(C3) in str(exc.value)


def test_unannotated_test_split_sample_and_check(ego4d_dir):
    from hieramamba.data.check import check_dataset

    ds = GroundingDataset.from_config(ego4d_config(ego4d_dir))
    vs = ds.load_sample(ds.eval_samples("test")[0])
    assert vs.query_ids == [f"{C1}_{A1}_0"] and vs.queries[0].identity["query_idx"] == 0
    assert vs.targets.shape == (1, 2) and np.isnan(vs.targets).all() and np.isnan(vs.segments).all()
    assert vs.video.shape == (int(480 * 1.875) + 1, EGO_DIM) and vs.texts[0].shape == (5, EGO_TEXT_DIM)
    report = check_dataset(ds)
    assert report["ok"], report["errors"]
    assert report["splits"]["test"]["annotated_queries"] == 0 and report["splits"]["train"]["queries"] == 4
    assert report["quirks"]["train"]["zero_length_dropped"] == 1 and report["quirks"]["train"]["empty_query_dropped"] == 1
