"""Result tables of one dataset: main (paper layout), ablation, stride sweep, backbones.

Each table is written four times: CSV (the numbers, one column per value, for machines),
Markdown, LaTeX and HTML (formatted `mean ± std`; the HTML is what the Snakemake report shows
inline). Every format's footnotes say which scale and seeds the table covers and explain the
source tags it uses. Means and standard deviations are over seeds
(sample std, ddof=1; a single seed shows its value and no std). Δ columns are relative to the
`full` variant, paired by seed, with scipy's paired t-test; with fewer than two common seeds there
is no test (p is empty in the CSV and the cell reads `n<2`).

Snakemake: `script:` with input.metrics, input.variants, input.paper; params.table,
params.dataset, params.paper_dataset, params.synthetic, params.variants, params.scale;
output.html/csv/md/tex.
Command line (tests): see `--help`.
"""

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import wflib  # noqa: E402

SHOWN_RANKS = (1, 5)  # Markdown/LaTeX of the wide tables show R@1 and R@5; the CSV has all
NOT_PUBLISHED = "not published"


def _layout(paper: dict, paper_name: str, runs: pd.DataFrame) -> list[str]:
    """The paper's metric columns; metrics we measure that the paper lacks are appended."""
    layout = list(wflib.paper_dataset(paper, paper_name)["metrics"])
    extra = [m for m in wflib.metric_columns(runs) if m not in layout]
    return layout + extra


def _shown_metrics(layout: list[str]) -> list[str]:
    shown = [m for m in layout if wflib.metric_key(m)[0] in SHOWN_RANKS]
    return shown or layout


def _seed_avg(runs: pd.DataFrame, layout: list[str]) -> pd.Series:
    """Per run: the mean of the layout's recalls (the paper's Avg column)."""
    present = [m for m in layout if m in runs.columns]
    if not present or len(present) < len(layout):
        return pd.Series(np.nan, index=runs.index)
    return runs[present].mean(axis=1, skipna=False)


def _ordered(variants: list[str], runs: pd.DataFrame, reference: str | None = "full") -> list[str]:
    present = set(runs["variant"])
    order = [reference] if reference in present else []
    order += [v for v in variants if v in present and v != reference]
    return order


def _delta_cell(delta: float, p: float, note: str) -> str:
    if math.isnan(delta):
        return wflib.DASH
    return f"{wflib.fmt_signed(delta)} ({wflib.fmt_p(p, note) if note else 'p=' + wflib.fmt_p(p)})"


# ---- main results ---------------------------------------------------------------------------------


