"""The recall-by-length plot's intervals: per variant and length bin, the tables' interval
(stats.intervals: Student t on seeds + video bootstrap) of the hit matrix seeds x that bin's queries, read from the runs'
hits.csv.gz; a bin of < 2 queries gets its point without an interval; bins in their natural order."""

from __future__ import annotations

import gzip
import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from wfhelpers import BINS, SCRIPTS, run_script

sys.path.insert(0, str(SCRIPTS))
import plots  # noqa: E402  (workflow/scripts/plots.py)
import stats  # noqa: E402  (workflow/scripts/stats.py)


def _expected(metrics_paths, variant, metrics):
    """{bin: (stack (M, S, Q), kinds, videos or None)} of a variant, read straight from its
    hits.csv.gz files by column name (rows = seeds in increasing order, columns = query ids sorted)."""
    runs = []
    for path in metrics_paths:
        data = json.loads(Path(path).read_text())
        if data["variant"] == variant:
            runs.append((int(data["seed"]), Path(path).parent / "hits.csv.gz"))
    frames = [pd.read_csv(hits, dtype={"query_id": str, "kind": str, "length_bin": str}, keep_default_na=False)
              .sort_values("query_id").reset_index(drop=True) for _, hits in sorted(runs)]
    ids = frames[0]
    out = {}
    for label in dict.fromkeys(ids["length_bin"]):
        rows = ids.index[ids["length_bin"] == label]
        stack = np.stack([f.loc[rows, metrics].to_numpy(dtype=float).T for f in frames], axis=1)
        videos = ids.loc[rows, "video"].to_numpy(dtype=object) if "video" in ids.columns else None
        out[label] = (stack, ids.loc[rows, "kind"].to_numpy(), videos)
    return out


def _tables_interval(stack, kinds, videos):
    return stats.intervals(stack, kinds, **({} if videos is None else {"clusters": videos}))


def test_bin_intervals_are_the_tables_bootstrap_on_each_bins_hit_matrix(fixture_runs):
    """Fixture runs with planted hits (400 queries in 3 length bins, plain and long_range): each
    (variant, bin, metric) row is stats.intervals of the seeds x bin-queries matrix with the
    queries' kinds as strata; the matrices the plot builds are the hits files' own."""
    _, metrics, _ = fixture_runs
    paths = metrics["synth_tacos"]
    r1 = ["R1@0.3", "R1@0.5"]
    summary = plots.length_bin_summary(paths, "synth_tacos")
    assert sorted(set(summary["metric"])) == r1  # the R@1 metrics by default
    assert list(summary.sort_values("order").drop_duplicates("bin")["bin"]) == list(BINS)  # metrics.json's order
    runs = plots.wflib.load_runs(paths)
    built = plots.length_bin_hits(runs[runs["variant"].isin(["full", "no_gate", "pool_max"])], r1)
    for variant, seeds in (("full", 3), ("no_gate", 3), ("pool_max", 1)):
        expected = _expected(paths, variant, r1)
        assert set(expected) == set(BINS)
        for label, (stack, kinds, videos) in expected.items():
            mine = built[(variant, label)]
            np.testing.assert_array_equal(mine.stack, stack)
            np.testing.assert_array_equal(mine.strata, kinds)
            assert stack.shape[:2] == (2, seeds) and set(kinds) == {"plain", "long_range"}
            want = _tables_interval(stack, kinds, videos)
            assert plots.bin_intervals(mine) == want
            rows = summary[(summary["variant"] == variant) & (summary["bin"] == label)].set_index("metric").loc[r1]
            assert (rows["n_queries"] == stack.shape[2]).all() and (rows["seeds"] == seeds).all()
            for metric, interval in zip(r1, want):
                assert rows.loc[metric, ["mean", "lo", "hi"]].tolist() == [interval.value, interval.lo, interval.hi]
                assert interval.lo < interval.value < interval.hi
                # the point is the mean over seeds of each seed's recall on the bin
                assert interval.value == pytest.approx(100.0 * stack[r1.index(metric)].mean(axis=1).mean())


LABELS = ["0-120s", "120-600s", "600-1800s", "1800s+"]  # the evaluation's bins, increasing
# query -> (kind, length bin): the long bin comes first in query-id order (natural order must not
# come from the file), 600-1800s holds a single query, 1800s+ none.
QUERIES = ([("long_range", "120-600s")] * 4 + [("plain", "600-1800s")] + [("plain", "0-120s")] * 5
           + [("long_range", "0-120s")] * 3 + [("plain", "120-600s")] * 4)


