"""Writers: one synthetic dataset in the raw released format of Ego4D-NLQ, MAD or TACoS.

Every file is a deterministic function of (like, scale, seed): JSON with sorted keys, h5 datasets
created in sorted order without timestamps, `torch.save` of contiguous float32 tensors (the zip
records carry no dates). Random streams are keyed by (seed, like, purpose, split, video) so one
video's content never depends on how many random numbers another video drew.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from hieramamba.data.synth.spec import SynthSpec
from hieramamba.data.synth.world import LIKE_IDS, LONG_RANGE, TACOS_FPS, PlantedVideo, World, plan_video, \
    render_features, tokenize

SPLIT_ORDER = ("train", "val", "test")


def write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, sort_keys=True, ensure_ascii=True) + "\n", encoding="utf-8")


def _rng(world: World, *key: int) -> np.random.Generator:
    return np.random.default_rng([world.seed, LIKE_IDS[world.spec.like], *key])


def _uuid4(rng: np.random.Generator) -> str:
    return str(uuid.UUID(bytes=rng.bytes(16), version=4))


def _video(world: World, split_idx: int, idx: int) -> tuple[PlantedVideo, np.ndarray]:
    """Plan and render the idx-th video of a split (independent streams for layout and features)."""
    video = plan_video(world.spec, world, _rng(world, 1, split_idx, idx, 0))
    feats = render_features(world.spec, world, video, _rng(world, 1, split_idx, idx, 1))
    return video, feats


def _truth_video(video: PlantedVideo) -> dict:
    return {
        "duration": video.duration,
        "num_frames": video.num_frames,
        "events": [[g.start, g.end, g.type] for g in video.segments if g.is_event],
        "background": [[g.start, g.end, g.type] for g in video.segments if not g.is_event],
    }


def _truth_query(video: PlantedVideo, q, video_id: str, split: str) -> dict:
    ev = video.events
    out = {"video": video_id, "split": split, "kind": q.kind, "sentence": q.sentence,
           "segment": [ev[q.target].start, ev[q.target].end], "x_type": q.x_type, "paraphrase": q.paraphrase}
    if q.kind == LONG_RANGE:
        out.update({"which": q.which, "other_segment": [ev[q.other_event].start, ev[q.other_event].end],
                    "distance": q.distance})
    return out


class Output:
    """Collects query kinds and ground truth while a writer runs; files go under `root`."""

    def __init__(self, root: Path):
        self.root = root
        self.kinds: dict[str, str] = {}
        self.truth_videos: dict[str, dict[str, dict]] = {}
        self.truth_queries: dict[str, dict] = {}
        self.counts: dict[str, dict[str, int]] = {}

    def add_video(self, split: str, video_id: str, video: PlantedVideo, num_features: int) -> None:
        rec = _truth_video(video)
        rec["num_features"] = int(num_features)
        self.truth_videos.setdefault(split, {})[video_id] = rec
        c = self.counts.setdefault(split, {"videos": 0, "queries": 0, "long_range": 0, "plain": 0})
        c["videos"] += 1

    def add_query(self, split: str, qid: str, video_id: str, video: PlantedVideo, q) -> None:
        if qid in self.kinds:
            raise RuntimeError(f"duplicate synthetic query id {qid}")
        self.kinds[qid] = q.kind
        self.truth_queries[qid] = _truth_query(video, q, video_id, split)
        c = self.counts[split]
        c["queries"] += 1
        c[q.kind] += 1


# ----------------------------------------------------------------------------------- Ego4D-NLQ

EGO4D_FILES = {"train": "nlq_train.json", "val": "nlq_val.json", "test": "nlq_test_unannotated.json"}


def write_ego4d(world: World, out: Output) -> list[str]:
    import torch

    spec = world.spec
    vdir, tdir = out.root / "features" / "video", out.root / "features" / "text"
    vdir.mkdir(parents=True, exist_ok=True)
    tdir.mkdir(parents=True, exist_ok=True)
    for si, split in enumerate(SPLIT_ORDER):
        n_clips = spec.splits[split]
        videos_json: list[dict] = []
        clip_idx = 0
        vi = 0
        while clip_idx < n_clips:
            vr = _rng(world, 2, si, vi)
            k = int(vr.integers(spec.clips_per_video[0], spec.clips_per_video[1] + 1))
            k = min(k, n_clips - clip_idx)
            video_uid = _uuid4(vr)
            offset = round(float(vr.uniform(0.0, 600.0)), 7)  # clip start inside the canonical video
            clips = []
            for _ in range(k):
                video, feats = _video(world, si, clip_idx)
                ir = _rng(world, 3, si, clip_idx)
                clip_uid, source_uid = _uuid4(ir), _uuid4(ir)
                out.add_video(split, clip_uid, video, feats.shape[0])
                torch.save(torch.from_numpy(feats).contiguous(), vdir / f"{clip_uid}.pt")
                clips.append(_ego4d_clip(world, out, split, si, clip_idx, clip_uid, source_uid, offset, video, ir, tdir))
                offset = round(offset + video.duration + float(ir.uniform(0.0, 300.0)), 7)
                clip_idx += 1
            videos_json.append({"video_uid": video_uid, "split": split, "clips": clips})
            vi += 1
        doc = {"version": "v2", "date": "000000", "manifest": "synthetic (hieramamba data synth)",
               "description": f"NLQ Annotations ({split}) - SYNTHETIC (hieramamba data synth, seed {world.seed})",
               "videos": videos_json}
        write_json(out.root / "annotations" / EGO4D_FILES[split], doc)
    return [f"annotations/{f}" for f in EGO4D_FILES.values()] + ["features/video/", "features/text/"]


def _ego4d_clip(world, out, split, si, clip_idx, clip_uid, source_uid, offset, video, ir, tdir) -> dict:
    import torch

    events = video.events
    order = [int(i) for i in ir.permutation(len(video.queries))]
    n_ann = 1 if len(order) <= 4 else int(ir.integers(1, 3))
    cuts = np.array_split(np.array(order, dtype=int), n_ann)
    annotations = []
    text_rng = _rng(world, 4, si, clip_idx)
    for part in cuts:
        ann_uid = _uuid4(ir)
        lqs = []
        for qi, q_index in enumerate(part.tolist()):
            q = video.queries[q_index]
            qid = f"{clip_uid}_{ann_uid}_{qi}"
            if split == "test":
                lqs.append({"query": q.sentence})
            else:
                s, e = events[q.target].start, events[q.target].end
                vs, ve = round(s + offset, 7), round(e + offset, 7)
                lq = {"clip_start_sec": s, "clip_end_sec": e, "video_start_sec": vs, "video_end_sec": ve,
                      "video_start_frame": int(round(vs * 30)), "video_end_frame": int(round(ve * 30)),
                      "query": q.sentence}
                lq.update(q.extra)
                lqs.append(lq)
            tok = world.token_features(q.sentence, text_rng)
            torch.save(torch.from_numpy(tok).contiguous(), tdir / f"{qid}.pt")
            out.add_query(split, qid, clip_uid, video, q)
        annotations.append({"annotation_uid": ann_uid, "language_queries": lqs})
    d = video.duration
    return {
        "clip_uid": clip_uid, "source_clip_uid": source_uid,
        "video_start_sec": offset, "video_end_sec": round(offset + d, 7),
        "video_start_frame": int(round(offset * 30)), "video_end_frame": int(round((offset + d) * 30)),
        "clip_start_sec": 0, "clip_end_sec": d, "clip_start_frame": 0, "clip_end_frame": int(round(d * 30)),
        "annotations": annotations,
    }


# ----------------------------------------------------------------------------------- MAD

MAD_FILES = {"train": "MAD_train.json", "val": "MAD_val.json", "test": "MAD_test.json"}
MAD_FRAMES_H5 = "features/CLIP_B32_frames_features_5fps.h5"
MAD_TOKENS_H5 = "features/CLIP_B32_language_tokens_features.h5"
_TITLE_WORDS = ("Red", "Silent", "Last", "Golden", "Broken", "Hidden", "Long", "Dark", "Blue", "Lost",
                "Night", "River", "House", "Road", "Garden", "Letter", "Winter", "Summer", "City", "Stranger")


def _h5_write(path: Path, arrays: dict[str, np.ndarray]) -> None:
    import h5py

    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        for key in sorted(arrays):
            f.create_dataset(key, data=np.ascontiguousarray(arrays[key], dtype=np.float32), track_times=False)


def write_mad(world: World, out: Output) -> list[str]:
    spec = world.spec
    ids = _rng(world, 5)
    n_train = spec.splits["train"]
    train_ids = [str(int(x)) for x in ids.choice(np.arange(10000, 99999), size=n_train, replace=False)]
    lsmdc_start = int(ids.integers(1, 3000))
    next_ann = int(ids.integers(1000, 5000))
    frames: dict[str, np.ndarray] = {}
    tokens: dict[str, np.ndarray] = {}
    lsmdc_n = 0
    for si, split in enumerate(SPLIT_ORDER):
        entries: dict[str, dict] = {}
        for vi in range(spec.splits[split]):
            video, feats = _video(world, si, vi)
            if split == "train":
                movie = train_ids[vi]
            else:
                tr = _rng(world, 6, si, vi)
                words = [_TITLE_WORDS[int(i)] for i in tr.choice(len(_TITLE_WORDS), size=2, replace=False)]
                movie = f"{lsmdc_start + lsmdc_n:04d}_{'_'.join(words)}"
                lsmdc_n += 1
            frames[movie] = feats
            out.add_video(split, movie, video, feats.shape[0])
            text_rng = _rng(world, 4, si, vi)
            jr = _rng(world, 7, si, vi)
            events = video.events
            for q in video.queries:
                ann = str(next_ann)
                next_ann += 1
                s, e = events[q.target].start, events[q.target].end
                ts = [s, e]
                if jr.random() < 0.3:  # original AD alignment, before the extension MAD's GT uses
                    cut = (e - s) * jr.uniform(0.0, 0.25, size=2)
                    ts = [round(s + float(cut[0]), 3), round(e - float(cut[1]), 3)]
                entries[ann] = {"movie": movie, "sentence": q.sentence, "timestamps": ts,
                                "ext_timestamps": [s, e], "movie_duration": video.duration}
                tokens[ann] = world.token_features(q.sentence, text_rng)
                out.add_query(split, ann, movie, video, q)
        write_json(out.root / "annotations" / MAD_FILES[split], entries)
    _h5_write(out.root / MAD_FRAMES_H5, frames)
    _h5_write(out.root / MAD_TOKENS_H5, tokens)
    return [f"annotations/{f}" for f in MAD_FILES.values()] + [MAD_FRAMES_H5, MAD_TOKENS_H5]


# ----------------------------------------------------------------------------------- TACoS

TACOS_FILES = {"train": "train.json", "val": "val.json", "test": "test.json"}
TACOS_H5 = "features/tall_c3d_features.hdf5"
GLOVE_FILE = "glove.6B.300d.txt"


def write_tacos(world: World, out: Output) -> list[str]:
    spec = world.spec
    ids = _rng(world, 5)
    n_all = sum(spec.splits.values())
    pairs = ids.choice(40 * 80, size=n_all, replace=False)
    keys = [f"s{10 + int(p) // 80:02d}-d{1 + int(p) % 80:02d}.avi" for p in pairs]
    feats_all: dict[str, np.ndarray] = {}
    words: set[str] = set()
    n = 0
    for si, split in enumerate(SPLIT_ORDER):
        doc: dict[str, dict] = {}
        for vi in range(spec.splits[split]):
            video, feats = _video(world, si, vi)
            key = keys[n]
            n += 1
            feats_all[key] = feats
            out.add_video(split, key, video, feats.shape[0])
            events = video.events
            # one "annotator pass" per paraphrase, each describing its events in time order
            order = sorted(range(len(video.queries)),
                           key=lambda i: (video.queries[i].paraphrase, events[video.queries[i].target].start, i))
            stamps, sents = [], []
            for idx, qi in enumerate(order):
                q = video.queries[qi]
                g = events[q.target]
                sf, ef = int(round(g.start * TACOS_FPS)), int(round(g.end * TACOS_FPS))
                assert 0 <= sf < ef <= video.num_frames
                stamps.append([sf, ef])
                sents.append(q.sentence)
                words.update(tokenize(q.sentence))
                out.add_query(split, f"{key}_{idx:04d}", key, video, q)
            doc[key] = {"timestamps": stamps, "sentences": sents, "fps": TACOS_FPS, "num_frames": video.num_frames}
        write_json(out.root / "annotations" / TACOS_FILES[split], doc)
    _h5_write(out.root / TACOS_H5, feats_all)
    lines = [w + " " + " ".join(f"{v:.6f}" for v in world.word_vector(w)) for w in sorted(words)]
    (out.root / GLOVE_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return [f"annotations/{f}" for f in TACOS_FILES.values()] + [TACOS_H5, GLOVE_FILE]


WRITERS = {"ego4d_nlq": write_ego4d, "mad": write_mad, "tacos": write_tacos}


def spec_summary(spec: SynthSpec) -> dict:
    d = spec.as_dict()
    for k in ("like", "scale", "splits", "video_dim", "text_dim"):
        d.pop(k)
    return d
