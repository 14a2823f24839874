"""Plots of one dataset's runs (PNG + PDF): recall by video-length bin, ablation bars, training curves.

Snakemake: `script:` with params.plot in {recall_by_length, ablation, training_curves},
input.metrics (+ input.paper; + input.table, the ablation table's CSV, for the ablation bars),
params.dataset, params.paper_dataset, params.variants; output.png/pdf. Command line (tests): see `--help`.
The recall-by-length plot also reads each run's hits.csv.gz beside its metrics.json (the rule
declares them as input.hits): its intervals are the tables' (stats.py: t on seeds, video
bootstrap) per length bin.
"""

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import evidence  # noqa: E402
import stats  # noqa: E402
import wflib  # noqa: E402

wflib.use_agg()
import seaborn as sns  # noqa: E402

X_CANDIDATES = ("step", "global_step", "iteration", "iter", "epoch")
# Columns of train_curve.csv that are not loss curves (bookkeeping, schedules, diagnostics).
NOT_CURVES = {"epoch", "step", "global_step", "iteration", "iter", "lr", "time_s", "wall_s", "loss_norm",
              "num_pos", "grad_norm"}


def _variant_order(frame: pd.DataFrame, variants: list[str] | None) -> list[str]:
    present = list(dict.fromkeys(frame["variant"]))
    order = [v for v in (variants or []) if v in present]
    order += sorted(v for v in present if v not in order)
    if "full" in order:
        order.remove("full")
        order.insert(0, "full")
    return order


def _layout(paper_path: str | None, paper_dataset: str | None, available: list[str]) -> list[str]:
    if paper_path and paper_dataset:
        layout = wflib.paper_dataset(wflib.read_yaml(paper_path), paper_dataset)["metrics"]
        layout = [m for m in layout if m in available] or available
    else:
        layout = available
    return sorted(layout, key=wflib.metric_key)


# The recall-by-length plot: per variant and length bin, the hit matrix (seeds x the bin's queries)
# of the runs' hits.csv.gz through stats.intervals, the tables' statistic (strata = the
# query kinds of the bin's queries; clusters = their videos when the hits name them).
MIN_QUERIES_FOR_INTERVAL = 2  # a bin with fewer queries gets its point, no interval
INTERVAL_NOTE = "mean over seeds, 95 % interval (seeds: Student t; videos: bootstrap)"


@dataclass
class BinHits:
    """One variant's hits on one length bin's queries."""

    stack: np.ndarray  # (M, S, Q_bin) 0/1: metrics x seeds x the bin's queries
    strata: np.ndarray  # (Q_bin,) each query's kind
    clusters: np.ndarray | None  # (Q_bin,) each query's video, None when the hits do not name them
    seeds: list[int]


def length_bin_hits(runs: pd.DataFrame, metrics: list[str]) -> dict[tuple[str, str], BinHits]:
    """(variant, length bin) -> its BinHits, from the runs' hits.csv.gz through the tables' own
    reader (evidence.TableHits: read by column name, checked against each run's metrics.json, every
    run on the same queries, a query's video borrowed from any run that names it). Matrix rows are
    a variant's seeds in increasing order."""
    hits = evidence.TableHits(runs, metrics, specs={})
    bins = hits.ids["length_bin"].to_numpy()
    kinds = hits.ids["kind"].to_numpy()
    out = {}
    for variant, group in runs.sort_values(["variant", "seed"]).groupby("variant", sort=False):
        seeds = [int(s) for s in group["seed"]]
        for label in dict.fromkeys(bins):
            cols = np.flatnonzero(bins == label)
            out[(variant, label)] = BinHits(hits.stack(variant, seeds, cols), kinds[cols], hits.clusters(cols), seeds)
    return out


