"""Plots of one dataset's runs (PNG + PDF): recall by video-length bin, ablation bars, training curves.

Snakemake: `script:` with params.plot in {recall_by_length, ablation, training_curves},
input.metrics (+ input.paper), params.dataset, params.paper_dataset, params.variants;
output.png/pdf. Command line (tests): see `--help`.
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


def plot_recall_by_length(metrics, dataset, paper_path, paper_dataset, variants, png, pdf):
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


def plot_ablation(metrics, dataset, paper_path, paper_dataset, variants, png, pdf):
    runs = wflib.load_runs(metrics)
    runs = runs[runs["dataset"] == dataset]
    if runs.empty:
        wflib.save_figure(wflib.empty_figure(f"{dataset}: no runs"), png, pdf)
        return
    layout = [m for m in _layout(paper_path, paper_dataset, wflib.metric_columns(runs))
              if wflib.metric_key(m)[0] in (1, 5)]
    if variants:
        runs = runs[runs["variant"].isin(variants)]
    long = runs.melt(id_vars=["variant", "seed"], value_vars=layout, var_name="metric", value_name="recall")
    order = _variant_order(long, variants)
    grid = sns.catplot(data=long, x="variant", y="recall", col="metric", col_order=layout, order=order,
                       kind="bar", errorbar="sd", color="#9ecae1", col_wrap=min(4, len(layout)),
                       height=3.0, aspect=1.2, sharey=False)
    for ax, metric in zip(grid.axes.flat, layout):
        sub = long[long["metric"] == metric]
        sns.stripplot(data=sub, x="variant", y="recall", order=order, ax=ax, color="black", size=3,
                      jitter=0.15)
        full = sub.loc[sub["variant"] == "full", "recall"].mean()
        if pd.notna(full):
            ax.axhline(full, color="grey", linestyle="--", linewidth=0.8)
        ax.tick_params(axis="x", rotation=60)
        ax.set_xlabel("")
    grid.figure.suptitle(f"{dataset}: ablations (bars: mean ± sd; dots: seeds; dashed: full)", y=1.03)
    wflib.save_figure(grid.figure, png, pdf)


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


def plot_training_curves(metrics, dataset, paper_path, paper_dataset, variants, png, pdf):
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
    ys = numeric[:6]
    long = curves.melt(id_vars=[x, "variant", "seed"], value_vars=ys, var_name="curve", value_name="value")
    grid = sns.relplot(data=long, x=x, y="value", hue="variant", col="curve", col_order=ys, kind="line",
                       errorbar="sd", hue_order=_variant_order(long, variants), col_wrap=min(3, len(ys)),
                       height=3.0, aspect=1.3, facet_kws={"sharey": False})
    grid.figure.suptitle(f"{dataset}: training curves (mean ± sd over seeds)", y=1.04)
    wflib.save_figure(grid.figure, png, pdf)


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
    parser.add_argument("--out", required=True, help="output prefix: writes <out>.png and <out>.pdf")
    args = parser.parse_args(argv)
    PLOTS[args.plot](args.metrics, args.dataset, args.paper, args.paper_dataset, args.variants,
                     f"{args.out}.png", f"{args.out}.pdf")
    return 0


wflib.run_script(globals(), main, lambda sm: PLOTS[sm.params.plot](
    list(sm.input.metrics), sm.params.dataset, sm.input.get("paper"), sm.params.paper_dataset,
    list(sm.params.variants), sm.output.png, sm.output.pdf))
