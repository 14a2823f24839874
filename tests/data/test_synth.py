"""The synthetic benchmark (`hieramamba data synth`): formats, determinism, statistics, planted
structure, learnability, and the round trip through the readers. Smoke scale only (seconds)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from hieramamba.data import synth
from hieramamba.data.synth import baseline
from hieramamba.data.synth.spec import LIKES, SPECS, get_spec, window_seconds
from hieramamba.data.synth.world import World, num_features, plan_video, tokenize

SEED = 0


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> dict[str, Path]:
    """Each format at smoke scale, seed 0 (generated once for the module)."""
    base = tmp_path_factory.mktemp("synth")
    out = {}
    for like in LIKES:
        out[like] = base / like
        assert synth.main(["--like", like, "--scale", "smoke", "--seed", str(SEED), "--out", str(out[like])]) == 0
    return out


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _json(path: Path):
    return json.loads(path.read_text())


def _truth(root: Path) -> dict:
    return _json(root / "synth_truth.json")


# ----------------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("like", LIKES)
def test_same_seed_same_bytes_other_seed_differs(like, generated, tmp_path):
    again = tmp_path / "again"
    other = tmp_path / "other"
    synth.generate(like, "smoke", SEED, again)
    synth.generate(like, "smoke", SEED + 1, other)
    a, b, c = _files(generated[like]), _files(again), _files(other)
    assert sorted(a) == sorted(b)
    differing = [k for k in a if a[k] != b[k]]
    assert differing == [], f"not byte-identical for the same seed: {differing[:5]}"
    common = set(a) & set(c)
    assert any(a[k] != c[k] for k in common if k.startswith("annotations/"))
    assert a["query_kinds.json"] != c["query_kinds.json"] or a["synth_truth.json"] != c["synth_truth.json"]


def test_cli_refuses_non_empty_out_unless_overwrite(tmp_path, capsys):
    out = tmp_path / "d"
    out.mkdir()
    (out / "keep.txt").write_text("user file")
    args = ["--like", "tacos", "--scale", "smoke", "--seed", "3", "--out", str(out)]
    assert synth.main(args) == 2
    assert "not empty" in capsys.readouterr().err
    assert synth.main(args + ["--overwrite"]) == 0
    assert (out / "keep.txt").read_text() == "user file"  # only the generator's own paths are replaced
    assert synth.main(["synth"] + args + ["--overwrite"]) == 0  # the sub-command name is tolerated


def test_top_level_cli_delegates(tmp_path):
    from hieramamba.cli import main as cli_main

    out = tmp_path / "t"
    assert cli_main(["data", "synth", "--like", "mad", "--scale", "smoke", "--seed", "1", "--out", str(out)]) == 0
    m = _json(out / "synth_manifest.json")
    assert (m["like"], m["scale"], m["seed"]) == ("mad", "smoke", 1)


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="--like"):
        get_spec("charades", "smoke")
    with pytest.raises(SystemExit):
        synth.main(["--like", "tacos", "--scale", "huge", "--out", "x"])


# ----------------------------------------------------------------------------------- layouts


def test_ego4d_layout(generated):
    root = generated["ego4d_nlq"]
    spec = get_spec("ego4d_nlq", "smoke")
    kinds = _json(root / "query_kinds.json")
    seen = set()
    for split, fname in (("train", "nlq_train.json"), ("val", "nlq_val.json"), ("test", "nlq_test_unannotated.json")):
        doc = _json(root / "annotations" / fname)
        assert {"version", "date", "description", "manifest", "videos"} <= set(doc)
        n_clips = 0
        for video in doc["videos"]:
            assert video["split"] == split and len(video["video_uid"]) == 36
            for clip in video["clips"]:
                n_clips += 1
                for key in ("clip_uid", "source_clip_uid", "video_start_sec", "video_end_sec", "video_start_frame",
                            "video_end_frame", "clip_start_sec", "clip_end_sec", "clip_start_frame", "clip_end_frame"):
                    assert key in clip, key
                d = clip["clip_end_sec"]
                assert clip["clip_start_sec"] == 0 and clip["clip_end_frame"] == round(d * 30)
                assert math.isclose(clip["video_end_sec"] - clip["video_start_sec"], d, abs_tol=1e-6)
                feats = torch.load(root / "features" / "video" / f"{clip['clip_uid']}.pt")
                assert feats.dtype == torch.float32 and feats.is_contiguous()
                assert feats.shape == (int(d * 1.875) + 1, spec.video_dim)
                for ann in clip["annotations"]:
                    for qi, lq in enumerate(ann["language_queries"]):
                        qid = f"{clip['clip_uid']}_{ann['annotation_uid']}_{qi}"
                        seen.add(qid)
                        assert kinds[qid] in ("plain", "long_range")
                        tok = torch.load(root / "features" / "text" / f"{qid}.pt")
                        assert tok.dtype == torch.float32 and tok.shape == (len(tokenize(lq["query"])), spec.text_dim)
                        if split == "test":
                            assert set(lq) == {"query"}  # unannotated: query only
                            continue
                        for key in ("clip_start_sec", "clip_end_sec", "video_start_sec", "video_end_sec",
                                    "video_start_frame", "video_end_frame", "template", "query", "slot_x",
                                    "verb_x", "raw_tags"):
                            assert key in lq, key
                        assert 0 <= lq["clip_start_sec"] < lq["clip_end_sec"] <= d
                        assert math.isclose(lq["video_start_sec"], lq["clip_start_sec"] + clip["video_start_sec"], abs_tol=1e-6)
                        assert lq["raw_tags"] == [lq["template"], lq["query"], lq["slot_x"], lq["verb_x"]]
                        which = lq["query"].endswith((" again?", " for the first time?"))
                        assert which == (kinds[qid] == "long_range")
        assert n_clips == spec.splits[split]
    assert seen == set(kinds)
    assert len(list((root / "features" / "text").glob("*.pt"))) == len(kinds)


def test_mad_layout(generated):
    root = generated["mad"]
    spec = get_spec("mad", "smoke")
    kinds = _json(root / "query_kinds.json")
    frames = h5py.File(root / "features" / "CLIP_B32_frames_features_5fps.h5", "r")
    tokens = h5py.File(root / "features" / "CLIP_B32_language_tokens_features.h5", "r")
    all_ids, movies = set(), {}
    for split in ("train", "val", "test"):
        doc = _json(root / "annotations" / f"MAD_{split}.json")
        split_movies = set()
        for ann_id, e in doc.items():
            assert ann_id.isdigit() and ann_id not in all_ids
            all_ids.add(ann_id)
            assert set(e) == {"movie", "sentence", "timestamps", "ext_timestamps", "movie_duration"}
            split_movies.add(e["movie"])
            movies.setdefault(e["movie"], e["movie_duration"])
            assert movies[e["movie"]] == e["movie_duration"]
            s, t = e["ext_timestamps"]
            assert 0 <= s < t <= e["movie_duration"]
            a, b = e["timestamps"]
            assert s <= a < b <= t
            tok = tokens[ann_id]
            assert tok.dtype == np.float32 and tok.shape == (len(tokenize(e["sentence"])), spec.text_dim)
            assert kinds[ann_id] in ("plain", "long_range")
        assert len(split_movies) == spec.splits[split]
        for m in split_movies:
            if split == "train":
                assert m.isdigit()
            else:
                assert m[:4].isdigit() and m[4] == "_" and len(m) > 5
    assert set(kinds) == all_ids == set(tokens.keys())
    assert set(frames.keys()) == set(movies)
    for m, d in movies.items():
        assert frames[m].dtype == np.float32 and frames[m].shape == (math.floor(d * 5), spec.video_dim)
    frames.close()
    tokens.close()


def test_tacos_layout(generated):
    root = generated["tacos"]
    spec = get_spec("tacos", "smoke")
    kinds = _json(root / "query_kinds.json")
    glove = {}
    for line in (root / "glove.6B.300d.txt").read_text().splitlines():
        word, *vals = line.split(" ")
        glove[word] = np.array([float(v) for v in vals])
        assert len(vals) == spec.text_dim
    feats = h5py.File(root / "features" / "tall_c3d_features.hdf5", "r")
    keys = set()
    for split in ("train", "val", "test"):
        doc = _json(root / "annotations" / f"{split}.json")
        assert len(doc) == spec.splits[split]
        for key, v in doc.items():
            keys.add(key)
            assert key.endswith(".avi") and set(v) == {"timestamps", "sentences", "fps", "num_frames"}
            assert v["fps"] == 29.4 and isinstance(v["num_frames"], int)
            assert len(v["timestamps"]) == len(v["sentences"])
            for i, ((s, e), sent) in enumerate(zip(v["timestamps"], v["sentences"])):
                assert isinstance(s, int) and isinstance(e, int) and 0 <= s < e <= v["num_frames"]
                assert all(w in glove for w in tokenize(sent))
                assert kinds[f"{key}_{i:04d}"] in ("plain", "long_range")
            assert feats[key].dtype == np.float32 and feats[key].shape == (v["num_frames"] // 16, spec.video_dim)
    assert set(feats.keys()) == keys
    assert len(kinds) == sum(len(_json(root / "annotations" / f"{s}.json")[k]["sentences"])
                             for s in ("train", "val", "test") for k in _json(root / "annotations" / f"{s}.json"))
    feats.close()


@pytest.mark.parametrize("like", LIKES)
def test_manifest(like, generated):
    m = _json(generated[like] / "synth_manifest.json")
    spec = get_spec(like, "smoke")
    assert (m["like"], m["scale"], m["seed"], m["version"]) == (like, "smoke", SEED, synth.GENERATOR_VERSION)
    assert m["dims"] == {"video": spec.video_dim, "text": spec.text_dim}
    assert {s: c["videos"] for s, c in m["counts"].items()} == spec.splits
    kinds = _json(generated[like] / "query_kinds.json")
    assert sum(c["queries"] for c in m["counts"].values()) == len(kinds)
    assert sum(c["long_range"] for c in m["counts"].values()) == sum(k == "long_range" for k in kinds.values())
    for key in ("num_types", "noise", "drift", "far_gap_s", "moment", "duration", "long_range_structures"):
        assert key in m["planted"]


# ----------------------------------------------------------------------------------- statistics


@pytest.mark.parametrize("like", LIKES)
def test_long_range_fraction(like, generated):
    kinds = list(_json(generated[like] / "query_kinds.json").values())
    frac = kinds.count("long_range") / len(kinds)
    assert 0.22 <= frac <= 0.35, frac
    assert set(kinds) == {"plain", "long_range"}


@pytest.mark.parametrize("like,scale", sorted(SPECS))
def test_statistics_follow_the_spec(like, scale):
    """Many videos planned in memory (no features): lengths, moments, queries per video."""
    spec = get_spec(like, scale)
    world = World(spec, 5)
    rng = np.random.default_rng(11)
    videos = [plan_video(spec, world, rng) for _ in range(40)]
    dur = np.array([v.duration for v in videos])
    assert dur.min() >= spec.duration.lo - 0.1 and dur.max() <= spec.duration.hi + 0.1
    if spec.duration.p_fixed:
        assert abs(np.mean(np.isclose(dur, spec.duration.hi)) - spec.duration.p_fixed) < 0.2
    else:
        # the sample median of a log-normal: standard error ~1.25 sigma / sqrt(n) on the log scale
        assert abs(math.log(np.median(dur) / spec.duration.median)) < 0.05 + 3 * 1.25 * spec.duration.sigma / math.sqrt(len(dur))
    moments = np.array([e.end - e.start for v in videos for e in v.events])
    rel = np.array([(e.end - e.start) / v.duration for v in videos for e in v.events])
    assert 0.6 < np.median(moments) / spec.moment.median < 1.3
    assert rel.max() <= spec.max_moment_frac + 1e-3  # + quantisation to ms / frames
    # moments relative to the video: MAD tiny, Ego4D short, TACoS long (datasets.md §1-§3)
    bounds = {"mad": (0.003, 0.03), "ego4d_nlq": (0.01, 0.06), "tacos": (0.03, 0.15)}[like]
    assert bounds[0] < rel.mean() < bounds[1], rel.mean()
    # a video too short for every structure at the planted gap gets fewer; most hold them all
    per_video = [(spec.plain_queried + 2 * n) * spec.paraphrases for n in range(spec.long_range_structures + 1)]
    assert all(len(v.queries) in per_video for v in videos)
    assert np.mean([len(v.queries) == per_video[-1] for v in videos]) >= 0.6
    # feature length per format and rate
    fps = {"ego4d_nlq": 1.875, "mad": 5.0, "tacos": 29.4 / 16}[like]
    for v in videos:
        n = num_features(like, v.duration, v.num_frames)
        assert abs(n - v.duration * fps) <= 1.5
    if scale == "default":
        assert max(num_features(like, v.duration, v.num_frames) for v in videos) <= 3000


@pytest.mark.parametrize("like,scale", sorted(SPECS))
def test_planted_structure_is_exact(like, scale):
    """A long-range X occurs exactly twice, the two occurrences the far gap apart (other events may lie
    between) within the pair span; "first" names the earlier, "again" the later; plain targets unique."""
    spec = get_spec(like, scale)
    world = World(spec, 2)
    rng = np.random.default_rng(3)
    between = []  # events between the two X's of each long-range query
    for _ in range(15):
        v = plan_video(spec, world, rng)
        ev = v.events
        types = [e.type for e in ev]
        assert all(0 <= a.start < a.end <= v.duration for a in v.segments)
        assert all(a.end <= b.start for a, b in zip(ev, ev[1:]))
        assert math.isclose(v.segments[0].start, 0) and math.isclose(v.segments[-1].end, v.duration)
        for q in v.queries:
            assert types[q.target] == q.x_type
            words = tokenize(q.sentence)
            assert world.types[q.x_type].noun in words
            if q.kind == "plain":
                assert types.count(q.x_type) == 1 and "again" not in words and "first" not in words
                continue
            assert sorted(i for i, t in enumerate(types) if t == q.x_type) == sorted([q.target, q.other_event])
            assert ev[q.target].end - ev[q.target].start <= spec.x_max_s + 1e-6
            first, again = sorted([q.target, q.other_event])
            assert q.target == (first if q.which == "first" else again)
            assert ("again" in words) == (q.which == "again") and ("first" in words) == (q.which == "first")
            gap = ev[again].start - ev[first].end
            lo, hi = spec.far_gap_s
            assert lo - 1e-3 <= gap <= hi + 1e-3 and math.isclose(gap, q.distance, abs_tol=1e-3)
            assert ev[again].end - ev[first].start <= spec.max_pair_span_frac * v.duration + 1e-3
            between.append(again - first - 1)
    assert between and max(between) >= 1  # unlike generator 3.0, the gap is not only background


@pytest.mark.parametrize("like", LIKES)
def test_ground_truth_carries_the_signature(like, generated):
    """Features inside each planted event are closer to its type's signature than features outside."""
    root = generated[like]
    truth = _truth(root)
    sigs = np.array(truth["signatures"])
    read = baseline.FeatureReader(root, like)
    step, size = window_seconds(like)
    margins = []
    for split, videos in truth["videos"].items():
        for vid, v in videos.items():
            f = read(vid).astype(np.float64)
            assert len(f) == v["num_features"]
            f = f / np.linalg.norm(f, axis=1, keepdims=True)
            c = np.arange(len(f)) * step + 0.5 * size
            for s, e, ty in v["events"]:
                inside = (c >= s) & (c <= e)
                if inside.sum() < 2:
                    continue
                cos = f @ sigs[ty]
                margins.append(cos[inside].mean() - cos[~inside].mean())
    margins = np.array(margins)
    assert len(margins) > 20
    assert (margins > 0).mean() > 0.95 and np.median(margins) > 0.15, (np.median(margins), (margins > 0).mean())