def bin_intervals(bin_hits: BinHits) -> list[stats.Interval]:
    """Per metric: the mean over seeds (100 * mean of the matrix) and its 95 % interval (seed
    variance + video bootstrap variance, Student t), stats.intervals of the matrix with the
    queries' kinds as strata (and their videos as clusters when known). A bin of fewer than MIN_QUERIES_FOR_INTERVAL queries gets the
    mean with a NaN interval."""
    stack = bin_hits.stack
    if stack.shape[2] < MIN_QUERIES_FOR_INTERVAL:
        values = 100.0 * stack.mean(axis=(1, 2)) if stack.shape[2] else np.full(stack.shape[0], np.nan)
        return [stats.Interval(float(v), math.nan, math.nan) for v in values]
    kwargs = {} if bin_hits.clusters is None else {"clusters": bin_hits.clusters}
    return stats.intervals(stack, bin_hits.strata, **kwargs)


def _bin_order(metrics, present: list[str]) -> list[str]:
    """The bins in their natural order: as metrics.json's `by_length_bin` lists them (the
    evaluation's edges, increasing; bins with no query included), then any other, first seen."""
    listed = []
    for path in metrics:
        for label in (wflib.read_json(path).get("by_length_bin") or {}):
            if label not in listed:
                listed.append(label)
    return listed + [b for b in present if b not in listed]


def length_bin_summary(metrics, dataset: str, layout: list[str] | None = None) -> pd.DataFrame:
    """One row per (variant, length bin, metric): n_queries, seeds, mean, lo, hi (NaN interval for a
    bin of < 2 queries; NaN mean for a bin no query falls in), order (the bin's natural position).
    layout: the metrics (default: the R@1 ones of the runs)."""
    columns = ["variant", "bin", "order", "metric", "n_queries", "seeds", "mean", "lo", "hi"]
    runs = wflib.load_runs(metrics)
    runs = runs[runs["dataset"] == dataset]
    if runs.empty:
        return pd.DataFrame(columns=columns)
    available = wflib.metric_columns(runs)
    layout = layout or [m for m in available if wflib.metric_key(m)[0] == 1] or available[:1]
    by_bin = length_bin_hits(runs, layout)
    order = _bin_order([Path(d) / "metrics.json" for d in runs["run_dir"]], list(dict.fromkeys(b for _, b in by_bin)))
    rows = []
    for variant in dict.fromkeys(runs["variant"]):
        for position, label in enumerate(order):
            bin_hits = by_bin.get((variant, label))
            if bin_hits is None:  # no query of this variant's split falls in the bin
                intervals = [stats.Interval(math.nan, math.nan, math.nan)] * len(layout)
                n, seeds = 0, int((runs["variant"] == variant).sum())
            else:
                intervals, n, seeds = bin_intervals(bin_hits), bin_hits.stack.shape[2], bin_hits.stack.shape[1]
            for metric, interval in zip(layout, intervals):
                rows.append({"variant": variant, "bin": label, "order": position, "metric": metric, "n_queries": n,
                             "seeds": seeds, "mean": interval.value, "lo": interval.lo, "hi": interval.hi})
    return pd.DataFrame(rows, columns=columns)


def _n_label(counts) -> str:
    counts = sorted({int(c) for c in counts})
    return f"n={counts[0]}" if len(counts) == 1 else f"n={counts[0]}–{counts[-1]}"


