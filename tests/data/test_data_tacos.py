"""TACoS (2D-TAN JSON + C3D h5/npy + GloVe): the real annotation files and hand-made fixtures."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from readers_fixtures import GLOVE_DIM, GLOVE_WORDS, TACOS_DIM, tacos_config, tacos_dir, tacos_num_feats  # noqa: F401

from hieramamba.data.dataset import GroundingDataset
from hieramamba.data.tacos import read_tacos
from hieramamba.data.text import GloVe, tokenize
from hieramamba.errors import DataError


def test_real_tacos_counts_and_quirks(shared_tacos_dir):
    rec = read_tacos(shared_tacos_dir)
    counts = {s: (len(sp.videos), sp.num_queries) for s, sp in rec.splits.items()}
    assert counts == {"train": (75, 9790), "val": (27, 4436), "test": (25, 4001)}
    q = rec.quirks
    # the README: ends past num_frames 43 train / 0 val / 5 test (clamped); exact duplicates kept
    assert [q.get(s, "end_past_video_clamped") for s in ("train", "val", "test")] == [43, 0, 5]
    assert [q.get(s, "exact_duplicate_kept") for s in ("train", "val", "test")] == [1201, 516, 567]
    # found by the reader: sentences with leading/trailing whitespace (stripped)
    assert [q.get(s, "whitespace_stripped") for s in ("train", "val", "test")] == [21, 12, 20]
    for kind in ("zero_length_dropped", "reversed_dropped", "empty_query_dropped", "start_past_video_dropped"):
        assert all(q.get(s, kind) == 0 for s in ("train", "val", "test"))
    # every window inside its video, positive length; moment statistics of datasets.md §3.1
    moments = []
    for sp in rec.splits.values():
        for v in sp.videos.values():
            assert v.fps == 29.4 and v.duration == pytest.approx(v.num_frames / 29.4)
            for qq in v.queries:
                s, e = qq.segment
                assert 0 <= s < e <= v.duration
                assert qq.query_id == f"{v.video_id}_{qq.index:04d}" and v.video_id.endswith(".avi")
        if sp.name == "train":
            moments = [qq.segment[1] - qq.segment[0] for v in sp.videos.values() for qq in v.queries]
    assert np.mean(moments) == pytest.approx(23.34, abs=0.01)


def test_real_tacos_data_check_cli(shared_tacos_dir, tmp_path):
    from hieramamba.data.cli import main

    rc = main(["check", "tacos", f"dataset.root={shared_tacos_dir}", "dataset.video_features=null", "--out", str(tmp_path)])
    assert rc == 0
    report = json.loads((tmp_path / "data_report.json").read_text())
    assert report["splits"]["test"]["queries"] == 4001
    assert report["quirks"]["train"]["end_past_video_clamped"] == 43
    assert "end_past_video_clamped" in (tmp_path / "data_report.md").read_text()
    # strict: every counted quirk is an error
    assert main(["check", "tacos", f"dataset.root={shared_tacos_dir}", "dataset.video_features=null", "--strict"]) == 1


def test_fixture_reads_h5_features_glove_and_targets(tacos_dir):
    ds = GroundingDataset.from_config(tacos_config(tacos_dir))
    tr = ds.split("train")
    assert list(tr.videos) == ["s13-d21.avi", "s27-d50.avi"]
    assert ds.records.quirks.get("train", "exact_duplicate_kept") == 1
    assert ds.records.quirks.get("train", "end_past_video_clamped") == 1
    assert ds.records.quirks.get("train", "whitespace_stripped") == 1
    v = tr.videos["s27-d50.avi"]
    assert v.queries[1].segment == pytest.approx((1400 / 29.4, 1500 / 29.4))  # end clamped to the duration
    feats = ds.load_video_features("s13-d21.avi")
    with h5py.File(tacos_dir / "features" / "tall_c3d_features.hdf5") as f:
        np.testing.assert_array_equal(feats, f["s13-d21.avi"][()][::4])
    assert feats.shape == ((tacos_num_feats(2000) + 3) // 4, TACOS_DIM)
    q = tr.videos["s13-d21.avi"].queries[0]
    text = ds.load_text_features(q)
    assert text.shape == (4, GLOVE_DIM)  # she took out kiwi
    np.testing.assert_allclose(text[0], np.full(GLOVE_DIM, (GLOVE_WORDS.index("she") + 1) / 10), atol=1e-6)
    # an unknown word is a zero vector ("leek")
    leek = ds.load_text_features(ds.split("val").videos["s30-d52.avi"].queries[0])
    assert leek.shape == (4, GLOVE_DIM) and not leek[3].any() and leek[2].any()
    tg = ds.targets("s13-d21.avi", [0])
    np.testing.assert_allclose(tg, [[141 / 16 - 0.5, 354 / 16 - 0.5]])


def test_glove_tokenizer_and_dim_inference(tmp_path):
    assert tokenize("She took-out the KIWI, didn't she?") == ["she", "took", "out", "the", "kiwi", "didn", "t", "she"]
    p = tmp_path / "g.txt"
    p.write_text("a 1 2 3\nb 4 5 6\n")
    g = GloVe(p)
    assert g.dim == 3
    np.testing.assert_array_equal(g.embed("B a zz"), [[4, 5, 6], [1, 2, 3], [0, 0, 0]])
    assert GloVe(p, vocab={"a"}).vectors.keys() == {"a"}


def test_keys_without_avi_and_npy_dir(tacos_dir, tmp_path):
    # h5 keyed without ".avi"
    src = tacos_dir / "features" / "tall_c3d_features.hdf5"
    alt = tmp_path / "noavi.hdf5"
    with h5py.File(src) as f, h5py.File(alt, "w") as g:
        for k in f:
            g.create_dataset(k[:-4], data=f[k][()])
    ds = GroundingDataset.from_config(tacos_config(tacos_dir, video_features=str(alt)))
    assert ds.load_video_features("s31-d28.avi").shape[1] == TACOS_DIM
    # per-video npy directory, stems without ".avi"
    d = tmp_path / "npy"
    d.mkdir()
    with h5py.File(src) as f:
        for k in f:
            np.save(d / f"{k[:-4]}.npy", f[k][()])
    ds = GroundingDataset.from_config(tacos_config(tacos_dir, video_features=str(d)))
    assert ds.load_video_features("s31-d28.avi").shape == ((tacos_num_feats(1200) + 3) // 4, TACOS_DIM)


# ----------------------------------------------------------------------- bad input: one test per kind
def _bad(tacos_dir, split_json):
    (tacos_dir / "annotations" / "train.json").write_text(split_json)
    return tacos_dir / "annotations" / "train.json"


def test_bad_malformed_json(tacos_dir):
    path = _bad(tacos_dir, '{"s13-d21.avi": {"timestamps": [[1, 2]],')
    with pytest.raises(DataError) as exc:
        read_tacos(tacos_dir / "annotations")
    assert str(path) in str(exc.value) and "malformed JSON" in str(exc.value)


def test_bad_missing_field(tacos_dir):
    path = _bad(tacos_dir, json.dumps({"s13-d21.avi": {"timestamps": [[1, 2]], "sentences": ["x"], "fps": 29.4}}))
    with pytest.raises(DataError) as exc:
        read_tacos(tacos_dir / "annotations")
    msg = str(exc.value)
    assert str(path) in msg and "'s13-d21.avi'" in msg and "num_frames" in msg


def test_bad_timestamps_sentences_mismatch(tacos_dir):
    path = _bad(tacos_dir, json.dumps({"s13-d21.avi": {"timestamps": [[1, 2], [3, 4]], "sentences": ["x"], "fps": 29.4, "num_frames": 100}}))
    with pytest.raises(DataError) as exc:
        read_tacos(tacos_dir / "annotations")
    assert str(path) in str(exc.value) and "'s13-d21.avi'" in str(exc.value)


def test_bad_timestamp_pair(tacos_dir):
    path = _bad(tacos_dir, json.dumps({"s13-d21.avi": {"timestamps": [[1, 2], [3]], "sentences": ["x", "y"], "fps": 29.4, "num_frames": 100}}))
    with pytest.raises(DataError) as exc:
        read_tacos(tacos_dir / "annotations")
    assert str(path) in str(exc.value) and "'s13-d21.avi_0001'" in str(exc.value)


def test_bad_missing_h5_dataset(tacos_dir):
    with h5py.File(tacos_dir / "features" / "tall_c3d_features.hdf5", "a") as f:
        del f["s27-d50.avi"]
    ds = GroundingDataset.from_config(tacos_config(tacos_dir))
    with pytest.raises(DataError) as exc:
        ds.load_video_features("s27-d50.avi")
    assert "tall_c3d_features.hdf5" in str(exc.value) and "'s27-d50.avi'" in str(exc.value)


def test_bad_wrong_dimension(tacos_dir):
    ds = GroundingDataset.from_config(tacos_config(tacos_dir, features={"fps": 29.4, "clip_size": 16, "clip_stride": 4, "downsample_rate": 4, "video_dim": 4096}))
    with pytest.raises(DataError) as exc:
        ds.load_video_features("s13-d21.avi")
    assert "tall_c3d_features.hdf5" in str(exc.value) and "'s13-d21.avi'" in str(exc.value) and "4096" in str(exc.value)


def test_bad_nan_features(tacos_dir):
    with h5py.File(tacos_dir / "features" / "tall_c3d_features.hdf5", "a") as f:
        f["s13-d21.avi"][3, 2] = np.nan
    ds = GroundingDataset.from_config(tacos_config(tacos_dir))
    with pytest.raises(DataError) as exc:
        ds.load_video_features("s13-d21.avi")
    assert "tall_c3d_features.hdf5" in str(exc.value) and "'s13-d21.avi'" in str(exc.value) and "NaN" in str(exc.value)


def test_bad_glove_missing(tacos_dir):
    (tacos_dir / "glove.6B.300d.txt").unlink()
    with pytest.raises(DataError) as exc:
        GroundingDataset.from_config(tacos_config(tacos_dir))
    assert "glove.6B.300d.txt" in str(exc.value) and "never downloaded" in str(exc.value)


def test_bad_glove_not_utf8_names_the_path_and_line(tacos_dir):
    path = tacos_dir / "glove.6B.300d.txt"
    lines = path.read_bytes().splitlines(keepends=True)
    lines[2] = b"caf\xe9 0.1 0.1 0.1 0.1 0.1\n"  # latin-1, not UTF-8
    path.write_bytes(b"".join(lines))
    with pytest.raises(DataError) as exc:
        GroundingDataset.from_config(tacos_config(tacos_dir))
    assert str(path) in str(exc.value) and "line 3: not UTF-8" in str(exc.value)


def test_glove_reads_crlf_lines(tmp_path):
    p = tmp_path / "g.txt"
    p.write_bytes(b"a 1 2 3\r\nb 4 5 6\r\n")
    g = GloVe(p)
    assert g.dim == 3 and g.vectors["b"].tolist() == [4, 5, 6]