@pytest.mark.parametrize("like", ["ego4d_nlq", "mad"])
def test_token_features_are_consistent_word_vectors(like, generated):
    """The same word has (nearly) the same token feature in every query; different words differ."""
    root = generated[like]
    truth = _truth(root)
    rows: dict[str, list[np.ndarray]] = {}
    if like == "mad":
        with h5py.File(root / "features" / "CLIP_B32_language_tokens_features.h5", "r") as f:
            for qid, q in truth["queries"].items():
                for w, r in zip(tokenize(q["sentence"]), f[qid][()]):
                    rows.setdefault(w, []).append(r)
    else:
        for qid, q in truth["queries"].items():
            tok = torch.load(root / "features" / "text" / f"{qid}.pt").numpy()
            for w, r in zip(tokenize(q["sentence"]), tok):
                rows.setdefault(w, []).append(r)
    means = {}
    for w, rs in rows.items():
        rs = np.array(rs)
        means[w] = rs.mean(0)
        assert np.all(np.linalg.norm(rs - means[w], axis=1) < 0.5)
    words = sorted(means)
    m = np.array([means[w] / np.linalg.norm(means[w]) for w in words])
    off = (m @ m.T)[~np.eye(len(words), dtype=bool)]
    assert off.max() < 0.9


# ----------------------------------------------------------------------------------- learnability


