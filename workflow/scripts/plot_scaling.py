"""Scaling plot from `hieramamba bench scaling`'s JSON: time and peak memory vs video length.

Log-log axes, one line per model (backbone or mixer choice) and measurement, and the fitted
log-log slope (the empirical exponent: 1 = linear, 2 = quadratic) per line, also written as a table.

Accepted JSON: the report of `hieramamba bench scaling` (its `backbone.points`: one record per
(backbone, mixers, width, L) with `spec` and `fwd_s`, `fwd_bwd_s`, `fwd_peak_mb`, `fwd_bwd_peak_mb`;
failed points are left out), or a list of records (or an object holding one under `results`,
`records`, `rows` or `measurements`), each naming the model (`backbone`, `model`, `name`, `mixer`,
`variant` or `label`), the length (`L`, `length`, `seq_len`, `seq_length` or `T`) and its
measurements: numeric keys with `mem` or `peak` in the name or ending in `_mb`/`_gb`/`_bytes` are
memories (converted to MB), other keys with `time` in the name or ending in `_s`/`_ms` are times
(converted to s). Records with `ok: false` or an `error`, and null measurements, are left out.
"""

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import wflib  # noqa: E402

wflib.use_agg()
import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402

LIST_KEYS = ("results", "records", "rows", "measurements")
# the slope-fit rule when the JSON does not carry the benchmark's own (hieramamba.bench.scaling_fit)
MIN_FIT_LENGTH = 2048
MIN_FIT_POINTS = 3
NAME_KEYS = ("backbone", "model", "name", "mixer", "variant", "label")
LENGTH_KEYS = ("L", "length", "seq_len", "seq_length", "T")
ID_KEYS = set(NAME_KEYS) | set(LENGTH_KEYS) | {"width", "d_model", "batch", "repeats", "threads", "seed", "n_params"}


def _bench_points(section: dict) -> list[dict]:
    """Flatten `hieramamba bench scaling` backbone points into records with a readable model name.

    A point where its series hit the wall (``wall``: timeout / out of memory) stays as a record
    with ``wall`` and no measurements, so the plot can mark it; points beyond the wall (not run)
    and points that failed for another reason are left out.
    """
    points = [p for p in section.get("points", []) if not p.get("beyond_wall") and (p.get("wall") or not p.get("error"))]
    widths = {p["spec"].get("d_model") for p in points}
    records = []
    for point in points:
        spec = point["spec"]
        mixers = f"{spec.get('global_mixer')}+{spec.get('local_mixer')}"
        label = spec.get("name", "backbone")
        if "global_mixer" in spec:
            label += f" ({mixers})"
        if len(widths) > 1:
            label += f" d={spec.get('d_model')}"
        record = {"model": label, "L": spec["L"]}
        if point.get("wall"):
            record["wall"] = point["wall"]
        else:
            record.update({k: v for k, v in point.items() if k not in ("spec", "n_params", "flops", "gflops")})
        records.append(record)
    return records


def bench_settings(data) -> dict:
    """What the measuring processes ran under (for the plot's subtitle) and the slope-fit rule."""
    env = data.get("env", {}) if isinstance(data, dict) else {}
    fit = ((data.get("backbone") or {}).get("fit") or {}) if isinstance(data, dict) else {}
    malloc = env.get("malloc_env") or {}
    allocator = " ".join(f"{k}={v}" for k, v in malloc.items() if v is not None) or "default glibc allocator"
    parts = [allocator]
    if env.get("fresh_process") is not None:
        parts.append("fresh process per point" if env["fresh_process"] else "all points in one process")
    if env.get("torch_threads"):
        parts.append(f"{env['torch_threads']} threads")
    if env.get("load_average_at_start"):
        parts.append(f"load {env['load_average_at_start'][0]:.1f}")
    return {"subtitle": "; ".join(parts),
            "min_length": int(fit.get("min_length", MIN_FIT_LENGTH)),
            "min_points": int(fit.get("min_points", MIN_FIT_POINTS))}


def _records(data) -> list[dict]:
    if isinstance(data, dict) and isinstance(data.get("backbone"), dict):
        if data["backbone"].get("skipped"):
            raise ValueError(f"the benchmark skipped the backbones: {data['backbone']['skipped']}")
        return _bench_points(data["backbone"])
    if isinstance(data, list):
        return data
    if isinstance(data, dict):
        for key in LIST_KEYS:
            if isinstance(data.get(key), list):
                return data[key]
    raise ValueError(f"bench JSON: expected a list of records or an object with one of {LIST_KEYS}")


def _kind_and_scale(key: str):
    low = key.lower()
    if "mem" in low or "peak" in low or low.endswith(("_mb", "_gb", "_bytes")):
        if low.endswith("_gb"):
            return "peak memory (MB)", 1024.0
        if low.endswith("_bytes") or low.endswith("_b"):
            return "peak memory (MB)", 1.0 / 2**20
        return "peak memory (MB)", 1.0
    if "time" in low or low.endswith("_s") or low.endswith("_ms"):
        return "time (s)", (1e-3 if low.endswith("_ms") else 1.0)
    return None, None


