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
NAME_KEYS = ("backbone", "model", "name", "mixer", "variant", "label")
LENGTH_KEYS = ("L", "length", "seq_len", "seq_length", "T")
ID_KEYS = set(NAME_KEYS) | set(LENGTH_KEYS) | {"width", "d_model", "batch", "repeats", "threads", "seed", "n_params"}


def _bench_points(section: dict) -> list[dict]:
    """Flatten `hieramamba bench scaling` backbone points into records with a readable model name."""
    points = [p for p in section.get("points", []) if not p.get("error")]
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
        record.update({k: v for k, v in point.items() if k not in ("spec", "n_params", "flops", "gflops")})
        records.append(record)
    return records


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


def load_bench(path: str) -> pd.DataFrame:
    """Long table: model, length, kind (time/memory), measure (the JSON key), value."""
    rows = []
    for index, record in enumerate(_records(wflib.read_json(path))):
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


def fit_exponents(frame: pd.DataFrame) -> pd.DataFrame:
    """Least-squares slope of log(value) on log(length) per (model, measure); NaN with < 2 lengths."""
    rows = []
    for (model, kind, measure), sub in frame.groupby(["model", "kind", "measure"], sort=True):
        sub = sub.groupby("length", as_index=False)["value"].mean()
        if len(sub) >= 2:
            slope, _ = np.polyfit(np.log(sub["length"]), np.log(sub["value"]), 1)
        else:
            slope = math.nan
        rows.append({"model": model, "kind": kind, "measure": measure, "exponent": float(slope),
                     "min_length": int(sub["length"].min()), "max_length": int(sub["length"].max()),
                     "points": len(sub)})
    return pd.DataFrame(rows)


def plot_scaling(bench, png, pdf, csv, md, tex, html=None):
    frame = load_bench(bench)
    exponents = fit_exponents(frame)
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
        ax.legend(fontsize=7, title=None)
    wflib.save_figure(fig, png, pdf)
    shown = exponents.assign(exponent=[wflib.fmt_num(v) for v in exponents["exponent"]])
    wflib.write_table(exponents, shown, csv, md, tex, "Scaling: fitted log-log exponent per model",
                      ["exponent = slope of log(value) vs log(L); 1 = linear, 2 = quadratic."],
                      label="tab:scaling", html=html)


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