def build_main(runs, paper, dataset, paper_name, synthetic, variants, baseline=None):
    layout = _layout(paper, paper_name, runs)
    runs = runs.assign(avg=_seed_avg(runs, layout))
    published = wflib.paper_rows(paper, paper_name, layout)
    if synthetic:
        # Real-data numbers cannot be matched on synthetic data: keep only the rows our variants
        # correspond to, for the layout, and no Δ.
        published = published[published["variant"].isin(variants)]
    numbers, shown = [], []

    def shown_row(kind, method, source, n, cells, avg):
        # an unpublished row's source is NaN (pandas), not a string; a row of dashes alone reads
        # as an empty row, so its source cell says why
        source = source if isinstance(source, str) and source else NOT_PUBLISHED
        return {"": kind, "method": method, "source": source, "seeds": n,
                **dict(zip(layout, cells)), "Avg": avg}

    for row in published.to_dict("records"):
        values = [row[m] for m in layout]
        numbers.append({"row": "paper", "method": row["method"], "variant": row["variant"],
                        "source": row["source"], "seeds": None, **dict(zip(layout, values)), "avg": row["avg"]})
        label = "paper (real data)" if synthetic else "paper"
        shown.append(shown_row(label, row["method"], row["source"], wflib.DASH,
                               [wflib.fmt_num(v) for v in values], wflib.fmt_num(row["avg"])))
    ours = {}
    for variant in _ordered(variants, runs):
        stats = {m: wflib.seed_stats(runs, variant, m) for m in layout + ["avg"]}
        n = max(s[2] for s in stats.values())
        ours[variant] = stats
        record = {"row": "ours", "method": variant, "variant": variant, "source": "this suite", "seeds": n}
        for m in layout + ["avg"]:
            record[m], record[f"{m}_std"] = stats[m][0], stats[m][1]
        numbers.append(record)
        shown.append(shown_row("ours", variant, "this suite", n,
                               [wflib.fmt_mean_std(*stats[m][:2]) for m in layout],
                               wflib.fmt_mean_std(*stats["avg"][:2])))
    if baseline is not None and not baseline.empty:
        base = baseline.assign(avg=_seed_avg(baseline, layout)).iloc[0]
        values = [base.get(m, np.nan) for m in layout]
        numbers.append({"row": "baseline", "method": "prior", "variant": "prior", "source": "this suite",
                        "seeds": 1, **dict(zip(layout, values)), "avg": base["avg"]})
        shown.append(shown_row("baseline", "fixed start/end prior", "this suite", 1,
                               [wflib.fmt_num(v) for v in values], wflib.fmt_num(base["avg"])))
    if not synthetic:
        for row in published.to_dict("records"):
            variant = row["variant"]
            if variant not in ours:
                continue
            deltas = [ours[variant][m][0] - row[m] for m in layout]
            d_avg = ours[variant]["avg"][0] - row["avg"]
            numbers.append({"row": "delta", "method": f"{variant} - {row['method']}", "variant": variant,
                            "source": row["source"], "seeds": None, **dict(zip(layout, deltas)), "avg": d_avg})
            shown.append(shown_row("Δ ours − paper", f"{variant} vs {row['method']}", row["source"], wflib.DASH,
                                   [wflib.fmt_signed(d) for d in deltas], wflib.fmt_signed(d_avg)))
    notes = ["Ours: mean ± sample std over seeds (recall, %). Avg: mean of the row's recalls."]
    if baseline is not None and not baseline.empty:
        notes.append("Baseline: a fixed start/end prior fitted on the training split "
                     "(`hieramamba evaluate --baseline prior`), no model.")
    if synthetic:
        notes.append(f"Synthetic data: the paper rows are the real {paper_name} numbers, shown for the layout "
                     "only; no Δ is computed.")
    else:
        notes.append("Δ = our mean − the published value; — where the number is not published (see sources).")
    if "source" in published and (published["source"].isna() | (published["source"] == "")).any():
        notes.append(f"A paper row whose source reads '{NOT_PUBLISHED}' has no number in any source we found "
                     "(workflow/paper_numbers.yaml): its cells are —.")
    columns = ["row", "method", "variant", "source", "seeds"]
    columns += [c for m in layout + ["avg"] for c in (m, f"{m}_std")]
    frame = pd.DataFrame(numbers).reindex(columns=columns)
    return frame, pd.DataFrame(shown), notes


# ---- ablation / stride / backbones ---------------------------------------------------------------


def _comparison(runs, variants, layout, reference="full"):
    """Numbers of each variant vs the reference: mean, std, seeds, Δ, p, note per metric."""
    records = []
    for variant in _ordered(variants, runs, reference):
        record = {"variant": variant}
        n = 0
        for m in layout:
            mean, std, count = wflib.seed_stats(runs, variant, m)
            n = max(n, count)
            record[m], record[f"{m}_std"] = mean, std
            if variant == reference:
                delta, p, pairs, note = math.nan, math.nan, count, "reference"
            else:
                delta, p, pairs, note = wflib.paired_test(runs, variant, reference, m)
            record[f"{m}_delta"], record[f"{m}_p"], record[f"{m}_pairs"], record[f"{m}_note"] = delta, p, pairs, note
        record["seeds"] = n
        records.append(record)
    return records


def _comparison_cells(record, metrics, reference="full"):
    cells = {}
    for m in metrics:
        cells[m] = wflib.fmt_mean_std(record[m], record[f"{m}_std"])
        cells[f"Δ {m}"] = (wflib.DASH if record["variant"] == reference
                           else _delta_cell(record[f"{m}_delta"], record[f"{m}_p"], record[f"{m}_note"]))
    return cells


