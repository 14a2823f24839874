"""Plots of one dataset's runs (PNG + PDF): recall by video-length bin, ablation bars, training curves.

Snakemake: `script:` with params.plot in {recall_by_length, ablation, training_curves},
input.metrics (+ input.paper; + input.table, the ablation table's CSV, for the ablation bars),
params.dataset, params.paper_dataset, params.variants; output.png/pdf. Command line (tests): see `--help`.
"""

import argparse
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
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


def plot_recall_by_length(metrics, dataset, paper_path, paper_dataset, variants, png, pdf, table=None):
    bins = wflib.load_breakdown(metrics, "by_length_bin")
    bins = bins[bins["dataset"] == dataset]
    if bins.empty:
        wflib.save_figure(wflib.empty_figure(f"{dataset}: no by_length_bin in metrics.json"), png, pdf)
        return
    r1 = [m for m in _layout(paper_path, paper_dataset, sorted(set(bins["metric"]), key=wflib.metric_key))
          if wflib.metric_key(m)[0] == 1] or sorted(set(bins["metric"]), key=wflib.metric_key)[:1]
    bins = bins[bins["metric"].isin(r1)]
    order = list(bins.sort_values("order").drop_duplicates("group")["group"])
    hue_order = _variant_order(bins, variants)
    # seaborn divides the dodge by (number of variants - 1): no dodge for a single variant
    grid = sns.catplot(data=bins, x="group", y="value", hue="variant", col="metric", col_order=r1,
                       order=order, hue_order=hue_order, kind="point",
                       errorbar="sd", dodge=0.3 if len(hue_order) > 1 else False, height=3.2, aspect=1.3,
                       sharey=False)
    grid.set_axis_labels("video length bin", "recall (%)")
    for ax in grid.axes.flat:
        ax.tick_params(axis="x", rotation=20)
    grid.figure.suptitle(f"{dataset}: recall by video length (mean ± sd over seeds)", y=1.04)
    wflib.save_figure(grid.figure, png, pdf)


# Column suffixes of an interval around a variant's mean in the ablation table's CSV, first match
# wins (a bootstrap interval, when the table carries one); without them the whiskers are ± sd.
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
        if suffixes:  # the evidence tables' _lo/_hi: 95 % bootstrap over seeds and queries
            kind = ("95 % bootstrap interval (seeds x queries)" if suffixes == ("_lo", "_hi")
                    else f"interval from the table's {suffixes[0]}/{suffixes[1]} columns")
    return pd.DataFrame(rows), kind


def plot_ablation(metrics, dataset, paper_path, paper_dataset, variants, png, pdf, table=None):
    import matplotlib.pyplot as plt
    import numpy as np

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


def load_curves(metrics) -> pd.DataFrame:
    frames = []
    for path in metrics:
        data = wflib.read_json(path)
        curve = Path(path).parent / "train_curve.csv"
        if not curve.is_file():
            continue
        frame = pd.read_csv(curve)
        frame["variant"], frame["seed"], frame["dataset"] = data["variant"], int(data["seed"]), data["dataset"]
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


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

    curves = load_curves(metrics)
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
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, title="variant")
    title = f"{dataset}: training curves (mean ± sd over seeds)"
    if skipped:
        title += f"; not drawn (zero in every run): {', '.join(skipped)}"
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    wflib.save_figure(fig, png, pdf)


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
