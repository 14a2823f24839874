"""Plot scripts on fixture metrics.json / bench JSON: every plot is written (PNG + PDF) and the
scaling exponents are the known ones."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pandas as pd
import pytest

from wfhelpers import REPO, SCRIPTS, metrics_record, run_script

sys.path.insert(0, str(SCRIPTS))
import plots  # noqa: E402  (workflow/scripts/plots.py)

PAPER = str(REPO / "workflow" / "paper_numbers.yaml")


def _assert_images(prefix):
    png, pdf = prefix.with_suffix(".png"), prefix.with_suffix(".pdf")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert pdf.read_bytes()[:5] == b"%PDF-"


@pytest.mark.parametrize("plot", ["recall_by_length", "ablation", "training_curves"])
def test_dataset_plots(fixture_runs, tmp_path, plot):
    _, metrics, _ = fixture_runs
    out = tmp_path / plot
    run_script("plots.py", plot, "--dataset", "synth_tacos", "--paper", PAPER, "--paper-dataset", "tacos",
               "--metrics", *metrics["synth_tacos"], "--variants", "full", "no_gate", "pool_max", "--out", str(out))
    _assert_images(out)


CURVE_HEADER = "epoch,iteration,lr,loss,cls,reg,acc,spc,loss_norm,num_pos,grad_norm\n"


def _curve_runs(root, dataset, losses):
    """Run folders whose train_curve.csv has the trainer's columns; losses: variant -> function of
    the iteration giving (loss, cls, reg, acc, spc)."""
    paths = []
    for variant, fn in losses.items():
        for seed in (0, 1):
            run = root / variant / f"seed{seed}"
            run.mkdir(parents=True)
            values = {"R1@0.3": 40.0 + seed, "R1@0.5": 30.0, "R5@0.3": 70.0, "R5@0.5": 55.0}
            (run / "metrics.json").write_text(json.dumps(metrics_record(dataset, variant, seed, values, run)))
            rows = [",".join(["0", str(i), "0.001", *(f"{v * (1 + 0.05 * seed):.4f}" for v in fn(i)), "1.0", "4", "2.0"])
                    for i in range(1, 21)]
            (run / "train_curve.csv").write_text(CURVE_HEADER + "\n".join(rows) + "\n")
            paths.append(str(run / "metrics.json"))
    return paths


def _decay(start, i):
    return start / i ** 0.5


def test_training_curves_drop_empty_panels_and_use_log_scale_for_wide_ranges(tmp_path):
    """synth_mad: ACC and SPC are off in the recipe (zero in every run): no panel. synth_tacos: one
    variant starts at a loss of ~1800: the loss panel is log-scaled so the other curves show; a
    variant with ACC off is left out of the ACC panel (and named), not drawn as a line at 0."""
    mad = _curve_runs(tmp_path / "mad", "synth_mad", {
        "full": lambda i: (_decay(3, i), _decay(2, i), _decay(1, i), 0.0, 0.0)})
    tacos = _curve_runs(tmp_path / "tacos", "synth_tacos", {
        "full": lambda i: (_decay(3, i), _decay(2, i), _decay(1, i), _decay(0.5, i), _decay(0.2, i)),
        "no_acc": lambda i: (_decay(2.5, i), _decay(2, i), _decay(1, i), 0.0, _decay(0.2, i)),
        "pure_transformer": lambda i: (_decay(1800, i), _decay(1790, i), _decay(10, i), _decay(0.5, i),
                                       _decay(0.2, i))})
    panels, skipped, off = plots.choose_panels(_long(mad))
    assert [name for name, _ in panels] == ["loss", "cls", "reg"] and skipped == ["acc", "spc"]
    panels, skipped, off = plots.choose_panels(_long(tacos))
    scale = dict(panels)
    assert skipped == [] and scale["loss"] and scale["cls"] and not scale["spc"]
    assert off == {"acc": ["no_acc"]}
    for name, paths in (("mad", mad), ("tacos", tacos)):
        dataset = "synth_mad" if name == "mad" else "synth_tacos"
        run_script("plots.py", "training_curves", "--dataset", dataset, "--metrics", *paths,
                   "--out", str(tmp_path / f"curves_{name}"))
        _assert_images(tmp_path / f"curves_{name}")


def _long(paths):
    curves = plots.wflib.load_curves(paths)
    return curves.melt(id_vars=["iteration", "variant", "seed"], value_vars=["loss", "cls", "reg", "acc", "spc"],
                       var_name="curve", value_name="value")


def test_ablation_whiskers_come_from_the_tables_interval_columns(fixture_runs, tmp_path):
    """With the table's CSV, bars are its means and whiskers its `<metric>_lo/_hi` interval when
    present, else its ± std; without the CSV, mean ± sd over the runs' seeds."""
    _, metrics, _ = fixture_runs
    runs = plots.wflib.load_runs(metrics["synth_tacos"])
    order = ["full", "no_gate"]
    table = pd.DataFrame({"variant": order, "R1@0.3": [42.0, 39.0], "R1@0.3_std": [2.0, 1.5]})
    summary, kind = plots.ablation_summary(runs, table, ["R1@0.3"], order)
    assert kind == "± sd over seeds"
    assert summary.set_index("variant").loc["no_gate", ["low", "high"]].tolist() == [37.5, 40.5]
    table = table.assign(**{"R1@0.3_lo": [40.0, 36.0], "R1@0.3_hi": [43.0, 41.0]})
    summary, kind = plots.ablation_summary(runs, table, ["R1@0.3"], order)
    assert "95 % interval (seeds: t; videos: bootstrap)" in kind
    assert summary.set_index("variant").loc["no_gate", ["mean", "low", "high"]].tolist() == [39.0, 36.0, 41.0]
    summary, _ = plots.ablation_summary(runs, None, ["R1@0.3"], order)
    assert summary.set_index("variant").loc["no_gate", "mean"] == pytest.approx(39.0)
    assert summary.set_index("variant").loc["no_gate", "high"] == pytest.approx(39.0 + 3 ** 0.5)
    # the real table of these runs: rows per (variant, query kind), `_mean` and interval `_lo/_hi`
    run_script("tables.py", "ablation", "--dataset", "synth_tacos", "--paper-dataset", "tacos", "--paper", PAPER,
               "--synthetic", "--metrics", *metrics["synth_tacos"], "--variants", *order, "--out", str(tmp_path / "t"))
    table = pd.read_csv(tmp_path / "t.csv")
    summary, kind = plots.ablation_summary(runs, table, ["R1@0.3"], order)
    row = table[(table["variant"] == "no_gate") & (table["kind"] == "all")].iloc[0]
    assert "95 % interval (seeds: t; videos: bootstrap)" in kind
    assert summary.set_index("variant").loc["no_gate", ["mean", "low", "high"]].tolist() == \
        [row["R1@0.3_mean"], row["R1@0.3_lo"], row["R1@0.3_hi"]]
    run_script("plots.py", "ablation", "--dataset", "synth_tacos", "--metrics", *metrics["synth_tacos"],
               "--variants", *order, "--table", str(tmp_path / "t.csv"), "--out", str(tmp_path / "ablation"))
    _assert_images(tmp_path / "ablation")
    with pytest.raises(ValueError, match="no row for variant 'pool_max'"):
        plots.ablation_summary(runs, table, ["R1@0.3"], order + ["pool_max"])