def plot_recall_by_length(metrics, dataset, paper_path, paper_dataset, variants, png, pdf, table=None):
    import matplotlib.pyplot as plt

    runs = wflib.load_runs(metrics)
    runs = runs[runs["dataset"] == dataset]
    if runs.empty:
        wflib.save_figure(wflib.empty_figure(f"{dataset}: no runs"), png, pdf)
        return
    available = wflib.metric_columns(runs)
    r1 = [m for m in _layout(paper_path, paper_dataset, available) if wflib.metric_key(m)[0] == 1] or available[:1]
    summary = length_bin_summary(metrics, dataset, r1)
    bins = list(summary.sort_values("order").drop_duplicates("bin")["bin"])
    hue_order = _variant_order(summary, variants)
    palette = dict(zip(hue_order, sns.color_palette("husl" if len(hue_order) > 10 else "tab10", len(hue_order))))
    step = min(0.6 / len(hue_order), 0.15)  # dodge: the variants side by side within a bin
    offsets = {v: (i - (len(hue_order) - 1) / 2) * step for i, v in enumerate(hue_order)}
    ticks = [f"{b}\n{_n_label(summary.loc[summary['bin'] == b, 'n_queries'])}" for b in bins]
    panel_width = max(4.2, 0.9 * len(bins) + 0.25 * len(hue_order))
    fig, axes = plt.subplots(1, len(r1), figsize=(panel_width * len(r1) + 2.2, 3.8), squeeze=False)
    thin = False
    for ax, metric in zip(axes[0], r1):
        for variant in hue_order:
            sub = summary[(summary["metric"] == metric) & (summary["variant"] == variant)].set_index("bin").loc[bins]
            x = np.arange(len(bins)) + offsets[variant]
            colour = palette[variant]
            ax.plot(x, sub["mean"], color=colour, lw=0.8, alpha=0.5)
            has = sub["lo"].notna().to_numpy()
            if has.any():
                errors = np.vstack([(sub["mean"] - sub["lo"])[has].clip(lower=0),
                                    (sub["hi"] - sub["mean"])[has].clip(lower=0)])
                ax.errorbar(x[has], sub["mean"][has], yerr=errors, fmt="o", ms=4, color=colour, capsize=2, lw=1.0)
            alone = ~has & sub["mean"].notna().to_numpy()
            if alone.any():  # a bin of < 2 queries: the point, no interval (open marker)
                thin = True
                ax.plot(x[alone], sub["mean"][alone], "o", ms=4, mfc="white", color=colour)
        ax.set_xticks(np.arange(len(bins)), ticks, fontsize=8)
        ax.set_xlim(-0.6, len(bins) - 0.4)
        ax.set_title(metric)
        ax.set_xlabel("video length bin (n = queries)")
        ax.set_ylabel("recall (%)")
        ax.grid(axis="y", alpha=0.3)
    handles = [plt.Line2D([], [], color=palette[v], marker="o", ms=4, label=v) for v in hue_order]
    title = f"{dataset}: recall by video length ({INTERVAL_NOTE})"
    if thin:
        title += f"\nopen marker: a bin of < {MIN_QUERIES_FOR_INTERVAL} queries, no interval"
    _finish(fig, handles, title, png, pdf)


def _finish(fig, handles, title, png, pdf) -> None:
    """Variant legend right of the panels, the title, then save PNG + PDF."""
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, title="variant")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    wflib.save_figure(fig, png, pdf)


# Column suffixes of an interval around a variant's mean in the ablation table's CSV, first match
# wins (the tables' 95 % interval, when the table carries one); without them the whiskers are ± sd.
INTERVAL_SUFFIXES = (("_lo", "_hi"), ("_ci_lo", "_ci_hi"), ("_low", "_high"))
BAR_COLOUR, FULL_COLOUR = "#9ecae1", "#e6550d"


def ablation_summary(runs: pd.DataFrame, table: pd.DataFrame | None, metrics: list[str],
                     order: list[str]) -> tuple[pd.DataFrame, str]:
    """Per (variant, metric): mean, whisker low and high, and what the whiskers are.

    From the ablation table's CSV when given (its intervals when it has them, else its ± std), else
    from the runs (mean ± sample std over seeds). A table with a `kind` column (one row per variant
    and query kind, evidence.py) is read at its `all` rows; its means are the `<metric>_mean`
    columns."""
    rows, kind = [], "± sd over seeds"
    if table is not None and "kind" in table.columns:
        table = table[table["kind"] == "all"]
    for metric in metrics:
        suffixes = next((pair for pair in INTERVAL_SUFFIXES if table is not None
                         and all(f"{metric}{s}" in table.columns for s in pair)), None)
        for variant in order:
            if table is not None:
                found = table[table["variant"] == variant]
                if found.empty:
                    raise ValueError(f"ablation table has no row for variant {variant!r}")
                row = found.iloc[0]
                column = next((c for c in (metric, f"{metric}_mean") if c in row), None)
                if column is None:
                    raise ValueError(f"ablation table has no column {metric!r} or {metric + '_mean'!r}")
                mean = float(row[column])
                if suffixes:
                    low, high = float(row[f"{metric}{suffixes[0]}"]), float(row[f"{metric}{suffixes[1]}"])
                else:
                    std = float(row.get(f"{metric}_std", float("nan")))
                    low, high = mean - std, mean + std
            else:
                mean, std, _ = wflib.seed_stats(runs, variant, metric)
                low, high = mean - std, mean + std
            rows.append({"variant": variant, "metric": metric, "mean": mean, "low": low, "high": high})
        if suffixes:  # the evidence tables' _lo/_hi: stats.py's 95 % interval over seeds and videos
            kind = ("95 % interval (seeds: t; videos: bootstrap)" if suffixes == ("_lo", "_hi")
                    else f"interval from the table's {suffixes[0]}/{suffixes[1]} columns")
    return pd.DataFrame(rows), kind