def test_learnable_and_long_range_is_harder(tmp_path):
    """A local per-word prototype matcher at `default` scale (thousands of queries; the smoke splits
    hold a few dozen): near perfect on plain queries, at chance (one of two identical candidates) on
    long-range ones, whose answer lies in the distant twin. Measured at generator 4.0: plain
    97.3 / 98.3 / 99.1 %, long-range 49.8 / 49.8 / 49.6 % (TACoS / Ego4D / MAD-like)."""
    for like in LIKES:
        root = tmp_path / like
        assert synth.main(["--like", like, "--scale", "default", "--seed", str(SEED), "--out", str(root)]) == 0
        r = baseline.run(root)["by_kind"]
        assert r["plain"]["R1@0.3"] >= 90.0 and r["plain"]["chance R1@0.3"] <= 20.0, (like, r["plain"])
        assert 40.0 <= r["long_range"]["R1@0.3"] <= 60.0 and r["long_range"]["n"] >= 400, (like, r["long_range"])


@pytest.mark.parametrize("mixer", ["local", "global"])
def test_probe_trains_and_reports_by_kind(mixer, generated):
    """The learned probe runs end to end on a released-format folder (accuracy: docs/synthetic.md)."""
    from hieramamba.data.synth import probe

    r = probe.run(generated["tacos"], mixer=mixer, epochs=1, d=16)
    assert r["mixer"] == mixer and set(r["by_kind"]) == {"plain", "long_range"}
    assert r["by_kind"]["plain"]["n"] + r["by_kind"]["long_range"]["n"] == 42
    for v in r["by_kind"].values():
        assert 0.0 <= v["R1@0.5"] <= v["R1@0.3"] <= 100.0