def _bench(path, rows):
    path.write_text(json.dumps({"results": rows}))
    return path


def test_scaling_exponents(tmp_path):
    rows = [{"backbone": name, "L": n, "fwd_time_s": 1e-4 * n ** p, "fwd_bwd_time_ms": 0.3 * n ** p,
             "peak_mem_mb": 0.01 * n ** p}
            for name, p in (("hieramamba", 1.0), ("attention", 2.0)) for n in (2048, 4096, 8192, 16384)]
    rows.append({"backbone": "attention", "L": 32768, "ok": False, "error": "out of memory"})
    bench = _bench(tmp_path / "bench.json", rows)
    run_script("plot_scaling.py", str(bench), "--out", str(tmp_path / "scaling"), "--table", str(tmp_path / "exp"))
    _assert_images(tmp_path / "scaling")
    exponents = pd.read_csv(tmp_path / "exp.csv")
    for model, expected in (("hieramamba", 1.0), ("attention", 2.0)):
        sub = exponents[exponents["model"] == model]
        assert set(sub["measure"]) == {"fwd_time_s", "fwd_bwd_time_ms", "peak_mem_mb"}
        assert sub["exponent"].to_numpy() == pytest.approx(expected, abs=1e-9)
    assert (exponents["max_length"] == 16384).all(), "the failed (OOM) record is left out"
    assert "<caption>Scaling: fitted log-log exponent per model</caption>" in (tmp_path / "exp.html").read_text()