_COMPARISON_NOTE = ("Mean ± sample std over seeds (recall, %). Δ = variant − full, paired by seed; "
                    "p from scipy's paired t-test (scipy.stats.ttest_rel); `n<2` = fewer than two common "
                    "seeds, no test.")


def build_ablation(runs, paper, dataset, paper_name, synthetic, variants, variant_specs):
    layout = _layout(paper, paper_name, runs)
    findings = ((paper.get("ablations") or {}).get("variants") or {})
    records = _comparison(runs, variants, layout)
    shown = []
    for record in records:
        finding = findings.get(record["variant"], {})
        record["description"] = (variant_specs.get(record["variant"]) or {}).get("description", "")
        record["paper_numbers"] = "not published"
        record["paper_finding"] = finding.get("finding") or ""
        record["paper_source"] = finding.get("source") or ""
        shown.append({"variant": record["variant"], "seeds": record["seeds"],
                      **_comparison_cells(record, _shown_metrics(layout)),
                      "paper (finding)": (f"{record['paper_finding']} [{record['paper_source']}]"
                                          if record["paper_finding"] else wflib.DASH)})
    frame = pd.DataFrame(records)
    front = ["variant", "description", "seeds"]
    frame = frame[front + [c for c in frame.columns if c not in front]]
    notes = [_COMPARISON_NOTE, "The paper's ablation numbers were not found in any source "
             "(paper_numbers.yaml); its qualitative findings are quoted."]
    return frame, pd.DataFrame(shown), notes


def build_stride(runs, paper, dataset, paper_name, synthetic, variants, variant_specs):
    layout = _layout(paper, paper_name, runs)
    records = _comparison(runs, variants, layout)
    for record in records:
        stride = wflib.variant_setting(runs, variant_specs, record["variant"], "model.backbone.stride")
        record["stride"] = None if stride is None else int(stride)
    # The model's default stride (2) applies where neither config.yaml nor the overrides say.
    records.sort(key=lambda r: (r["stride"] if r["stride"] is not None else 2, r["variant"]))
    shown = [{"stride s": wflib.DASH if r["stride"] is None and r["variant"] != "full" else (r["stride"] or 2),
              "variant": r["variant"], "seeds": r["seeds"], **_comparison_cells(r, _shown_metrics(layout))}
             for r in records]
    frame = pd.DataFrame(records)
    front = ["stride", "variant", "seeds"]
    frame = frame[front + [c for c in frame.columns if c not in front]]
    notes = [_COMPARISON_NOTE, "The paper's stride sweep numbers were not found (paper_numbers.yaml)."]
    return frame, pd.DataFrame(shown), notes


def build_backbones(runs, paper, dataset, paper_name, synthetic, variants, variant_specs):
    layout = _layout(paper, paper_name, runs)
    records = _comparison(runs, variants, layout)
    shown = []
    for record in records:
        sub = runs[runs["variant"] == record["variant"]]
        record["backbone"] = wflib.variant_setting(runs, variant_specs, record["variant"],
                                                   "model.backbone.name", "hieramamba")
        for field in ("n_params", "n_params_backbone"):
            values = sub[field].dropna() if field in sub else pd.Series(dtype=float)
            record[field] = int(values.iloc[0]) if len(values) else None
        for field in ("train_time_s", "peak_mem_mb"):
            values = pd.to_numeric(sub[field], errors="coerce").dropna() if field in sub else pd.Series(dtype=float)
            record[field] = float(values.mean()) if len(values) else math.nan
        shown.append({"backbone": record["backbone"], "variant": record["variant"],
                      "params": wflib.fmt_int(record["n_params"]),
                      "backbone params": wflib.fmt_int(record["n_params_backbone"]),
                      "seeds": record["seeds"], **_comparison_cells(record, _shown_metrics(layout)),
                      "train time (s)": wflib.fmt_num(record["train_time_s"], 1),
                      "peak mem (MB)": wflib.fmt_num(record["peak_mem_mb"], 0)})
    frame = pd.DataFrame(records)
    for field in ("n_params", "n_params_backbone"):
        frame[field] = frame[field].astype("Int64")
    front = ["backbone", "variant", "n_params", "n_params_backbone", "seeds", "train_time_s", "peak_mem_mb"]
    frame = frame[front + [c for c in frame.columns if c not in front]]
    notes = [_COMPARISON_NOTE, "Params: trainable parameters of the whole model / of the backbone, from "
             "metrics.json (— where the run did not record them). Time and memory: means over seeds."]
    if not synthetic:
        published = wflib.paper_rows(paper, paper_name, layout)
        published = published[published["variant"].isin([r["variant"] for r in records])]
        cells = [f"{r['variant']}: {r['method']} [{r['source']}] " + " / ".join(
            f"{m} {wflib.fmt_num(r[m])}" for m in _shown_metrics(layout)) for r in published.to_dict("records")]
        if cells:
            notes.append("Published: " + "; ".join(cells) + ".")
    return frame, pd.DataFrame(shown), notes