def plot_ablation(metrics, dataset, paper_path, paper_dataset, variants, png, pdf, table=None):
    import matplotlib.pyplot as plt

    runs = wflib.load_runs(metrics)
    runs = runs[runs["dataset"] == dataset]
    if runs.empty:
        wflib.save_figure(wflib.empty_figure(f"{dataset}: no runs"), png, pdf)
        return
    layout = [m for m in _layout(paper_path, paper_dataset, wflib.metric_columns(runs))
              if wflib.metric_key(m)[0] in (1, 5)]
    if variants:
        runs = runs[runs["variant"].isin(set(variants) | {"full"})]
    order = _variant_order(runs, variants)
    try:
        summary, whiskers = ablation_summary(runs, pd.read_csv(table) if table else None, layout, order)
    except ValueError as err:
        raise ValueError(f"{table}: {err}") from None
    # Horizontal bars: variant names read left of their own bar at any count; one colour for every
    # variant (16 hues are indistinguishable), `full` picked out as the reference.
    fig, axes = plt.subplots(1, len(layout), figsize=(2.6 * len(layout) + 1.6, 0.32 * len(order) + 1.4),
                             sharey=True, squeeze=False)
    y = np.arange(len(order))
    for ax, metric in zip(axes[0], layout):
        sub = summary[summary["metric"] == metric].set_index("variant").loc[order]
        colours = [FULL_COLOUR if v == "full" else BAR_COLOUR for v in order]
        ax.barh(y, sub["mean"], color=colours, height=0.7)
        errors = np.vstack([(sub["mean"] - sub["low"]).clip(lower=0), (sub["high"] - sub["mean"]).clip(lower=0)])
        ax.errorbar(sub["mean"], y, xerr=np.nan_to_num(errors), fmt="none", ecolor="#333", capsize=2, lw=0.8)
        seeds = runs[["variant", metric]].dropna()
        ax.scatter(seeds[metric], [order.index(v) for v in seeds["variant"]], s=9, color="black", zorder=3)
        if "full" in order and pd.notna(sub.loc["full", "mean"]):
            ax.axvline(sub.loc["full", "mean"], color=FULL_COLOUR, linestyle="--", linewidth=0.8)
        ax.set_title(metric)
        ax.set_xlabel("recall (%)")
        ax.grid(axis="x", alpha=0.3)
    axes[0][0].set_yticks(y, order)
    axes[0][0].invert_yaxis()  # `full` on top
    fig.suptitle(f"{dataset}: ablations (bars: mean; whiskers: {whiskers}; dots: seeds; dashed: full)",
                 fontsize=10)
    fig.tight_layout()
    wflib.save_figure(fig, png, pdf)


# A panel is drawn on a log scale when its positive values span more than this factor (one
# variant's initial loss of ~1800 flattened every other curve to a line at 0 on a linear axis).
LOG_SPAN = 30.0