def test_scaling_rejects_unknown_layout(tmp_path):
    bench = _bench(tmp_path / "bench.json", [{"seconds": 1.0}])
    result = subprocess.run([sys.executable, str(SCRIPTS / "plot_scaling.py"), str(bench), "--out",
                             str(tmp_path / "s"), "--table", str(tmp_path / "t")], capture_output=True, text=True)
    assert result.returncode != 0 and "record 0" in result.stderr and str(bench) in result.stderr


def test_scaling_reads_the_bench_report_layout(tmp_path):
    """`hieramamba bench scaling --out` nests points under backbone.points with a `spec` each."""
    points = []
    for g_mix, p in (("hydra", 1.0), ("attention", 2.0)):
        for n in (512, 1024, 2048):
            spec = {"kind": "backbone", "name": "hieramamba", "L": n, "d_model": 64, "global_mixer": g_mix,
                    "local_mixer": "window_attention", "repeats": 1}
            points.append({"spec": spec, "n_params": 1000, "fwd_s": 1e-5 * n ** p, "fwd_peak_mb": 1e-3 * n ** p})
    points.append({"spec": dict(points[0]["spec"], L=4096), "error": "timeout after 10 s"})
    bench = tmp_path / "bench.json"
    fit = {"min_length": 512, "min_points": 3}  # the benchmark's fit rule, which the plot follows
    bench.write_text(json.dumps({"env": {}, "args": {}, "backbone": {"points": points, "slopes": [], "fit": fit}}))
    run_script("plot_scaling.py", str(bench), "--out", str(tmp_path / "scaling"), "--table", str(tmp_path / "exp"))
    exponents = pd.read_csv(tmp_path / "exp.csv").set_index(["model", "measure"])["exponent"]
    assert exponents[("hieramamba (hydra+window_attention)", "fwd_s")] == pytest.approx(1.0)
    assert exponents[("hieramamba (attention+window_attention)", "fwd_peak_mb")] == pytest.approx(2.0)


def test_scaling_marks_the_wall_and_fits_only_reliable_points(tmp_path):
    """A wall point (timeout) is marked, not dropped; the fit skips short lengths and the wall."""
    sys.path.insert(0, str(SCRIPTS))
    import plot_scaling

    points = []
    for name, p in (("transformer", 2.0), ("hieramamba", 1.0)):
        for n in (512, 1024, 2048, 4096, 8192):
            # flat below 2k (fixed costs), then L^p
            points.append({"spec": {"name": name, "L": n, "d_model": 256}, "fwd_s": 1e-6 * max(n, 2048) ** p})
    points.append({"spec": {"name": "transformer", "L": 16384, "d_model": 256}, "error": "timeout after 60 s",
                   "wall": "timeout"})
    points.append({"spec": {"name": "transformer", "L": 32768, "d_model": 256}, "wall": "timeout", "beyond_wall": True})
    env = {"malloc_env": {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "17179869184"}, "fresh_process": True,
           "torch_threads": 2, "load_average_at_start": [1.5, 1.0, 1.0]}
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps({"env": env, "backbone": {"points": points, "fit": {"min_length": 2048, "min_points": 3}}}))
    walls = []
    frame = plot_scaling.load_bench(str(bench), walls)
    assert walls == [("transformer", 16384, "timeout")]  # the point beyond the wall is not a second wall
    assert frame["length"].max() == 8192
    exps = plot_scaling.fit_exponents(frame, 2048, 3).set_index("model")
    assert exps.loc["transformer", "exponent"] == pytest.approx(2.0)  # the flat short points are not fitted
    assert exps.loc["transformer", "min_length"] == 2048 and exps.loc["transformer", "points"] == 3
    assert math.isnan(plot_scaling.fit_exponents(frame, 4096, 3).set_index("model").loc["hieramamba", "exponent"])
    settings = plot_scaling.bench_settings(json.loads(bench.read_text()))
    assert "MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=17179869184" in settings["subtitle"]
    assert "fresh process per point" in settings["subtitle"] and "2 threads" in settings["subtitle"]
    run_script("plot_scaling.py", str(bench), "--out", str(tmp_path / "scaling"), "--table", str(tmp_path / "exp"))
    _assert_images(tmp_path / "scaling")
    assert "a point at a wall" in (tmp_path / "exp.md").read_text()
