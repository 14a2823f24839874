"""`python -m hieramamba predict` as a user runs it (subprocess): the table on screen, --json,
--out, --queries FILE.jsonl, --top-k, --plot writing a PNG, and bad input as one error line with
exit status 2 (no traceback), as the other engine commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def hieramamba(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "hieramamba", "predict", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def run(synth_tacos_run):
    data_root, run_dir = synth_tacos_run
    h5 = data_root / "synth" / "synth_tacos" / "features" / "tall_c3d_features.hdf5"
    return {"dir": run_dir, "video": ["--video", h5, "--video-key", "s22-d53.avi"]}


def test_queries_file_json_top_k_out_and_plot(run, tmp_path):
    """--queries with a ground-truth segment, --top-k 3, --json on stdout equal to --out's file,
    and a PNG timeline; the answers are the API's."""
    from hieramamba.engine.predict import predict, read_queries_jsonl

    queries = tmp_path / "q.jsonl"
    queries.write_text('{"query": "He moved the bread", "query_id": "bread", "segment": [10.0, 20.5]}\n'
                       '{"query": "someone zorbled the book"}\n')
    out, png = tmp_path / "pred.json", tmp_path / "plots" / "timeline.png"
    res = hieramamba(run["dir"], *run["video"], "--queries", queries, "--top-k", 3, "--json", "--out", out, "--plot", png)
    assert res.returncode == 0, res.stderr
    printed = json.loads(res.stdout)
    assert printed == json.loads(out.read_text())
    assert [q["query_id"] for q in printed["queries"]] == ["bread", "q1"]
    assert all(len(q["moments"]) == 3 for q in printed["queries"])
    assert printed["queries"][0]["ground_truth"] == [10.0, 20.5] and printed["queries"][1]["unknown_words"] == ["zorbled"]
    assert "1 query word(s) not in GloVe" in res.stderr
    api = predict(run["dir"], run["video"][1], read_queries_jsonl(queries), video_key="s22-d53.avi", top_k=3)
    # another process may use another thread count: sums differ in the last float32 bits
    np.testing.assert_allclose(printed["queries"][0]["moments"], api.queries[0].moments, rtol=0, atol=1e-5)
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 5000


def test_table_on_screen_with_repeated_query(run):
    res = hieramamba(run["dir"], *run["video"], "--query", "He moved the bread", "--query", "She opened the book")
    assert res.returncode == 0, res.stderr
    assert "[q0] He moved the bread" in res.stdout and "[q1] She opened the book" in res.stdout
    rows = [line.split() for line in res.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert len(rows) == 10 and [r[0] for r in rows[:5]] == ["1", "2", "3", "4", "5"]


# (missing files and the other cases: test_predict.py / test_loading.py through the API)
@pytest.mark.parametrize("case", ["empty query", "wrong width", "unknown layout"])
def test_bad_input_is_one_error_line(run, tmp_path, case):
    import torch

    args = [run["dir"], *run["video"], "--query", "He moved the bread"]
    if case == "empty query":
        args[-1], expected = "  ", "query #1, record 'q0': empty query"
    elif case == "wrong width":
        np.save(tmp_path / "narrow.npy", np.ones((50, 7), dtype=np.float32))
        args[1:5] = ["--video", tmp_path / "narrow.npy"]
        expected = "narrow.npy: feature dimension 7, expected 32"
    else:
        torch.save({"weights": [1, 2]}, tmp_path / "odd.pth")
        args[0], expected = tmp_path / "odd.pth", "odd.pth: unknown checkpoint layout"
    res = hieramamba(*args)
    assert res.returncode == 2 and res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hieramamba: error: ") and expected in lines[0], res.stderr