# ----------------------------------------------------------------------------------- readers


@pytest.mark.parametrize("like", LIKES)
def test_round_trip_through_the_readers(like, generated):
    """generate -> read with the package's reader (conf/dataset/synth_<like>.yaml) -> same content."""
    dataset_mod = pytest.importorskip("hieramamba.data.dataset")
    root = generated[like]
    truth = _truth(root)
    ds = dataset_mod.build_dataset(f"synth_{like}", overrides={"root": str(root)})
    m = _json(root / "synth_manifest.json")
    for split, counts in m["counts"].items():
        s = ds.split(split)
        assert len(s.videos) == counts["videos"]
        assert s.num_queries == counts["queries"]
    n = 0
    for split in ds.records.splits.values():
        for video in split.videos.values():
            tv = truth["videos"][split.name][video.video_id]
            assert math.isclose(video.duration, tv["duration"], abs_tol=1e-6)
            for q in video.queries:
                tq = truth["queries"][q.query_id]
                assert q.kind == tq["kind"] and q.video_id == tq["video"]
                assert q.sentence == tq["sentence"].strip()
                if q.segment is not None:
                    assert np.allclose(q.segment, tq["segment"], atol=1e-6)
                else:
                    assert split.name == "test" and like == "ego4d_nlq"
                n += 1
            stored = video.feature.shape()
            assert stored[0] == tv["num_features"]
            assert ds.load_text_features(video.queries[0]).shape[1] == m["dims"]["text"]
    assert n == len(truth["queries"])


