"""Has training reached its plateau? One table per dataset from every run's train_curve.csv.

A run's curve is its per-iteration training loss. Over the last fifth of its iterations (the
window) an ordinary least-squares line is fitted (scipy.stats.linregress); the change over the
window is slope x window length, in percent of the window's mean loss, with the 95 % interval of
Student's t on the slope's standard error. Per-iteration losses are noisy (a batch's videos and
queries), so one run resolves a change of several percent at best; per variant, the runs' changes
are pooled by their inverse variances (a fixed-effect mean: the seeds are assumed to share one
slope), which narrows the interval by about sqrt(seeds).

Verdict: `falling` (the whole interval below 0: the loss still falls, training stopped before its
plateau), `rising` (the whole interval above 0), `flat` (the interval holds 0; the table states
the interval, i.e. what a flat verdict can rule out).

Snakemake: `script:` with input.metrics (each run's metrics.json; train_curve.csv is read beside
it), params.dataset, params.variants; output.html/csv/md/tex. Command line (tests): see `--help`.
"""

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import wflib  # noqa: E402

WINDOW_FRACTION = 5  # the last 1 / WINDOW_FRACTION of the iterations
CONFIDENCE = 0.95
LOSS = "loss"
POOLED = "pooled"
NOTE = (
    f"Change: the training loss's least-squares slope over the last fifth of a run's iterations x "
    f"the window, in % of the window's mean loss, {CONFIDENCE:.0%} interval from Student's t on the slope's "
    "standard error (scipy.stats.linregress). Pooled: the inverse-variance (fixed-effect) mean of a "
    "variant's runs. falling = the interval lies below 0 (the loss still falls: not at its plateau); "
    "rising = above 0; flat = the interval holds 0, and its width says how large a change it rules out."
)


def window_change(loss: np.ndarray) -> dict:
    """The relative change of `loss` (per iteration) over its last fifth: estimate, standard
    error and interval in percent of the window's mean (module docstring)."""
    from scipy import stats

    loss = np.asarray(loss, dtype=float)
    width = max(3, math.ceil(len(loss) / WINDOW_FRACTION))
    if len(loss) < width or not np.isfinite(loss).all():
        return {"iterations": len(loss), "window": width, "window_loss": math.nan, "change_pct": math.nan,
                "se_pct": math.nan, "lo_pct": math.nan, "hi_pct": math.nan}
    tail = loss[-width:]
    fit = stats.linregress(np.arange(width, dtype=float), tail)
    mean = float(tail.mean())
    scale = 100.0 * width / mean
    change, se = float(fit.slope) * scale, float(fit.stderr) * scale
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2.0, width - 2)) * se
    return {"iterations": len(loss), "window": width, "window_loss": mean, "change_pct": change, "se_pct": se,
            "lo_pct": change - half, "hi_pct": change + half}


def pooled_change(changes: pd.DataFrame) -> dict:
    """The inverse-variance mean of several runs' changes (rows of `window_change`)."""
    from scipy import stats

    ok = changes[np.isfinite(changes["change_pct"]) & (changes["se_pct"] > 0)]
    if ok.empty:
        return {"change_pct": math.nan, "se_pct": math.nan, "lo_pct": math.nan, "hi_pct": math.nan}
    weight = 1.0 / ok["se_pct"] ** 2
    change = float((weight * ok["change_pct"]).sum() / weight.sum())
    se = float(1.0 / math.sqrt(weight.sum()))
    half = float(stats.norm.ppf(0.5 + CONFIDENCE / 2.0)) * se
    return {"change_pct": change, "se_pct": se, "lo_pct": change - half, "hi_pct": change + half}


def verdict(lo: float, hi: float) -> str:
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return wflib.DASH
    return "falling" if hi < 0 else "rising" if lo > 0 else "flat"


def build(metrics, dataset: str, variants: list[str]) -> pd.DataFrame:
    """One row per run and one pooled row per variant with more than one run."""
    curves = wflib.load_curves(metrics, dataset, required_columns=(LOSS,))
    if curves.empty:
        return curves
    runs = pd.DataFrame([{"variant": curve["variant"].iloc[0], "seed": str(curve["seed"].iloc[0]),
                          **window_change(curve[LOSS])} for _, curve in curves.groupby("run_dir", sort=False)])
    order = [v for v in variants if v in set(runs["variant"])]
    order += sorted(set(runs["variant"]) - set(order))
    out = []
    for variant in order:
        sub = runs[runs["variant"] == variant].sort_values("seed", key=lambda s: s.astype(int))
        out += sub.to_dict("records")
        if len(sub) > 1:
            out.append({"variant": variant, "seed": POOLED, "iterations": int(sub["iterations"].sum()),
                        "window": int(sub["window"].sum()), "window_loss": float(sub["window_loss"].mean()),
                        **pooled_change(sub)})
    table = pd.DataFrame(out)
    table["verdict"] = [verdict(lo, hi) for lo, hi in zip(table["lo_pct"], table["hi_pct"])]
    return table


def shown(table: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "variant": table["variant"], "seed": table["seed"], "iterations": table["iterations"].map(wflib.fmt_int),
        "last fifth": table["window"].map(wflib.fmt_int), "loss": table["window_loss"].map(lambda v: wflib.fmt_num(v, 3)),
        "change %": [wflib.fmt_interval(v, lo, hi, 1, signed=True)
                     for v, lo, hi in zip(table["change_pct"], table["lo_pct"], table["hi_pct"])],
        "verdict": table["verdict"],
    })


def make_table(metrics, dataset, variants, csv, md, tex, html=None):
    table = build(metrics, dataset, variants)
    title = f"Training plateau: {dataset} (loss change over the last fifth of training)"
    if table.empty:
        notes = [f"No run of {dataset} has a training curve."]
        table = pd.DataFrame(columns=["variant", "seed", "verdict"])
        wflib.write_table(table, table, csv, md, tex, title, notes, label=f"tab:convergence-{dataset}", html=html)
        return
    pooled = table[table["seed"] == POOLED]
    summary = pooled if not pooled.empty else table
    counts = summary["verdict"].value_counts().to_dict()
    tally = ", ".join(f"{counts[v]} {v}" for v in ("flat", "falling", "rising") if v in counts)
    notes = [f"{'Variants (pooled over seeds)' if not pooled.empty else 'Runs'}: {tally}.", NOTE]
    wflib.write_table(table, shown(table), csv, md, tex, title, notes, label=f"tab:convergence-{dataset}", html=html)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--metrics", nargs="+", required=True)
    parser.add_argument("--variants", nargs="*", default=[], help="row order (others follow, sorted)")
    parser.add_argument("--out", required=True, help="output prefix: writes <out>.csv, .md, .tex, .html")
    args = parser.parse_args(argv)
    make_table(args.metrics, args.dataset, args.variants, f"{args.out}.csv", f"{args.out}.md", f"{args.out}.tex",
               html=f"{args.out}.html")
    return 0


wflib.run_script(globals(), main, lambda sm: make_table(
    list(sm.input.metrics), sm.params.dataset, list(sm.params.variants), sm.output.csv, sm.output.md,
    sm.output.tex, html=sm.output.html))
