"""The report of `hieramamba gpu-check`: the machine and versions, every step with its command,
and the figures read back from the files the steps wrote (gpu_check.json + gpu_check.md).

Every figure names the step (hence the command) it comes from; nothing here measures anything.
Targets (issue 15): mamba_ssm SSD path >= 5x the torch path on the same GPU, whole-layer output
parity <= 1e-3 relative (parity's hydra_backend check), HieraMamba >= 10x global attention at 16k.
They are assessed on CUDA only: CPU mode runs tiny sizes to test the code path.
"""

from __future__ import annotations

import json
import platform
import re
import subprocess
from pathlib import Path
from typing import Any

from hieramamba.atomic import atomic_write_json

TARGETS = {"mamba_ssm_over_torch": 5.0, "hieramamba_over_attention_at_16k": 10.0, "layer_parity_rel": 1e-3}
L_16K = 16384


def environment() -> dict[str, Any]:
    import torch

    from hieramamba import __version__
    from hieramamba.engine.run import dist_version, git_commit

    cuda = torch.cuda.is_available()
    driver = None
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
        driver = smi.stdout.strip().splitlines()[0] if smi.returncode == 0 and smi.stdout.strip() else None
    except (OSError, subprocess.TimeoutExpired):
        pass
    return {
        "card": torch.cuda.get_device_name(0) if cuda else None,
        "card_memory_gib": round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1) if cuda else None,
        "driver": driver,
        "cuda": torch.version.cuda,
        "torch": torch.__version__,
        "triton": dist_version("triton"),
        "mamba_ssm": dist_version("mamba-ssm") or dist_version("mamba_ssm"),
        "hieramamba": __version__,
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "git_commit": git_commit(),
    }