def load_bench(path: str, walls: list | None = None) -> pd.DataFrame:
    """Long table: model, length, kind (time/memory), measure (the JSON key), value.

    Records that hit a wall (``wall``: the reason) add (model, length, reason) to ``walls``.
    """
    rows = []
    for index, record in enumerate(_records(wflib.read_json(path))):
        if record.get("wall"):
            if walls is not None:
                walls.append((str(record.get("model") or record.get("backbone")), int(record["L"]), record["wall"]))
            continue
        if record.get("ok") is False or record.get("error"):
            continue
        name_parts = [str(record[k]) for k in NAME_KEYS if record.get(k) not in (None, "")]
        length_key = next((k for k in LENGTH_KEYS if k in record), None)
        if not name_parts or length_key is None:
            raise ValueError(f"{path}: record {index} lacks a model name {NAME_KEYS} or a length {LENGTH_KEYS}: "
                             f"{sorted(record)}")
        for key, value in record.items():
            if key in ID_KEYS or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            kind, scale = _kind_and_scale(key)
            if kind is None or value is None or not math.isfinite(value) or value <= 0:
                continue
            rows.append({"model": " / ".join(name_parts[:2]), "length": int(record[length_key]),
                         "kind": kind, "measure": key, "value": float(value) * scale})
    frame = pd.DataFrame(rows, columns=["model", "length", "kind", "measure", "value"])
    if frame.empty:
        raise ValueError(f"{path}: no time or memory measurements found")
    return frame


def fit_exponents(frame: pd.DataFrame, min_length: int = MIN_FIT_LENGTH, min_points: int = MIN_FIT_POINTS) -> pd.DataFrame:
    """Least-squares slope of log(value) on log(length) per (model, measure), over the reliable points
    only: lengths >= ``min_length`` (shorter ones are dominated by fixed costs), and only with at
    least ``min_points`` of them (else NaN). Wall points carry no measurement and never enter.
    ``min_length``/``max_length``/``points`` describe the fitted points."""
    rows = []
    for (model, kind, measure), sub in frame.groupby(["model", "kind", "measure"], sort=True):
        sub = sub.groupby("length", as_index=False)["value"].mean()
        used = sub[sub["length"] >= min_length]
        if len(used) >= min_points:
            slope, _ = np.polyfit(np.log(used["length"]), np.log(used["value"]), 1)
        else:
            slope = math.nan
        rows.append({"model": model, "kind": kind, "measure": measure, "exponent": float(slope),
                     "min_length": int(used["length"].min()) if len(used) else None,
                     "max_length": int(used["length"].max()) if len(used) else None,
                     "points": len(used)})
    return pd.DataFrame(rows)


def plot_scaling(bench, png, pdf, csv, md, tex, html=None):
    settings = bench_settings(wflib.read_json(bench))
    walls: list = []
    frame = load_bench(bench, walls)
    exponents = fit_exponents(frame, settings["min_length"], settings["min_points"])
    slope = {(r.model, r.measure): r.exponent for r in exponents.itertuples()}
    frame["line"] = [f"{m} · {k} (slope {wflib.fmt_num(slope[(m, k)])})" for m, k in zip(frame["model"], frame["measure"])]
    kinds = [k for k in ("time (s)", "peak memory (MB)") if k in set(frame["kind"])]
    fig, axes = plt.subplots(1, len(kinds), figsize=(6.5 * len(kinds), 4.5), squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        sub = frame[frame["kind"] == kind]
        sns.lineplot(data=sub, x="length", y="value", hue="line", marker="o", errorbar=None, ax=ax)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("video length L (feature steps)")
        ax.set_ylabel(kind)
        ax.set_title(f"{kind} vs length (log-log; slope = fitted exponent)")
        mark_walls(ax, walls)
        ax.legend(fontsize=7, title=None)
    fig.suptitle(settings["subtitle"], fontsize=8)
    wflib.save_figure(fig, png, pdf)
    shown = exponents.assign(exponent=[wflib.fmt_num(v) for v in exponents["exponent"]])
    rule = (f"fitted only over lengths >= {settings['min_length']} with >= {settings['min_points']} measured "
            "points; a point at a wall (timeout / out of memory) has no measurement and is not fitted")
    wflib.write_table(exponents, shown, csv, md, tex, "Scaling: fitted log-log exponent per model",
                      ["exponent = slope of log(value) vs log(L); 1 = linear, 2 = quadratic; " + rule + "."],
                      label="tab:scaling", html=html)


def mark_walls(ax, walls: list) -> None:
    """Mark where a model hit its wall: a red X at that length on the top edge and its reason."""
    for i, (model, length, reason) in enumerate(sorted(set(walls), key=lambda w: (w[1], w[0]))):
        ax.axvline(length, color="tab:red", linestyle=":", linewidth=1)
        ax.plot([length], [0.97], marker="X", color="tab:red", markersize=9, transform=ax.get_xaxis_transform(),
                clip_on=False, label=f"{model}: {reason} at L={length}" if i < 8 else None)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("bench")
    parser.add_argument("--out", required=True, help="plot prefix: <out>.png, <out>.pdf")
    parser.add_argument("--table", required=True, help="table prefix: <table>.csv, .md, .tex, .html")
    args = parser.parse_args(argv)
    plot_scaling(args.bench, f"{args.out}.png", f"{args.out}.pdf",
                 f"{args.table}.csv", f"{args.table}.md", f"{args.table}.tex", f"{args.table}.html")
    return 0


wflib.run_script(globals(), main, lambda sm: plot_scaling(
    sm.input.bench, sm.output.png, sm.output.pdf, sm.output.csv, sm.output.md, sm.output.tex, sm.output.html))