@pytest.mark.parametrize("like", LIKES)
def test_default_scale_is_sized_for_evidence(like, tmp_path):
    """Issue 11: >= 2,000 evaluation queries per dataset, and videos spanning >= 4 of the dataset
    config's length bins (each holding >= 2 % of the evaluation queries, long-range ones included)."""
    import yaml

    m = synth.generate(like, "default", SEED, tmp_path / like)
    conf = yaml.safe_load((Path(synth.__file__).parents[2] / "conf" / "dataset" / f"synth_{like}.yaml").read_text())
    eval_split = conf["eval_split"]
    assert m["counts"][eval_split]["queries"] >= 2000, m["counts"]
    truth = _json(tmp_path / like / "synth_truth.json")
    edges = [float(e) for e in conf["length_bins"]]
    durations = {vid: v["duration"] for vid, v in truth["videos"][eval_split].items()}
    queries = [q for q in truth["queries"].values() if q["split"] == eval_split]
    bins = np.digitize([durations[q["video"]] for q in queries], edges[1:-1])
    counts = np.bincount(bins, minlength=len(edges) - 1)
    assert (counts >= 0.02 * len(queries)).sum() >= 4, counts
    long_range = np.bincount([b for b, q in zip(bins, queries) if q["kind"] == "long_range"], minlength=len(edges) - 1)
    assert (long_range > 0).sum() >= 3, long_range
