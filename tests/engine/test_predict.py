"""`hieramamba.predict` on a smoke run of the synthetic TACoS data: the answers equal what the
evaluation wrote to predictions.json, long videos go through whole, every feature layout gives the
same answer, top-k, GloVe and token-feature queries, and one clear error per kind of bad input.
Model sources (authors' checkpoint, unknown layouts): test_loading.py; the CLI: test_predict_cli.py."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch

import hieramamba
from hieramamba.data.dataset import GroundingDataset
from hieramamba.engine.loading import load_model
from hieramamba.engine.predict import predict
from hieramamba.errors import ConfigError, DataError

pytestmark = pytest.mark.slow

ATOL = 1e-4  # seconds and scores: the evaluation batches a video's queries, float sums differ by ~1e-6


@pytest.fixture(scope="module")
def setup(synth_tacos_run):
    data_root, run_dir = synth_tacos_run
    data = GroundingDataset.from_config("synth_tacos", data_root=data_root)
    h5 = data_root / "synth" / "synth_tacos" / "features" / "tall_c3d_features.hdf5"
    return {"run": run_dir, "data": data, "h5": h5, "model": load_model(run_dir),
            "evaluated": json.loads((run_dir / "predictions.json").read_text())["results"]}


def as_array(rows) -> np.ndarray:
    return np.asarray(rows, dtype=np.float64).reshape(-1, 3)


def test_predictions_equal_what_evaluate_wrote(setup):
    """Every evaluated test query, asked through predict (one call per video, its h5 dataset and
    its annotated duration), gets the segments (seconds) and scores of predictions.json."""
    data, evaluated = setup["data"], setup["evaluated"]
    by_video: dict[str, list[dict]] = {}
    for r in evaluated:
        by_video.setdefault(r["video_id"], []).append(r)
    assert len(evaluated) > 10 and len(by_video) > 1
    split = data.split("test")
    for video_id, results in by_video.items():
        video = data.video(video_id, "test")
        queries = [{"query": split.query(r["query_id"]).sentence, "query_id": r["query_id"]} for r in results]
        got = predict(setup["model"], setup["h5"], queries, video_key=video_id, duration=video.duration)
        assert got.duration_s == video.duration and got.num_features == len(data.load_video_features(video_id))
        for r, q in zip(results, got.queries):
            assert q.query_id == r["query_id"]
            expected = as_array([(s, e, c) for (s, e), c in zip(r["predicted_times"], r["predicted_scores"])])
            assert as_array(q.moments).shape == expected.shape
            np.testing.assert_allclose(as_array(q.moments), expected, rtol=0, atol=ATOL)


def test_package_level_api_and_run_dir_source(setup):
    """`hieramamba.predict(run_dir, ...)` (loads the model itself) answers as the loaded model does."""
    video_id = setup["evaluated"][0]["video_id"]
    a = hieramamba.predict(setup["run"], setup["h5"], "He cut the bread", video_key=video_id)
    b = predict(setup["model"], setup["h5"], ["He cut the bread"], video_key=video_id)
    assert a.queries[0].moments == b.queries[0].moments and len(a.queries[0].moments) == 5
    scores = [c for _, _, c in a.queries[0].moments]
    assert scores == sorted(scores, reverse=True)


def test_long_video_goes_through_whole_in_one_forward(setup):
    """A video 12x the model's max_seq_len (3x past the point buffer) is one padded forward per
    query chunk, never a window of it; moments stay inside the video and reach its second half."""
    model = setup["model"]
    max_seq_len = model.parts.max_seq_len
    with h5py.File(setup["h5"], "r") as f:
        base = np.concatenate([f[k][()] for k in sorted(f.keys())])  # all synthetic videos back to back
    long = np.concatenate([base] * (-(-12 * max_seq_len // len(base))))[: 12 * max_seq_len]
    seen: list[int] = []
    hook = model.parts.model.register_forward_pre_hook(lambda mod, args: seen.append(int(args[0].shape[-1])))
    try:
        queries = [f"He cut the bread {i}" for i in range(20)]  # 2 chunks of eval.query_chunk=16
        got = predict(model, long, queries, top_k=5)
    finally:
        hook.remove()
    assert len(seen) == 2 and all(n >= len(long) and n % model.parts.pad_multiple == 0 for n in seen)
    expected_duration = ((len(long) - 1) * model.grid.clip_stride + model.grid.clip_size) / model.grid.fps
    assert got.duration_s == pytest.approx(expected_duration) and got.num_features == len(long)
    starts = np.concatenate([as_array(q.moments)[:, 0] for q in got.queries])
    ends = np.concatenate([as_array(q.moments)[:, 1] for q in got.queries])
    assert starts.min() >= 0 and ends.max() <= got.duration_s and (starts <= ends).all()
    assert ends.max() > got.duration_s / 2


def test_npy_pt_and_single_dataset_h5_give_the_same_answer(setup, tmp_path):
    video_id = setup["evaluated"][0]["video_id"]
    with h5py.File(setup["h5"], "r") as f:
        feats = f[video_id][()]
    np.save(tmp_path / "v.npy", feats)
    torch.save(torch.from_numpy(feats), tmp_path / "v.pt")
    with h5py.File(tmp_path / "one.h5", "w") as f:
        f.create_dataset("only", data=feats)
    ask = lambda video, **kw: predict(setup["model"], video, "She opened the book", **kw).queries[0].moments  # noqa: E731
    reference = ask(setup["h5"], video_key=video_id)
    for video in (tmp_path / "v.npy", tmp_path / "v.pt", tmp_path / "one.h5", feats):
        assert ask(video) == reference


def test_top_k_cuts_and_extends_the_ranking(setup):
    """top_k below eval.max_num_segs (5) is a prefix; above it, soft-NMS keeps more and the first 5
    are unchanged (its picks are greedy)."""
    video_id = setup["evaluated"][0]["video_id"]
    ask = lambda k: predict(setup["model"], setup["h5"], "He peeled the carrot", video_key=video_id, top_k=k).queries[0].moments  # noqa: E731
    five, two, twelve = ask(5), ask(2), ask(12)
    assert len(five) == 5 and two == five[:2]
    assert len(twelve) == 12 and twelve[:5] == five
    with pytest.raises(ConfigError, match="top_k"):
        ask(0)


def test_missing_glove_words_are_counted_not_fatal(setup):
    video_id = setup["evaluated"][0]["video_id"]
    got = predict(setup["model"], setup["h5"], ["He zorbled the flimflam", "He moved the bread"], video_key=video_id)
    assert got.queries[0].unknown_words == ["zorbled", "flimflam"] and got.queries[1].unknown_words == []
    assert len(got.queries[0].moments) == 5
    assert got.to_json()["queries"][0]["n_unknown_words"] == 2
    assert "2 word(s) not in GloVe" in got.table()


def test_precomputed_token_features_per_query(setup, tmp_path):
    """A token-feature file stands in for GloVe: the GloVe vectors of a sentence saved as .npy give
    the GloVe answer; a file of the wrong width is an error naming it."""
    from hieramamba.data.text import GloVe

    video_id = setup["evaluated"][0]["video_id"]
    glove = GloVe(setup["model"].cfg.dataset.glove)
    np.save(tmp_path / "tokens.npy", glove.embed("He cut the bread"))
    via_file = predict(setup["model"], setup["h5"], "He cut the bread", video_key=video_id,
                       text_features=tmp_path / "tokens.npy")
    via_glove = predict(setup["model"], setup["h5"], "He cut the bread", video_key=video_id)
    assert via_file.queries[0].moments == via_glove.queries[0].moments
    np.save(tmp_path / "narrow.npy", np.ones((4, 7), dtype=np.float32))
    with pytest.raises(DataError, match=r"narrow\.npy.*text feature dimension 7, expected 32"):
        predict(setup["model"], setup["h5"], "He cut the bread", video_key=video_id, text_features=tmp_path / "narrow.npy")
    with pytest.raises(ConfigError, match="2 text feature file"):
        predict(setup["model"], setup["h5"], "one query", video_key=video_id,
                text_features=[tmp_path / "tokens.npy", tmp_path / "tokens.npy"])


def test_long_queries_are_cut_to_max_text_len_as_the_evaluation_does(setup, tmp_path):
    """Evaluation feeds at most model.max_text_len tokens (eval.truncate_text): a token file longer
    than that answers as its first max_text_len tokens do."""
    video_id = setup["evaluated"][0]["video_id"]
    max_len = setup["model"].parts.max_text_len
    tokens = np.random.default_rng(0).standard_normal((max_len + 7, 32)).astype(np.float32)
    np.save(tmp_path / "long.npy", tokens)
    np.save(tmp_path / "cut.npy", tokens[:max_len])
    long = predict(setup["model"], setup["h5"], "a long query", video_key=video_id, text_features=tmp_path / "long.npy")
    cut = predict(setup["model"], setup["h5"], "a long query", video_key=video_id, text_features=tmp_path / "cut.npy")
    assert long.queries[0].moments == cut.queries[0].moments


def test_wrong_feature_width_names_the_file(setup, tmp_path):
    np.save(tmp_path / "narrow.npy", np.ones((100, 31), dtype=np.float32))
    with pytest.raises(DataError, match=r"narrow\.npy: feature dimension 31, expected 32"):
        predict(setup["model"], tmp_path / "narrow.npy", "He cut the bread")


@pytest.mark.parametrize("text", ["", "   ", "?!"])
def test_empty_query_is_an_error(setup, text):
    video_id = setup["evaluated"][0]["video_id"]
    with pytest.raises(DataError, match=r"query #2, record 'q1': empty query"):
        predict(setup["model"], setup["h5"], ["He cut the bread", text], video_key=video_id)


def test_missing_and_unusable_inputs_name_the_file(setup, tmp_path):
    model, h5 = setup["model"], setup["h5"]
    video_id = setup["evaluated"][0]["video_id"]
    with pytest.raises(DataError, match=r"nowhere\.npy: video feature file not found"):
        predict(model, tmp_path / "nowhere.npy", "He cut the bread")
    with pytest.raises(DataError, match="no dataset 'nope' in the h5 file"):
        predict(model, h5, "He cut the bread", video_key="nope")
    with pytest.raises(DataError, match=r"\d+ datasets in the h5 file .*--video-key"):
        predict(model, h5, "He cut the bread")
    (tmp_path / "v.csv").write_text("1,2\n")
    with pytest.raises(DataError, match=r"v\.csv: unknown video feature file type"):
        predict(model, tmp_path / "v.csv", "He cut the bread")
    with pytest.raises(DataError, match=r"glove\.txt: GloVe file not found"):
        predict(model, h5, "He cut the bread", video_key=video_id, glove=tmp_path / "glove.txt")
    with pytest.raises(DataError, match=r"tokens\.npy.*feature file not found"):
        predict(model, h5, "He cut the bread", video_key=video_id, text_features=tmp_path / "tokens.npy")
    with pytest.raises(DataError, match=r"no_run: not found"):
        predict(tmp_path / "no_run", h5, "He cut the bread", video_key=video_id)
    with pytest.raises(DataError, match=r"config\.yaml: not found: not a run directory"):
        predict(tmp_path, h5, "He cut the bread", video_key=video_id)
    with pytest.raises(ConfigError, match="no query given"):
        predict(model, h5, [], video_key=video_id)


def test_queries_jsonl(setup, tmp_path):
    from hieramamba.engine.predict import read_queries_jsonl

    np.save(tmp_path / "tokens.npy", np.zeros((3, 32), dtype=np.float32))
    path = tmp_path / "q.jsonl"
    path.write_text('{"query": "He cut the bread", "segment": [1.5, 4]}\n\n'
                    '{"query": "She opened the book", "query_id": "b", "text_features": "tokens.npy"}\n')
    qs = read_queries_jsonl(path)
    assert [q["query_id"] for q in qs] == ["q0", "b"] and qs[1]["text_features"] == str(tmp_path / "tokens.npy")
    got = predict(setup["model"], setup["h5"], qs, video_key=setup["evaluated"][0]["video_id"])
    assert got.queries[0].ground_truth == (1.5, 4.0) and got.queries[1].ground_truth is None
    for bad, problem in (('{"query": 3}', r"line 1: expected an object with a \"query\" string"),
                         ('{"query": "x", "segment": [1]}', r"line 1: \"segment\" must be"),
                         ("not json", "line 1: not JSON"), ("", "no queries in the file")):
        path.write_text(bad + "\n")
        with pytest.raises(DataError, match=rf"q\.jsonl.*{problem}"):
            read_queries_jsonl(path)
    with pytest.raises(DataError, match=r"missing\.jsonl: queries file not found"):
        read_queries_jsonl(tmp_path / "missing.jsonl")
