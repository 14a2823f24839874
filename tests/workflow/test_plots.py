"""Plot scripts on fixture metrics.json / bench JSON: every plot is written (PNG + PDF) and the
scaling exponents are the known ones."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from wfhelpers import REPO, SCRIPTS, run_script

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


def _bench(path, rows):
    path.write_text(json.dumps({"results": rows}))
    return path


def test_scaling_exponents(tmp_path):
    rows = [{"backbone": name, "L": n, "fwd_time_s": 1e-4 * n ** p, "fwd_bwd_time_ms": 0.3 * n ** p,
             "peak_mem_mb": 0.01 * n ** p}
            for name, p in (("hieramamba", 1.0), ("attention", 2.0)) for n in (256, 512, 1024, 2048)]
    rows.append({"backbone": "attention", "L": 4096, "ok": False, "error": "out of memory"})
    bench = _bench(tmp_path / "bench.json", rows)
    run_script("plot_scaling.py", str(bench), "--out", str(tmp_path / "scaling"), "--table", str(tmp_path / "exp"))
    _assert_images(tmp_path / "scaling")
    exponents = pd.read_csv(tmp_path / "exp.csv")
    for model, expected in (("hieramamba", 1.0), ("attention", 2.0)):
        sub = exponents[exponents["model"] == model]
        assert set(sub["measure"]) == {"fwd_time_s", "fwd_bwd_time_ms", "peak_mem_mb"}
        assert sub["exponent"].to_numpy() == pytest.approx(expected, abs=1e-9)
    assert (exponents["max_length"] == 2048).all(), "the failed (OOM) record is left out"
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
    bench.write_text(json.dumps({"env": {}, "args": {}, "backbone": {"points": points, "slopes": []}}))
    run_script("plot_scaling.py", str(bench), "--out", str(tmp_path / "scaling"), "--table", str(tmp_path / "exp"))
    exponents = pd.read_csv(tmp_path / "exp.csv").set_index(["model", "measure"])["exponent"]
    assert exponents[("hieramamba (hydra+window_attention)", "fwd_s")] == pytest.approx(1.0)
    assert exponents[("hieramamba (attention+window_attention)", "fwd_peak_mb")] == pytest.approx(2.0)