BUILDERS = {"main": build_main, "ablation": build_ablation, "stride": build_stride, "backbones": build_backbones}
TITLES = {"main": "Main results", "ablation": "Ablations", "stride": "Anchor stride sweep",
          "backbones": "Backbone comparison"}


def covers_note(runs: pd.DataFrame, scale: str | None) -> str:
    """Which runs a table covers, so that tables of different configs cannot be mistaken."""
    seeds = sorted(set(int(s) for s in runs["seed"]))
    listed = ", ".join(str(s) for s in seeds) if seeds else "none"
    return (f"Covers: scale={scale or 'not recorded'}, seeds {listed} ({len(seeds)} seed"
            f"{'' if len(seeds) == 1 else 's'}, {len(runs)} runs).")


def make_table(table, metrics, variant_files, paper_path, dataset, paper_dataset, synthetic, variants,
               csv, md, tex, baseline=None, html=None, scale=None):
    runs = wflib.load_runs(metrics)
    runs = runs[runs["dataset"] == dataset]
    paper = wflib.read_yaml(paper_path)
    specs = wflib.load_variant_files(variant_files)
    if table == "main":
        prior = wflib.load_runs([baseline]) if baseline else None
        numbers, shown, notes = build_main(runs, paper, dataset, paper_dataset, synthetic, variants, prior)
    else:
        numbers, shown, notes = BUILDERS[table](runs, paper, dataset, paper_dataset, synthetic, variants, specs)
    title = f"{TITLES[table]}: {wflib.dataset_title(paper, dataset, paper_dataset, synthetic)}"
    shown_variants = set(variants) | {"full"}  # `full` is every table's reference row
    notes = [covers_note(runs[runs["variant"].isin(shown_variants)], scale)] + notes
    wflib.write_table(numbers, shown, csv, md, tex, title, notes, label=f"tab:{table}-{dataset}", html=html,
                      sources=paper.get("sources"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("table", choices=sorted(BUILDERS))
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--paper-dataset", required=True)
    parser.add_argument("--synthetic", action="store_true")
    parser.add_argument("--metrics", nargs="+", required=True)
    parser.add_argument("--variant-files", nargs="*", default=[])
    parser.add_argument("--variants", nargs="+", required=True, help="the table's variants, in order")
    parser.add_argument("--paper", required=True)
    parser.add_argument("--baseline", default=None, help="metrics.prior.json (main table only)")
    parser.add_argument("--scale", default=None, help="the runs' scale, named in the footnote")
    parser.add_argument("--out", required=True, help="output prefix: writes <out>.csv, .md, .tex, .html")
    args = parser.parse_args(argv)
    make_table(args.table, args.metrics, args.variant_files, args.paper, args.dataset, args.paper_dataset,
               args.synthetic, args.variants, f"{args.out}.csv", f"{args.out}.md", f"{args.out}.tex",
               baseline=args.baseline, html=f"{args.out}.html", scale=args.scale)
    return 0


wflib.run_script(globals(), main, lambda sm: make_table(
    sm.params.table, list(sm.input.metrics), list(sm.input.variants), sm.input.paper, sm.params.dataset,
    sm.params.paper_dataset, bool(sm.params.synthetic), list(sm.params.variants), sm.output.csv, sm.output.md,
    sm.output.tex, baseline=sm.input.get("baseline"), html=sm.output.html, scale=sm.params.scale))
