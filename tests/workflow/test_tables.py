"""Table scripts on fixture metrics.json files: golden tables plus hand-computed numbers.

Regenerate the golden files after an intended change with HIERAMAMBA_UPDATE_GOLDEN=1 (and read
the diff)."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from wfhelpers import GOLDEN, REPO, SCRIPTS, parse_table_page, run_script

PAPER = str(REPO / "workflow" / "paper_numbers.yaml")
CASES = {
    # name: (table, dataset, paper dataset, synthetic, variants, baseline)
    "main_synth_tacos": ("main", "synth_tacos", "tacos", True, ["full", "reference_quirks"], True),
    "main_tacos": ("main", "tacos", "tacos", False, ["full"], False),
    "ablation_synth_tacos": ("ablation", "synth_tacos", "tacos", True, ["full", "no_gate", "pool_max", "reference_quirks", "no_global", "full_aa"], False),
    "stride_synth_tacos": ("stride", "synth_tacos", "tacos", True, ["full", "stride_3", "stride_4"], False),
    "backbones_synth_tacos": ("backbones", "synth_tacos", "tacos", True, ["full", "snag"], False),
    "backbones_tacos": ("backbones", "tacos", "tacos", False, ["full", "snag"], False),
}


@pytest.fixture(scope="module")
def tables(fixture_runs, tmp_path_factory):
    root, metrics, variant_files = fixture_runs
    out = tmp_path_factory.mktemp("tables")
    for name, (table, dataset, paper_dataset, synthetic, variants, baseline) in CASES.items():
        args = [table, "--dataset", dataset, "--paper-dataset", paper_dataset, "--paper", PAPER,
                "--metrics", *metrics[dataset], "--variant-files", *variant_files, "--variants", *variants,
                "--scale", "default", "--out", str(out / name)]
        if synthetic:
            args.append("--synthetic")
        if baseline:
            args += ["--baseline", str(root / "runs" / dataset / "full" / "seed0" / "metrics.prior.json")]
        run_script("tables.py", *args)
    return out


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("ext", ["csv", "md", "tex", "html"])
def test_golden(tables, name, ext):
    produced = tables / f"{name}.{ext}"
    golden = GOLDEN / f"{name}.{ext}"
    if os.environ.get("HIERAMAMBA_UPDATE_GOLDEN") == "1":
        golden.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(produced, golden)
    assert produced.read_text() == golden.read_text(), f"{produced} differs from {golden}"


def _rows(path):
    frame = pd.read_csv(path, keep_default_na=False, na_values=[""])
    return frame.set_index(["variant", "kind"])


def test_footnotes_say_what_the_table_covers(tables):
    """Scale and seeds of the runs read, in every format (tables of other configs must not pass
    for these); the ablation table reads seed indices 0-2 of full/no_gate/reference_quirks and the
    two controls (the A/A control full_aa at seeds 1000-1002), 0 of pool_max."""
    for ext in ("md", "tex", "html"):
        text = (tables / f"ablation_synth_tacos.{ext}").read_text()
        assert "scale=default, seeds 0, 1, 2 (3 seeds, 16 runs; full" in text, ext
        assert "aa runs seed 1000 + each)" in text, ext  # LaTeX escapes the underscore
    # main_tacos shows `full` only: its 2 runs, not the `snag` run beside them
    assert "seeds 0, 1 (2 seeds, 2 runs)" in (tables / "main_tacos.md").read_text()


def test_html_table_is_the_shown_table_with_caption_notes_and_legend(tables):
    """The report shows the .html inline: every cell of the Markdown table, the title as caption,
    every footnote, and a legend with exactly the source tags the table uses."""
    for name in CASES:
        page = parse_table_page((tables / f"{name}.html").read_text())
        md_lines = (tables / f"{name}.md").read_text().splitlines()
        assert page.caption == md_lines[0].removeprefix("### ")
        rows = [line for line in md_lines if line.startswith("| ")]
        md_cells = [[c.strip().replace("\\|", "|") for c in line.strip()[1:-1].split(" | ")] for line in rows]
        assert [[c.strip() for c in row] for row in page.rows] == md_cells, name
        assert page.notes and all(note in md_lines for note in page.notes), name
        legend = [line for line in md_lines if line.startswith("Sources: ")]
        assert len(legend) == (1 if page.tags else 0)
        assert all(f"{tag} = " in legend[0] for tag in page.tags)
    assert parse_table_page((tables / "main_synth_tacos.html").read_text()).tags == ["3R"], "only the tags shown"
    assert parse_table_page((tables / "main_tacos.html").read_text()).tags == ["3R", "DCF", "SNAG"]


def test_unpublished_paper_row_says_so(fixture_runs, tmp_path):
    """MAD's HieraMamba row has no published number: its source cell says `not published` and a
    footnote explains the dashes, instead of a row of dashes that reads as empty."""
    _, metrics, variant_files = fixture_runs
    paper = yaml.safe_load(open(PAPER))
    row = paper["datasets"]["tacos"]["methods"][0]
    assert row["name"] == "HieraMamba"
    row.update(source=None, avg=None, values={m: None for m in row["values"]})  # as MAD's row
    (tmp_path / "paper.yaml").write_text(yaml.safe_dump(paper))
    run_script("tables.py", "main", "--dataset", "tacos", "--paper-dataset", "tacos", "--paper",
               str(tmp_path / "paper.yaml"), "--metrics", *metrics["tacos"], "--variant-files", *variant_files,
               "--variants", "full", "--out", str(tmp_path / "main_mad"))
    lines = (tmp_path / "main_mad.md").read_text().splitlines()
    row = next(line for line in lines if line.startswith("| paper | HieraMamba |"))
    assert "| not published |" in row and row.count("| — ") >= 4
    assert any("'not published' has no number in any source" in line for line in lines)
    assert any(line.startswith("Covers: scale=not recorded, seeds 0, 1") for line in lines)


def test_ablation_numbers_by_hand(tables):
    frame = _rows(tables / "ablation_synth_tacos.csv")
    row = frame.loc[("no_gate", "all")]
    # no_gate R1@0.3 per seed 38, 38, 41; full 40, 42, 44: Δ per seed -2, -4, -3 -> mean -3, sd 1
    assert row["R1@0.3_mean"] == pytest.approx(39.0)
    assert row["R1@0.3_std"] == pytest.approx(math.sqrt(3.0))
    assert row["R1@0.3_delta"] == pytest.approx(-3.0) and row["R1@0.3_pairs"] == 3
    assert row["R1@0.3_delta_lo"] < -3.0 < row["R1@0.3_delta_hi"] < 0.0 and row["R1@0.3_resolved"]
    # P(no_gate > full) over the 9 run pairs: only 41 > 40
    assert row["R1@0.3_p_improve"] == pytest.approx(1 / 9)
    # d = 3 (mean 3, sd 1): a paired t-test reaches power 0.8 at n = 4 (n = 3 gives 0.6)
    assert row["R1@0.3_seeds_needed"] == 4
    assert row["R1@0.3_lo"] < 39.0 < row["R1@0.3_hi"]
    # one seed: a query-only interval, no seed spread, no seeds-needed
    single = frame.loc[("pool_max", "all")]
    assert single["R1@0.3_pairs"] == 1 and math.isnan(single["R1@0.3_seeds_needed"])
    assert math.isnan(single["R1@0.3_std"]) and single["R1@0.3_lo"] < single["R1@0.3_mean"] < single["R1@0.3_hi"]
    # the reference row has no Δ
    assert math.isnan(frame.loc[("full", "all"), "R1@0.3_delta"])


def test_every_comparison_is_broken_down_by_query_kind(tables):
    frame = _rows(tables / "ablation_synth_tacos.csv")
    for variant in ("full", "no_gate", "pool_max", "reference_quirks", "no_global", "full_aa"):
        assert [frame.loc[(variant, k), "n_queries"] for k in ("all", "plain", "long_range")] == [400, 300, 100]
    # the kinds' means weigh into the overall mean (300 plain + 100 long_range queries)
    full = frame.loc["full"]
    assert full.loc["all", "R1@0.3_mean"] == pytest.approx(
        (300 * full.loc["plain", "R1@0.3_mean"] + 100 * full.loc["long_range", "R1@0.3_mean"]) / 400)


def test_controls(tables):
    frame = _rows(tables / "ablation_synth_tacos.csv")
    positive = frame.loc[("no_global", "long_range")]
    assert positive["control"] == "positive" and positive["R1@0.3_resolved"] and positive["R1@0.3_delta"] < 0
    negative = frame.loc["full_aa"]
    # seeds 1000-1002 paired with full's 0-2 by seed index
    assert (negative["R1@0.3_pairs"] == 3).all() and (negative["control"] == "negative").all()
    assert not negative[[c for c in negative.columns if c.endswith("_resolved")]].any().any()
    text = (tables / "ablation_synth_tacos.md").read_text()
    assert "| no_global (positive control) | long_range |" in text
    assert "Observed: resolved worse on long_range in 3 of 4 shown metrics" in text
    # the fourth is worse but unresolved: the footnote names the seeds its n column asks for
    n = int(positive["R1@0.5_seeds_needed"])
    assert f"Worse but not resolved: R1@0.5 n {n};" in text and "`snakemake --config seeds=<n>`" in text
    assert "full_aa: negative (A/A) control" in text and "Observed: 0 of 12 Δ cells flagged at 95 % per cell" in text
    assert "family-wise (Holm over the row's 12 cells, alpha 0.05): 0 flagged, so the control is not flagged" in text
    # the six runs of the one configuration (full 0-2, full_aa 1000-1002) cut into halves: C(6, 3) / 2 ways
    assert "the 6 runs of this one configuration (full and the control) cut into halves in 10 ways" in text
    assert negative["R1@0.3_p_value"].between(0, 1).all()
    assert "scipy.stats.bootstrap" in text and "clusters of queries = videos within each query kind" in text
    assert "Warning" not in text  # every fixture hits file names its videos


def test_aa_calibration_reads_the_verdict_cells_only(fixture_runs):
    """The calibration compares the same cells the verdict reads: with one metric, 10 splits of
    the six runs x 3 rows (all, plain, long_range) = 30 cells; with all four, 120."""
    sys.path.insert(0, str(SCRIPTS))
    import evidence  # noqa: E402  (workflow/scripts/evidence.py)
    import wflib  # noqa: E402

    _, metrics, variant_files = fixture_runs
    runs = wflib.load_runs(metrics["synth_tacos"])
    runs = runs[runs["variant"].isin(["full", "full_aa"])]
    hits = evidence.TableHits(runs, ["R1@0.3", "R1@0.5", "R5@0.3", "R5@0.5"], wflib.load_variant_files(variant_files))
    one = evidence.aa_calibration(hits, "full_aa", ["R1@0.3"])
    assert (one.runs, one.splits, one.cells) == (6, 10, 30)
    assert evidence.aa_calibration(hits, "full_aa").cells == 120
    assert evidence.aa_calibration(hits, "full_aa", ["R50@0.5"]) is None  # no such cell: nothing to calibrate


def test_stride_order_and_constant_delta(tables):
    frame = pd.read_csv(tables / "stride_synth_tacos.csv")
    assert list(frame.drop_duplicates("variant")["variant"]) == ["full", "stride_3", "stride_4"]
    # stride_3 from the run's config.yaml, stride_4 from its ablation overrides
    assert list(frame.drop_duplicates("variant")["stride"].fillna(2).astype(int)) == [2, 3, 4]
    rows = _rows(tables / "stride_synth_tacos.csv")
    row = rows.loc[("stride_3", "all")]
    # the same -1 on every seed: resolved, and two seeds would do
    assert row["R1@0.3_delta"] == pytest.approx(-1.0) and row["R1@0.3_seeds_needed"] == 2
    assert rows.loc[("stride_4", "all"), "R1@0.3_delta"] == pytest.approx(-2.0)


def test_missing_or_inconsistent_hits_are_named(fixture_runs, tmp_path):
    root, metrics, variant_files = fixture_runs
    runs = tmp_path / "runs"
    shutil.copytree(root / "runs" / "synth_tacos", runs)
    chosen = [str(runs / v / "seed0" / "metrics.json") for v in ("full", "no_gate")]
    args = ["ablation", "--dataset", "synth_tacos", "--paper-dataset", "tacos", "--paper", PAPER, "--synthetic",
            "--metrics", *chosen, "--variant-files", *variant_files, "--variants", "full", "no_gate",
            "--out", str(tmp_path / "t")]
    hits = runs / "no_gate" / "seed0" / "hits.csv.gz"
    shutil.copy(runs / "full" / "seed0" / "hits.csv.gz", hits)  # full's hits under no_gate's metrics
    result = subprocess.run([sys.executable, str(SCRIPTS / "tables.py"), *args], capture_output=True, text=True)
    assert result.returncode != 0 and str(hits) in result.stderr and "R1@0.3 over its 400 queries" in result.stderr
    frame = pd.read_csv(runs / "no_gate" / "seed1" / "hits.csv.gz", dtype={"query_id": str})
    frame.loc[0, "R1@0.5"] = 2  # not a hit flag
    frame.to_csv(hits, index=False)
    result = subprocess.run([sys.executable, str(SCRIPTS / "tables.py"), *args], capture_output=True, text=True)
    assert result.returncode != 0 and str(hits) in result.stderr and "must hold 0 or 1, R1@0.5" in result.stderr
    hits.unlink()
    result = subprocess.run([sys.executable, str(SCRIPTS / "tables.py"), *args], capture_output=True, text=True)
    assert result.returncode != 0 and f"{hits}: missing" in result.stderr and "hieramamba evaluate" in result.stderr


def test_main_delta_to_paper(tables):
    frame = pd.read_csv(tables / "main_tacos.csv")
    delta = frame[frame["row"] == "delta"].iloc[0]
    # ours: seeds 59 and 61 -> 60; paper (3R) 59.59
    assert delta["R1@0.3"] == pytest.approx(60.0 - 59.59)
    assert delta["avg"] == pytest.approx(67.0 - 66.65)
    synth = pd.read_csv(tables / "main_synth_tacos.csv")
    assert "delta" not in set(synth["row"]), "no Δ to real-data numbers on synthetic data"
    assert synth.set_index("row").loc["baseline", "R1@0.3"] == pytest.approx(5.0)


def test_backbone_params(tables):
    frame = _rows(tables / "backbones_synth_tacos.csv")
    assert frame.loc[("snag", "all"), "backbone"] == "snag" and frame.loc[("full", "all"), "backbone"] == "hieramamba"
    assert frame.loc[("snag", "long_range"), "n_params"] == 1234567
    assert pd.isna(frame.loc[("full", "all"), "n_params"])


def test_collect_metrics(fixture_runs, tmp_path):
    _, metrics, _ = fixture_runs
    run_script("collect_metrics.py", *metrics["synth_tacos"], *metrics["tacos"], "--out", str(tmp_path))
    runs = pd.read_csv(tmp_path / "runs.csv")
    assert len(runs) == sum(len(v) for v in metrics.values())
    bins = pd.read_csv(tmp_path / "by_length_bin.csv")
    assert set(bins["group"]) == {"short (<2 min)", "medium (2-5 min)", "long (>5 min)"}


def test_bad_metrics_file_is_named(fixture_runs, tmp_path):
    bad = tmp_path / "metrics.json"
    bad.write_text('{"dataset": "synth_tacos", "seed": 0, "metrics": {}}')
    result = subprocess.run([sys.executable, str(SCRIPTS / "collect_metrics.py"), str(bad), "--out", str(tmp_path)],
                            capture_output=True, text=True)
    assert result.returncode != 0
    assert str(bad) in result.stderr and "variant" in result.stderr


def _ablation_args(runs, variant_files, out):
    chosen = [str(p) for p in sorted(runs.glob("*/seed*/metrics.json")) if p.parts[-3] in ("full", "no_gate")]
    return ["ablation", "--dataset", "synth_tacos", "--paper-dataset", "tacos", "--paper", PAPER, "--synthetic",
            "--metrics", *chosen, "--variant-files", *variant_files, "--variants", "full", "no_gate", "--out", str(out)]


def _drop_video(path):
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame.drop(columns="video").to_csv(path, index=False)


def test_hits_files_without_videos_fall_back_to_queries_with_a_warning(fixture_runs, tmp_path):
    """Hits files of the first layout (no `video` column): when no run of the table names the
    videos, each query is its own cluster (the per-query bootstrap, narrower here: the fixture's
    paraphrases hit together) and the footnote says so; when one run names them, the others
    borrow its videos and the table is the one of all-new files."""
    root, _, variant_files = fixture_runs
    runs = tmp_path / "runs"
    shutil.copytree(root / "runs" / "synth_tacos", runs)
    run_script("tables.py", *_ablation_args(runs, variant_files, tmp_path / "new"))
    legacy = sorted(runs.glob("*/seed*/hits.csv.gz"))
    for path in legacy[1:]:  # all but full/seed0 (the first run read) lose the column
        _drop_video(path)
    run_script("tables.py", *_ablation_args(runs, variant_files, tmp_path / "borrowed"))
    assert (tmp_path / "borrowed.csv").read_text() == (tmp_path / "new.csv").read_text()
    assert "Warning" not in (tmp_path / "borrowed.md").read_text()
    _drop_video(legacy[0])
    result = run_script("tables.py", *_ablation_args(runs, variant_files, tmp_path / "old"))
    text = (tmp_path / "old.md").read_text()
    assert "Warning: the hits files of this table's 6 runs predate the `video` column" in text
    assert "hieramamba evaluate RUN_DIR" in text and "predate the `video` column" in result.stderr
    new, old = _rows(tmp_path / "new.csv"), _rows(tmp_path / "old.csv")
    assert (old["R1@0.3_mean"] == new["R1@0.3_mean"]).all() and (old["R1@0.3_delta"].equals(new["R1@0.3_delta"]))
    width = lambda f, c: (f[f"R1@0.3_{c}hi"] - f[f"R1@0.3_{c}lo"]).loc[("full", "all")]  # noqa: E731
    assert width(old, "") < 0.9 * width(new, "")


def test_runs_naming_different_videos_are_refused(fixture_runs, tmp_path):
    root, _, variant_files = fixture_runs
    runs = tmp_path / "runs"
    shutil.copytree(root / "runs" / "synth_tacos", runs)
    path = runs / "no_gate" / "seed1" / "hits.csv.gz"
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame.loc[frame["query_id"] == "q00003", "video"] = "elsewhere"
    frame.to_csv(path, index=False)
    args = _ablation_args(runs, variant_files, tmp_path / "t")
    result = subprocess.run([sys.executable, str(SCRIPTS / "tables.py"), *args], capture_output=True, text=True)
    assert result.returncode != 0 and str(path) in result.stderr
    assert "give query 'q00003' different videos" in result.stderr


def test_a_variant_whose_overrides_hold_in_full_is_footnoted_as_inert(fixture_runs, tmp_path):
    # e.g. no_acc on a MAD-like dataset, whose recipe turns ACC off: its runs repeat full's
    root, metrics, variant_files = fixture_runs
    runs = tmp_path / "runs"
    shutil.copytree(root / "runs" / "synth_tacos", runs)
    overrides = yaml.safe_load((REPO / "ablations" / "no_gate.yaml").read_text())["overrides"]
    assert overrides  # the repo's no_gate changes something; make full's recorded config hold it already
    config = {"variant": "full", "model": {"backbone": {}}}
    for key, value in overrides.items():
        node = config
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    args = _ablation_args(runs, variant_files, tmp_path / "t")
    run_script("tables.py", *args)
    assert "Inert on this dataset" not in (tmp_path / "t.md").read_text()  # full's config.yaml says nothing
    for seed_dir in (runs / "full").glob("seed*"):
        (seed_dir / "config.yaml").write_text(yaml.safe_dump(config))
    run_script("tables.py", *args)
    text = (tmp_path / "t.md").read_text()
    assert f"Inert on this dataset: no_gate ({', '.join(sorted(overrides))})" in text
    # one differing value is enough to make a variant a real ablation again
    key = sorted(overrides)[0]
    node = config
    for part in key.split(".")[:-1]:
        node = node[part]
    node[key.split(".")[-1]] = "something else"
    for seed_dir in (runs / "full").glob("seed*"):
        (seed_dir / "config.yaml").write_text(yaml.safe_dump(config))
    run_script("tables.py", *args)
    assert "Inert on this dataset" not in (tmp_path / "t.md").read_text()
