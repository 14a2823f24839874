"""Hand-made fixtures in each released format (all ids and values invented, tiny sizes)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import h5py
import numpy as np
import pytest

# ----------------------------------------------------------------------------------- Ego4D-NLQ
# The exact structure of datasets.md §1.2 (one video, one clip, one annotation, three queries:
# a normal one, a zero-length window, an empty query), plus a second video with two clips.
V1, V2 = "00000000-0000-4000-8000-000000000001", "00000000-0000-4000-8000-000000000002"
C1, C2, C3 = (
    "00000000-0000-4000-8000-000000000101",
    "00000000-0000-4000-8000-000000000102",
    "00000000-0000-4000-8000-000000000103",
)
A1, A2, A3, A4 = (
    "00000000-0000-4000-8000-000000000301",
    "00000000-0000-4000-8000-000000000302",
    "00000000-0000-4000-8000-000000000303",
    "00000000-0000-4000-8000-000000000304",
)
EGO_DIM, EGO_TEXT_DIM = 8, 6


def _lq(s, e, vstart, query, template="Objects: What did I put in X?", slot_x="red box", verb_x="put", **extra):
    q = {
        "clip_start_sec": s,
        "clip_end_sec": e,
        "video_start_sec": vstart + s,
        "video_end_sec": vstart + e,
        "video_start_frame": int((vstart + s) * 30),
        "video_end_frame": int((vstart + e) * 30),
        "template": template,
        "query": query,
        "slot_x": slot_x,
        "verb_x": verb_x,
    }
    q.update(extra)
    q["raw_tags"] = [template, query, slot_x, verb_x] + [extra[k] for k in ("slot_y", "verb_y") if k in extra]
    return q


def _clip(clip_uid, vstart, duration, annotations):
    return {
        "clip_uid": clip_uid,
        "video_start_sec": vstart,
        "video_end_sec": vstart + duration,
        "video_start_frame": int(round(vstart * 30)),
        "video_end_frame": int(round((vstart + duration) * 30)),
        "clip_start_sec": 0,
        "clip_end_sec": duration,
        "clip_start_frame": 0,
        "clip_end_frame": int(duration * 30),
        "source_clip_uid": clip_uid.replace("-0001", "-0002"),
        "annotations": annotations,
    }


def ego4d_train_json() -> dict:
    vs = 120.0210286
    clip1 = _clip(
        C1,
        vs,
        480.0,
        [
            {
                "language_queries": [
                    _lq(17.25, 27.5, vs, "what did I put in the red box?"),
                    _lq(
                        56.0, 56.0, vs, "where was the cup before I washed it ?",
                        template="Objects: Where is object X before / after event Y?", slot_x="cup",
                        verb_x="[verb_not_applicable]", slot_y="I washed it", verb_y="wash",
                    ),
                    _lq(300.5, 310.0, vs, "", template="Place: Where did I put X?", slot_x="keys"),
                ],
                "annotation_uid": A1,
            }
        ],
    )
    clip2 = _clip(C2, -4e-07, 60.0, [{"annotation_uid": A2, "language_queries": [_lq(1.0, 5.0, 0.0, "did I open the door? ")]}])
    clip3 = _clip(
        C3,
        60.0,
        40.0,
        [
            {"annotation_uid": A3, "language_queries": [_lq(2.0, 8.0, 60.0, "where is the knife")]},
            {"annotation_uid": A4, "language_queries": [_lq(30.0, 45.0, 60.0, "what did I cut")]},  # end past the clip
        ],
    )
    return {
        "version": "v2",
        "date": "000000",
        "description": "NLQ Annotations (train) - SYNTHETIC EXAMPLE",
        "manifest": "s3://example/manifest.csv",
        "videos": [
            {"video_uid": V1, "split": "train", "clips": [clip1]},
            {"video_uid": V2, "split": "train", "clips": [clip2, clip3]},
        ],
    }


def ego4d_test_json(train: dict) -> dict:
    out = copy.deepcopy(train)
    out["description"] = "NLQ Annotations (test) - SYNTHETIC EXAMPLE"
    for v in out["videos"]:
        v["split"] = "test"
        for c in v["clips"]:
            for a in c["annotations"]:
                a["language_queries"] = [{"query": "what did I pick up?"}, {"query": ""}]
    return out


def write_pt(path: Path, arr: np.ndarray) -> None:
    import torch

    torch.save(torch.from_numpy(np.ascontiguousarray(arr)), path)


@pytest.fixture
def ego4d_dir(tmp_path) -> Path:
    """DIR/annotations/nlq_*.json, DIR/features/video/<clip_uid>.pt, DIR/features/text/<qid>.pt|.npy."""
    root = tmp_path / "ego4d"
    (root / "annotations").mkdir(parents=True)
    train = ego4d_train_json()
    val = copy.deepcopy(train)
    val["description"] = "NLQ Annotations (val) - SYNTHETIC EXAMPLE"
    (root / "annotations" / "nlq_train.json").write_text(json.dumps(train, indent=1))
    (root / "annotations" / "nlq_val.json").write_text(json.dumps(val))
    (root / "annotations" / "nlq_test_unannotated.json").write_text(json.dumps(ego4d_test_json(train)))
    rng = np.random.default_rng(0)
    vdir, tdir = root / "features" / "video", root / "features" / "text"
    vdir.mkdir(parents=True)
    tdir.mkdir(parents=True)
    for v in train["videos"]:
        for c in v["clips"]:
            n = int(c["clip_end_sec"] * 1.875) + 1
            write_pt(vdir / f"{c['clip_uid']}.pt", rng.standard_normal((n, EGO_DIM)).astype(np.float32))
            for a in c["annotations"]:
                for qi in range(max(len(a["language_queries"]), 2)):
                    stem = f"{c['clip_uid']}_{a['annotation_uid']}_{qi}"
                    arr = rng.standard_normal((5, EGO_TEXT_DIM)).astype(np.float32)
                    if qi % 2:
                        np.save(tdir / f"{stem}.npy", arr)
                    else:
                        write_pt(tdir / f"{stem}.pt", arr)
    return root


def ego4d_config(root: Path, **extra) -> dict:
    cfg = {
        "name": "ego_fixture",
        "format": "ego4d_nlq",
        "root": str(root),
        "annotations": "${.root}/annotations",
        "video_features": "${.root}/features/video",
        "text_features": "${.root}/features/text",
        "features": {"fps": 30.0, "clip_size": 32, "clip_stride": 16, "downsample_rate": 1, "video_dim": EGO_DIM, "text_dim": EGO_TEXT_DIM},
        "eval_split": "val",
        "protocol": "snag",
    }
    cfg.update(extra)
    return cfg


# ----------------------------------------------------------------------------------- MAD
MAD_DIM = 12


def mad_jsons() -> dict[str, dict]:
    train = {
        "1050": {"movie": "10142", "sentence": "He enters a store called Smart Tech.", "timestamps": [162.5, 175.8], "ext_timestamps": [162.547, 175.809], "movie_duration": 200.0},
        "1051": {"movie": "10142", "sentence": "She smiles.\n", "timestamps": [10.0, 12.0], "ext_timestamps": [10.0, 12.0], "movie_duration": 200.0},
        "1052": {"movie": "10142", "sentence": "The door closes.", "timestamps": [50.0, 50.0], "ext_timestamps": [51.0, 50.0], "movie_duration": 200.0},
        "1053": {"movie": "10200", "sentence": "A car drives off.", "timestamps": [5.0, 9.0], "ext_timestamps": [5.0, 9.5], "movie_duration": 60.0},
    }
    val = {
        "2001": {"movie": "0001_American_Beauty", "sentence": "He jogs.", "timestamps": [3.0, 6.0], "ext_timestamps": [3.0, 6.0], "movie_duration": 30.0},
    }
    test = {
        "3001": {"movie": "0002_Another_Title", "sentence": "Rain falls.", "timestamps": [1.0, 4.0], "ext_timestamps": [1.0, 4.0], "movie_duration": 40.0},
        "3002": {"movie": "0002_Another_Title", "sentence": "It ends.", "timestamps": [38.0, 41.0], "ext_timestamps": [38.0, 41.0], "movie_duration": 40.0},
    }
    return {"train": train, "val": val, "test": test}


@pytest.fixture
def mad_dir(tmp_path) -> Path:
    root = tmp_path / "mad"
    (root / "annotations").mkdir(parents=True)
    (root / "features").mkdir()
    rng = np.random.default_rng(1)
    anns = mad_jsons()
    movies = {}
    for split, d in anns.items():
        (root / "annotations" / f"MAD_{split}.json").write_text(json.dumps(d))
        for e in d.values():
            movies[e["movie"]] = e["movie_duration"]
    with h5py.File(root / "features" / "CLIP_B32_frames_features_5fps.h5", "w") as f:
        for movie, dur in movies.items():
            n = int(dur * 5) - (20 if movie == "10200" else 0)  # one movie a few frames short... and one clearly short
            f.create_dataset(movie, data=rng.standard_normal((n, MAD_DIM)).astype(np.float32))
    with h5py.File(root / "features" / "CLIP_B32_language_tokens_features.h5", "w") as f:
        for d in anns.values():
            for ann_id in d:
                f.create_dataset(ann_id, data=rng.standard_normal((7, MAD_DIM)).astype(np.float32))
    return root


def mad_config(root: Path, **extra) -> dict:
    cfg = {
        "name": "mad_fixture",
        "format": "mad",
        "root": str(root),
        "annotations": "${.root}/annotations",
        "video_features": "${.root}/features/CLIP_B32_frames_features_5fps.h5",
        "text_features": "${.root}/features/CLIP_B32_language_tokens_features.h5",
        "features": {"fps": 5.0, "clip_size": 1, "clip_stride": 1, "downsample_rate": 1, "video_dim": MAD_DIM, "text_dim": MAD_DIM},
        "eval_split": "test",
    }
    cfg.update(extra)
    return cfg


# ----------------------------------------------------------------------------------- TACoS
TACOS_DIM, GLOVE_DIM = 16, 5


def tacos_jsons() -> dict[str, dict]:
    """Two videos per split in the 2D-TAN layout, one end past num_frames, one exact duplicate."""
    train = {
        "s13-d21.avi": {"timestamps": [[141, 354], [400, 700], [141, 354]], "sentences": ["She took out kiwi", " He washed the kiwi ", "She took out kiwi"], "fps": 29.4, "num_frames": 2000},
        "s27-d50.avi": {"timestamps": [[11, 300], [1400, 1530]], "sentences": ["He took out a glass", "He rinsed it"], "fps": 29.4, "num_frames": 1500},
    }
    val = {"s30-d52.avi": {"timestamps": [[20, 100]], "sentences": ["He cut the leek"], "fps": 29.4, "num_frames": 900}}
    test = {"s31-d28.avi": {"timestamps": [[30, 400], [500, 800]], "sentences": ["She peeled an orange", "She ate it"], "fps": 29.4, "num_frames": 1200}}
    return {"train": train, "val": val, "test": test}


def tacos_num_feats(num_frames: int) -> int:
    return (num_frames - 16) // 4 + 1  # C3D: 16-frame clips every 4 frames (stored, before down-sampling)


GLOVE_WORDS = ["she", "took", "out", "kiwi", "he", "washed", "the", "a", "glass", "rinsed", "it", "cut", "peeled", "orange", "ate"]


@pytest.fixture
def tacos_dir(tmp_path) -> Path:
    root = tmp_path / "tacos"
    (root / "annotations").mkdir(parents=True)
    (root / "features").mkdir()
    rng = np.random.default_rng(2)
    with h5py.File(root / "features" / "tall_c3d_features.hdf5", "w") as f:
        for split, d in tacos_jsons().items():
            (root / "annotations" / f"{split}.json").write_text(json.dumps(d))
            for key, v in d.items():
                f.create_dataset(key, data=rng.standard_normal((tacos_num_feats(v["num_frames"]), TACOS_DIM)).astype(np.float32))
    lines = []
    for i, w in enumerate(GLOVE_WORDS):  # "leek" is deliberately unknown
        vec = np.full(GLOVE_DIM, i + 1, dtype=np.float32) / 10
        lines.append(w + " " + " ".join(f"{x:.4f}" for x in vec))
    (root / "glove.6B.300d.txt").write_text("\n".join(lines) + "\n")
    return root


def tacos_config(root: Path, **extra) -> dict:
    cfg = {
        "name": "tacos_fixture",
        "format": "tacos",
        "root": str(root),
        "annotations": "${.root}/annotations",
        "video_features": "${.root}/features/tall_c3d_features.hdf5",
        "glove": "${.root}/glove.6B.300d.txt",
        "features": {"fps": 29.4, "clip_size": 16, "clip_stride": 4, "downsample_rate": 4, "video_dim": TACOS_DIM, "text_dim": GLOVE_DIM},
        "eval_split": "test",
    }
    cfg.update(extra)
    return cfg


# ----------------------------------------------------------------------------------- SnAG format
SNAG_DIM, SNAG_TEXT_DIM = 10, 4


def snag_json() -> dict:
    return {
        "train": {
            "vidA": {"fps": 30.0, "num_frames": 3000, "duration": 100.0, "num_clips": 371, "annotations": [
                {"segment": [1.0, 10.0], "sentence": "first thing ", "sentence_id": "vidA_s0"},
                {"segment": [20.0, 20.0], "sentence": "zero length", "sentence_id": "vidA_s1"},
                {"segment": [90.0, 120.0], "sentence": "runs past the end", "sentence_id": "vidA_s2"},
            ]},
            "vidB": {"fps": 30.0, "num_frames": 1500, "annotations": [{"segment": [0.0, 5.0], "sentence": "no duration, no num_clips"}]},
            "vidC": {"fps": 30.0, "num_frames": 300, "duration": 10.0},  # no annotations: skipped
        },
        "test": {
            "vidD": {"fps": 30.0, "duration": 50.0, "num_frames": 1500, "annotations": [{"segment": [5.0, 15.0], "sentence": "test query"}]},
        },
    }


@pytest.fixture
def snag_dir(tmp_path) -> Path:
    root = tmp_path / "snag"
    (root / "video").mkdir(parents=True)
    (root / "text").mkdir()
    anno = snag_json()
    (root / "snag.json").write_text(json.dumps(anno))
    rng = np.random.default_rng(3)
    for split in anno.values():
        for vid, v in split.items():
            dur = v.get("duration", v["num_frames"] / v["fps"])
            n = int(dur * 30 / 8)
            arr = rng.standard_normal((n, SNAG_DIM)).astype(np.float32)
            if vid == "vidB":
                write_pt(root / "video" / f"{vid}.pt", arr)
            else:
                np.save(root / "video" / f"{vid}.npy", arr)
            for i, a in enumerate(v.get("annotations", [])):
                sid = a.get("sentence_id", f"{vid}_{i:04d}")
                np.save(root / "text" / f"{sid}.npy", rng.standard_normal((3, SNAG_TEXT_DIM)).astype(np.float32))
    return root


def snag_config(root: Path, **extra) -> dict:
    cfg = {
        "name": "snag_fixture",
        "format": "snag",
        "root": str(root),
        "annotations": "${.root}/snag.json",
        "video_features": "${.root}/video",
        "text_features": "${.root}/text",
        "features": {"fps": 30.0, "clip_size": 32, "clip_stride": 8, "downsample_rate": 2, "video_dim": SNAG_DIM, "text_dim": SNAG_TEXT_DIM},
        "splits": {"train": "train", "test": "test"},
        "eval_split": "test",
    }
    cfg.update(extra)
    return cfg