def choose_panels(long: pd.DataFrame) -> tuple[list[tuple[str, bool]], list[str], dict[str, list[str]]]:
    """Which curves get a panel, and on which scale.

    long: x, variant, seed, curve, value. A curve that is zero (or missing) in every run carries
    nothing (a loss switched off by the recipe) and gets no panel; within a drawn curve, a
    variant whose values are all zero has that loss off and is left out of the panel (listed).
    Returns ([(curve, log scale?)], [curves not drawn], {curve: [variants left out]})."""
    drawn, skipped, off = [], [], {}
    for curve, sub in long.groupby("curve", sort=False):
        values = sub["value"].dropna()
        if values.empty or (values == 0).all():
            skipped.append(curve)
            continue
        zero = [v for v, g in sub.groupby("variant", sort=False) if (g["value"].dropna() == 0).all()]
        if zero:
            off[curve] = zero
        kept = sub[~sub["variant"].isin(zero)]["value"].dropna()
        positive = (kept > 0).all()
        drawn.append((curve, bool(positive and kept.max() / kept.min() > LOG_SPAN)))
    return drawn, skipped, off


def plot_training_curves(metrics, dataset, paper_path, paper_dataset, variants, png, pdf, table=None):
    import matplotlib.pyplot as plt

    curves = wflib.load_curves(metrics)
    if curves.empty:
        wflib.save_figure(wflib.empty_figure(f"{dataset}: no train_curve.csv in the run folders"), png, pdf)
        return
    curves = curves[curves["dataset"] == dataset]
    x = next((c for c in X_CANDIDATES if c in curves.columns), None)
    if x is None:
        raise ValueError(f"train_curve.csv has none of the step columns {X_CANDIDATES}: {list(curves.columns)}")
    numeric = [c for c in curves.select_dtypes("number").columns
               if c not in NOT_CURVES and c not in ("seed",) and c != x]
    long = curves.melt(id_vars=[x, "variant", "seed"], value_vars=numeric, var_name="curve", value_name="value")
    panels, skipped, off = choose_panels(long)
    if not panels:
        wflib.save_figure(wflib.empty_figure(f"{dataset}: every curve is zero in every run"), png, pdf)
        return
    hue_order = _variant_order(long, variants)
    # distinct hues for many variants (the default cycle repeats after 10)
    palette = dict(zip(hue_order, sns.color_palette("husl" if len(hue_order) > 10 else "tab10", len(hue_order))))
    ncols = min(3, len(panels))
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols + 2.2, 3.2 * nrows), squeeze=False)
    for ax, (curve, log) in zip(axes.flat, panels):
        sub = long[(long["curve"] == curve) & ~long["variant"].isin(off.get(curve, []))]
        sns.lineplot(data=sub, x=x, y="value", hue="variant", hue_order=[v for v in hue_order if v in set(sub["variant"])],
                     palette=palette, errorbar="sd", ax=ax, legend=False, linewidth=1.0)
        if log:
            ax.set_yscale("log")
        left_out = f"\n(off in: {', '.join(off[curve])})" if curve in off else ""
        ax.set_title(f"{curve}{' (log scale)' if log else ''}{left_out}", fontsize=9)
        ax.set_ylabel("")
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    handles = [plt.Line2D([], [], color=palette[v], label=v) for v in hue_order]
    title = f"{dataset}: training curves (mean ± sd over seeds)"
    if skipped:
        title += f"; not drawn (zero in every run): {', '.join(skipped)}"
    _finish(fig, handles, title, png, pdf)


PLOTS = {"recall_by_length": plot_recall_by_length, "ablation": plot_ablation,
         "training_curves": plot_training_curves}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("plot", choices=sorted(PLOTS))
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--paper", default=None)
    parser.add_argument("--paper-dataset", default=None)
    parser.add_argument("--metrics", nargs="+", required=True)
    parser.add_argument("--variants", nargs="*", default=None)
    parser.add_argument("--table", default=None, help="ablation: the table's CSV (bars and whiskers from it)")
    parser.add_argument("--out", required=True, help="output prefix: writes <out>.png and <out>.pdf")
    args = parser.parse_args(argv)
    PLOTS[args.plot](args.metrics, args.dataset, args.paper, args.paper_dataset, args.variants,
                     f"{args.out}.png", f"{args.out}.pdf", table=args.table)
    return 0


wflib.run_script(globals(), main, lambda sm: PLOTS[sm.params.plot](
    list(sm.input.metrics), sm.params.dataset, sm.input.get("paper"), sm.params.paper_dataset,
    list(sm.params.variants), sm.output.png, sm.output.pdf, table=sm.input.get("table")))
