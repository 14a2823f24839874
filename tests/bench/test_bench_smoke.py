"""A tiny run of the scaling benchmark's code paths (not a timing test)."""

from __future__ import annotations

import json

import pytest

from hieramamba.bench import cli, scaling


def test_scan_section_in_process(tmp_path, capsys):
    out = tmp_path / "bench.json"
    rc = cli.main(["scaling", "--what", "scan", "--in-process", "--scan-lengths", "48,100", "--repeats", "1",
                   "--loop-max-length", "48", "--matmul-size", "64", "--out", str(out)])
    assert rc == 0
    report = json.loads(out.read_text())
    assert set(report["env"]["malloc_env"]) == {"MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_"}
    points = report["scan"]["points"]
    assert [p["L"] for p in points] == [48, 100]
    for p in points:
        assert "error" not in p["chunked"], p["chunked"]
        assert p["chunked"]["fwd_s"] > 0 and p["chunked"]["fwd_bwd_s"] > 0 and p["chunked"]["gflops"] > 0
        assert p["chunked"]["fwd_peak_mb"] is None  # in-process: no honest peak memory
    assert points[0]["loop"]["fwd_s"] > 0 and points[0]["speedup"] > 0 and points[0]["ideal_speedup"] > 0
    assert report["scan"]["batched_matmul"]["gflops"] > 0
    assert points[1]["loop"] is None  # beyond --loop-max-length
    printed = capsys.readouterr().out
    assert "MALLOC_MMAP_MAX_" in printed and "SSD scan alone" in printed


def test_backbone_section_in_process(tmp_path):
    if scaling._backbone_available() is not None:
        pytest.skip(f"HieraMamba backbone not importable: {scaling._backbone_available()}")
    out = tmp_path / "bench.json"
    rc = cli.main(["scaling", "--what", "backbone", "--in-process", "--backbone-lengths", "32,64", "--widths", "64",
                   "--mixers", "hydra:window_attention", "--modes", "fwd", "--repeats", "1",
                   "--fit-min-length", "32", "--fit-min-points", "2", "--out", str(out)])
    assert rc == 0
    report = json.loads(out.read_text())
    points = report["backbone"]["points"]
    assert len(points) == 2 and all("error" not in p for p in points), points
    slope = [s for s in report["backbone"]["slopes"] if s["mode"] == "fwd"][0]
    assert slope["lengths"] == [32, 64] and slope["slope"] is not None


def test_fresh_process_point_and_child_entry(capsys):
    spec = dict(kind="scan", impl="chunked", L=40, chunk_size=16, repeats=1, modes=["fwd"])
    # the child entry point prints one JSON line
    assert scaling.main(["--point", json.dumps(dict(spec, fresh=True))]) == 0
    child = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert child["fwd_s"] > 0 and child["fwd_peak_mb"] is not None
    # and a real subprocess, with the allocator settings passed to it
    r = scaling.run_point(dict(kind="matmul", size=32, repeats=1), True, 300, scaling.MALLOC_ENV)
    assert r["gflops"] > 0, r


def test_slope_fit_and_argument_parsing():
    assert scaling.fit_loglog_slope([1, 2, 4], [3.0, 6.0, 12.0]) == pytest.approx(1.0)
    assert scaling.fit_loglog_slope([1, 2, 4], [1.0, 4.0, 16.0]) == pytest.approx(2.0)
    assert scaling.fit_loglog_slope([2], [1.0]) is None
    args = scaling.parse_args(["--lengths", "2k,4k", "--mixers", "hydra:none,attention:window_attention"])
    assert args.scan_lengths == [2048, 4096] and args.backbone_lengths == [2048, 4096]
    assert args.mixers == [("hydra", "none"), ("attention", "window_attention")]
    assert args.fresh_process is True
    with pytest.raises(SystemExit):
        scaling.parse_args(["--mixers", "lstm:none"])


def test_seed_backbones_get_their_own_series(tmp_path):
    """--backbones adds one series per seed backbone (no mixer switch) beside HieraMamba's."""
    out = tmp_path / "bench.json"
    rc = cli.main(["scaling", "--what", "backbone", "--in-process", "--backbone-lengths", "32,64", "--widths", "32",
                   "--backbones", "hieramamba,snag", "--mixers", "hydra:window_attention", "--modes", "fwd",
                   "--repeats", "1", "--fit-min-length", "32", "--fit-min-points", "2", "--out", str(out)])
    assert rc == 0
    report = json.loads(out.read_text())
    names = [p["spec"]["name"] for p in report["backbone"]["points"]]
    assert names == ["hieramamba", "hieramamba", "snag", "snag"], names
    assert all("error" not in p for p in report["backbone"]["points"]), report["backbone"]["points"]
    assert "global_mixer" not in report["backbone"]["points"][2]["spec"]
    fwd = {s["backbone"]: s for s in report["backbone"]["slopes"] if s["mode"] == "fwd"}
    assert set(fwd) == {"hieramamba", "snag"} and fwd["snag"]["slope"] is not None
    with pytest.raises(SystemExit):
        scaling.parse_args(["--backbones", "lstm"])


def test_ssm_backend_reaches_the_backbone():
    """--ssm-backend goes into the backbone: torch runs on CPU, mamba_ssm refuses CPU tensors."""
    base = dict(kind="backbone", name="hieramamba", L=64, d_model=64, device="cpu", repeats=1, modes=["fwd"],
                global_mixer="hydra", local_mixer="window_attention",
                backbone_kwargs={"num_levels": 2, "headdim": 16})
    assert scaling.measure_point(dict(base, ssm_backend="torch"))["fwd_s"] > 0
    with pytest.raises(RuntimeError, match="needs the tensors on a CUDA device"):
        scaling.measure_point(dict(base, ssm_backend="mamba_ssm"))
    assert scaling.parse_args(["--ssm-backend", "torch"]).ssm_backend == "torch"