def _write_run(root, variant, seed, hits):
    """A run folder with hits.csv.gz (an extra column after the metrics, to be ignored) and the
    metrics.json those hits give."""
    run = root / variant / f"seed{seed}"
    run.mkdir(parents=True)
    frame = pd.DataFrame({"query_id": [f"q{i:03d}" for i in range(len(QUERIES))],
                          "kind": [k for k, _ in QUERIES], "length_bin": [b for _, b in QUERIES],
                          "R1@0.5": hits, "R5@0.5": [1] * len(QUERIES), "note": "x"})
    with gzip.open(run / "hits.csv.gz", "wt") as handle:
        frame.to_csv(handle, index=False)

    def recall(rows):
        return {m: 100.0 * frame.loc[rows, m].mean() for m in ("R1@0.5", "R5@0.5")} if len(rows) else {}

    by_bin = {b: {"n_queries": int((frame["length_bin"] == b).sum()),
                  "metrics": recall(frame.index[frame["length_bin"] == b])} for b in LABELS}
    (run / "metrics.json").write_text(json.dumps({
        "dataset": "synth_x", "variant": variant, "seed": seed, "metrics": recall(frame.index),
        "n_queries": len(frame), "by_length_bin": by_bin}))
    return str(run / "metrics.json")


def test_small_bins_natural_order_and_the_plot_file(tmp_path):
    """A bin of one query: its point (the mean over seeds), no interval; a bin no query falls in:
    listed (n=0) with no point; bins in metrics.json's order, not the hits file's; the PNG and PDF
    are written."""
    rng = np.random.default_rng(7)
    paths = [_write_run(tmp_path, variant, seed, rng.integers(0, 2, len(QUERIES)).tolist())
             for variant in ("full", "no_gate") for seed in (0, 1, 2)]
    summary = plots.length_bin_summary(paths, "synth_x")
    assert list(summary.sort_values("order").drop_duplicates("bin")["bin"]) == LABELS
    assert list(summary["metric"].unique()) == ["R1@0.5"]
    one = summary[summary["bin"] == "600-1800s"]
    assert (one["n_queries"] == 1).all() and one["lo"].isna().all() and one["hi"].isna().all()
    single = [int(pd.read_csv(Path(p).parent / "hits.csv.gz").query("length_bin == '600-1800s'")["R1@0.5"].iloc[0])
              for p in paths[:3]]
    assert one.set_index("variant").loc["full", "mean"] == pytest.approx(100.0 * np.mean(single))
    empty = summary[summary["bin"] == "1800s+"]
    assert (empty["n_queries"] == 0).all() and empty["mean"].isna().all()
    bins = summary[summary["bin"].isin(["0-120s", "120-600s"])]
    assert (bins["n_queries"] == 8).all() and (bins["lo"] <= bins["mean"]).all() and (bins["mean"] <= bins["hi"]).all()
    assert (bins["lo"] < bins["hi"]).all()
    # the 0-120s bin: strata = its kinds (5 plain + 3 long_range)
    built = plots.length_bin_hits(plots.wflib.load_runs(paths[:3]), ["R1@0.5"])[("full", "0-120s")]
    assert list(built.strata) == ["plain"] * 5 + ["long_range"] * 3
    row = summary[(summary["variant"] == "full") & (summary["bin"] == "0-120s")].iloc[0]
    interval = stats.intervals(built.stack, built.strata)[0]
    assert [row["mean"], row["lo"], row["hi"]] == [interval.value, interval.lo, interval.hi]

    out = tmp_path / "plot"
    run_script("plots.py", "recall_by_length", "--dataset", "synth_x", "--metrics", *paths, "--out", str(out))
    png, pdf = out.with_suffix(".png"), out.with_suffix(".pdf")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert pdf.read_bytes()[:5] == b"%PDF-"


def test_seeds_scoring_different_queries_are_refused(tmp_path):
    paths = [_write_run(tmp_path, "full", seed, ([1, 0] * len(QUERIES))[:len(QUERIES)]) for seed in (0, 1)]
    hits = Path(paths[1]).parent / "hits.csv.gz"
    frame = pd.read_csv(hits)
    frame.loc[0, "query_id"] = "q999"
    with gzip.open(hits, "wt") as handle:
        frame.to_csv(handle, index=False)
    with pytest.raises(ValueError, match="score different queries"):
        plots.length_bin_summary(paths, "synth_x")
    assert math.isnan(plots.bin_intervals(plots.BinHits(np.zeros((1, 2, 0)), np.array([]), None, [0, 1]))[0].value)