def _load(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _pytest_counts(steps: list[dict]) -> dict[str, int] | None:
    step = next((s for s in steps if s["name"] == "pytest" and s.get("tail")), None)
    if step is None:
        return None
    text = " ".join(step["tail"])
    return {word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|skipped|deselected|error)", text)}


def _series(path: Path) -> list[dict]:
    """One row per measured (L, d) of a scaling JSON: times in ms, peaks in MiB, error if any."""
    data = _load(path) or {}
    rows = []
    for point in (data.get("backbone") or {}).get("points", []):
        spec = point["spec"]
        rows.append({"L": spec["L"], "d_model": spec["d_model"],
                     "fwd_ms": None if point.get("fwd_s") is None else point["fwd_s"] * 1e3,
                     "fwd_bwd_ms": None if point.get("fwd_bwd_s") is None else point["fwd_bwd_s"] * 1e3,
                     "fwd_peak_mb": point.get("fwd_peak_mb"), "fwd_bwd_peak_mb": point.get("fwd_bwd_peak_mb"),
                     "error": point.get("error"),
                     "oom": bool(point.get("error") and "memory" in point["error"].lower())})
    return rows


def _ratios(slow: list[dict], fast: list[dict]) -> list[dict]:
    """slow / fast time per common L (e.g. torch path / mamba_ssm path)."""
    by_l = {r["L"]: r for r in fast}
    out = []
    for row in slow:
        other = by_l.get(row["L"])
        if other is None:
            continue
        ratio = {"L": row["L"]}
        for key in ("fwd_ms", "fwd_bwd_ms"):
            ratio[key.replace("_ms", "")] = row[key] / other[key] if row[key] and other[key] else None
        out.append(ratio)
    return out


def summarise(out: Path, steps: list[dict], device: str) -> dict[str, Any]:
    """The figures of every step, read from the files the steps wrote under `out`."""
    figures: dict[str, Any] = {"pytest": _pytest_counts(steps)}
    parity = _load(out / "parity.json")
    if parity is not None:
        checks = parity.get("checks", [])
        layer = [c for c in checks if c["name"].startswith("hydra_backend")]
        figures["parity"] = {"passed": parity.get("passed"), "n_checks": len(checks),
                             "n_failed": sum(not c["passed"] for c in checks),
                             "worst": {c["name"]: c["worst"] for c in checks},
                             "layer_max_rel_error": max((max(c["errors"].values()) for c in layer), default=None)}
    series = {p.stem[len("scaling_"):]: _series(p) for p in sorted(out.glob("scaling_*.json"))}
    figures["scaling"] = series
    fast = series.get("hieramamba_mamba_ssm") if device == "cuda" else series.get("hieramamba_torch")
    derived: dict[str, Any] = {"assessed": device == "cuda"}
    if series.get("hieramamba_torch") and series.get("hieramamba_mamba_ssm"):
        derived["mamba_ssm_over_torch"] = _ratios(series["hieramamba_torch"], series["hieramamba_mamba_ssm"])
    if fast and series.get("global_attention"):
        ratios = _ratios(series["global_attention"], fast)
        derived["hieramamba_over_attention"] = ratios
        derived["hieramamba_over_attention_at_16k"] = next((r for r in ratios if r["L"] == L_16K), None)
    figures["scaling_derived"] = derived
    figures["throughput"] = {p.stem[len("throughput_"):]: _load(p) for p in sorted(out.glob("throughput_*.json"))}
    run = _load(out / "train_eval" / "run" / "metrics.json")
    if run is not None:
        figures["train_eval"] = {k: run.get(k) for k in ("dataset", "metrics", "n_queries", "train_time_s",
                                                         "eval_time_s", "peak_mem_mb", "device")}
    return figures


def _fmt(value, digits: int = 1) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def markdown(report: dict) -> str:
    env, fig = report["env"], report["figures"]
    lines = [f"# hieramamba gpu-check ({report['device_mode']} mode)", ""]
    if report["device_mode"] == "cpu":
        lines += ["CPU mode: tiny sizes, a test of the code path. **No GPU figure here is measured.**", ""]
    lines += ["| | |", "|---|---|"] + [f"| {k} | {_fmt(v)} |" for k, v in env.items()]
    lines += ["", f"Total wall time: {report['total_wall_s']} s", "", "## Steps", "",
              "| step | status | wall s | budget s | command |", "|---|---|---|---|---|"]
    for s in report["steps"]:
        cmd = f"`{s['command']}`" if s.get("command") else s.get("reason", "")
        lines.append(f"| {s['name']} | {s['status']} | {_fmt(s.get('wall_s'))} | {_fmt(s.get('budget_s'), 0)} | {cmd} |")
    lines += ["", "## Figures", "", f"pytest -m cuda (step pytest): {fig.get('pytest')}", ""]
    if fig.get("parity"):
        p = fig["parity"]
        lines += [f"parity (step parity): {p['n_checks'] - p['n_failed']} of {p['n_checks']} checks passed; "
                  f"whole Hydra layer, max relative error {_fmt(p['layer_max_rel_error'], 6)} "
                  f"(target <= {TARGETS['layer_parity_rel']})", ""]
    lines += ["### Scaling (steps scaling_*; ms = median, MiB = max_memory_allocated)", "",
              "| series | d | L | fwd ms | fwd+bwd ms | fwd MiB | fwd+bwd MiB | note |", "|---|---|---|---|---|---|---|---|"]
    for name, rows in fig["scaling"].items():
        for r in rows:
            note = "out of memory" if r["oom"] else (r["error"] or "")
            lines.append(f"| {name} | {r['d_model']} | {r['L']} | {_fmt(r['fwd_ms'], 2)} | {_fmt(r['fwd_bwd_ms'], 2)} | "
                         f"{_fmt(r['fwd_peak_mb'], 0)} | {_fmt(r['fwd_bwd_peak_mb'], 0)} | {note} |")
    d = fig["scaling_derived"]
    lines += ["", f"Targets assessed: {d['assessed']} (CUDA only).", ""]
    for key, label in (("mamba_ssm_over_torch", f"mamba_ssm path / torch path speed-up (target >= {TARGETS['mamba_ssm_over_torch']})"),
                       ("hieramamba_over_attention", f"HieraMamba / global attention speed-up (target >= {TARGETS['hieramamba_over_attention_at_16k']} at 16k)")):
        for r in d.get(key, []):
            lines.append(f"- {label}, L={r['L']}: fwd {_fmt(r['fwd'], 2)}x, fwd+bwd {_fmt(r['fwd_bwd'], 2)}x")
    lines += ["", "### Training throughput, released config, synthetic tensors (steps throughput_*)", "",
              "| dataset | it/s | peak MiB | batch x queries | video len x dim | projected run h |", "|---|---|---|---|---|---|"]
    for name, t in fig["throughput"].items():
        if t:
            sh = t["shapes"]
            lines.append(f"| {name}{' (tiny)' if t.get('tiny') else ''} | {_fmt(t['iterations_per_s'], 3)} | "
                         f"{_fmt(t['peak_mem_mb'], 0)} | {sh['batch_videos']} x {sh['queries_per_video']} | "
                         f"{sh['video_len']} x {sh['video_dim']} | {_fmt(t['projected_run_h'], 2)} |")
    if fig.get("train_eval"):
        lines += ["", f"train + evaluate through the CLI (steps train_eval_*): {json.dumps(fig['train_eval'])}"]
    return "\n".join(lines) + "\n"


def write_report(report: dict, json_path: Path, md_path: Path) -> None:
    atomic_write_json(json_path, report, indent=1, default=str)
    md_path.write_text(markdown(report))
