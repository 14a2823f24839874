"""The scaling benchmark's wall handling and slope-fit rule (``hieramamba.bench.scaling_fit`` and the
backbone section of ``hieramamba.bench.scaling``), on fake point results: no timing involved."""

from __future__ import annotations

import json

import pytest

from hieramamba.bench import cli, scaling, scaling_fit, scaling_point


def test_wall_reason_classifies_time_and_memory_failures_only():
    assert scaling_fit.wall_reason({"error": "timeout after 60 s"}) == "timeout"
    assert scaling_fit.wall_reason({"error": "RuntimeError: DefaultCPUAllocator: can't allocate memory: "
                                             "you tried to allocate 17179869184 bytes"}) == "out of memory"
    assert scaling_fit.wall_reason({"error": "killed by signal 9 (out of memory?)"}) == "out of memory"
    assert scaling_fit.wall_reason({"error": "ValueError: bad config"}) is None  # a bug, not a wall
    assert scaling_fit.wall_reason({"fwd_s": 1.0}) is None


def test_reliable_slope_uses_only_long_measured_points():
    # quadratic at L >= 2k; the short points are flat (fixed costs) and must not pull the slope down
    pts = [(512, 1.0), (1024, 1.0), (2048, 4.0), (4096, 16.0), (8192, 64.0), (16384, None)]
    fit = scaling_fit.reliable_slope(pts)
    assert fit["slope"] == pytest.approx(2.0) and fit["lengths"] == [2048, 4096, 8192]
    assert scaling_fit.fit_loglog_slope([p[0] for p in pts[:5]], [p[1] for p in pts[:5]]) < 1.9  # the naive fit
    two = scaling_fit.reliable_slope([(1024, 1.0), (2048, 2.0), (4096, 4.0), (8192, None)])
    assert two["slope"] is None and "2 measured point(s) at L >= 2048, need 3" in two["note"]


def _fake_run_point(wall_at: dict):
    """run_point stand-in: time = 1e-6 L^p per series; a series fails at its wall length."""

    def fake(spec, fresh, timeout, child_env):
        name = spec["name"]
        if name in wall_at and spec["L"] >= wall_at[name][0]:
            return {"spec": spec, "error": wall_at[name][1]}
        power = 2.0 if name == "transformer" else 1.0
        return {"spec": spec, "fwd_s": 1e-6 * spec["L"] ** power, "fwd_peak_mb": 1e-3 * spec["L"] ** power}

    return fake


def test_backbone_section_marks_the_wall_and_fits_before_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(scaling, "run_point", _fake_run_point({"transformer": (16384, "timeout after 60 s")}))
    out = tmp_path / "bench.json"
    rc = cli.main(["scaling", "--what", "backbone", "--backbone-lengths", "1k,2k,4k,8k,16k,32k", "--widths", "256",
                   "--backbones", "hieramamba,transformer", "--mixers", "hydra:window_attention", "--modes", "fwd",
                   "--out", str(out)])
    assert rc == 0
    backbone = json.loads(out.read_text())["backbone"]
    tr = [p for p in backbone["points"] if p["spec"]["name"] == "transformer"]
    assert [p["spec"]["L"] for p in tr] == [1024, 2048, 4096, 8192, 16384, 32768]  # nothing left out
    assert tr[4]["wall"] == "timeout" and "beyond_wall" not in tr[4]
    assert tr[5] == {"spec": tr[5]["spec"], "wall": "timeout", "beyond_wall": True}  # not run
    slope = {(s["backbone"], s["mode"]): s for s in backbone["slopes"]}
    assert slope[("transformer", "fwd")]["slope"] == pytest.approx(2.0)
    assert slope[("transformer", "fwd")]["lengths"] == [2048, 4096, 8192]  # >= 2k and before the wall
    assert slope[("transformer", "fwd")]["wall"] == {"L": 16384, "reason": "timeout"}
    assert slope[("hieramamba", "fwd")]["slope"] == pytest.approx(1.0)
    assert slope[("hieramamba", "fwd")]["lengths"] == [2048, 4096, 8192, 16384, 32768]
    assert slope[("hieramamba", "fwd_bwd")]["slope"] is None  # mode not measured
    assert "timeout wall at L 16384" in capsys.readouterr().out


def test_a_failure_that_is_not_a_wall_does_not_stop_the_series(tmp_path, monkeypatch):
    monkeypatch.setattr(scaling, "run_point", _fake_run_point({"transformer": (2048, "ValueError: oops")}))
    out = tmp_path / "bench.json"
    cli.main(["scaling", "--what", "backbone", "--backbone-lengths", "1k,2k,4k", "--widths", "64",
              "--backbones", "transformer", "--modes", "fwd", "--out", str(out)])
    points = json.loads(out.read_text())["backbone"]["points"]
    assert [p.get("error") for p in points] == [None, "ValueError: oops", "ValueError: oops"]
    assert not any(p.get("wall") for p in points)


def test_transformer_point_runs_in_process():
    r = scaling_point.measure_point(dict(kind="backbone", name="transformer", L=40, d_model=32, repeats=1,
                                         modes=["fwd"]))
    assert r["fwd_s"] > 0 and r["n_params"] > 0


def test_memory_cap_turns_a_huge_allocation_into_a_memory_wall():
    """A fresh point process under --max-memory-gb fails with an allocation error, read as the memory wall."""
    spec = dict(kind="matmul", size=40000, repeats=1, max_memory_gb=1.0)  # two 6 GB operands
    r = scaling.run_point(spec, True, 300, {})
    assert scaling_fit.wall_reason(r) == "out of memory", r


def test_activation_checkpointing_flag_reaches_hieramamba_points_only(tmp_path, monkeypatch):
    monkeypatch.setattr(scaling, "run_point", _fake_run_point({}))
    out = tmp_path / "bench.json"
    cli.main(["scaling", "--what", "backbone", "--backbone-lengths", "1k", "--widths", "64", "--backbones",
              "hieramamba,snag", "--mixers", "hydra:window_attention", "--modes", "fwd_bwd",
              "--activation-checkpointing", "--out", str(out)])
    specs = {p["spec"]["name"]: p["spec"] for p in json.loads(out.read_text())["backbone"]["points"]}
    assert specs["hieramamba"]["backbone_kwargs"] == {"activation_checkpointing": True}
    assert "backbone_kwargs" not in specs["snag"]


def test_backbone_point_records_the_peak_after_the_timed_runs_too():
    spec = dict(kind="backbone", name="hieramamba", L=64, d_model=32, repeats=2, modes=["fwd", "fwd_bwd"],
                global_mixer="hydra", local_mixer="window_attention", fresh=True,
                backbone_kwargs={"activation_checkpointing": True})
    r = scaling_point.measure_point(spec)
    assert r["fwd_peak_all_mb"] >= r["fwd_peak_mb"] >= 0
    assert r["fwd_bwd_peak_all_mb"] >= r["fwd_bwd_peak_mb"] >= r["fwd_peak_all_mb"]
