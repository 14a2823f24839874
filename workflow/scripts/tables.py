"""Result tables of one dataset: main (paper layout), ablation, stride sweep, backbones.

Each table is written four times: CSV (the numbers, one column per value, for machines),
Markdown, LaTeX and HTML (formatted; the HTML is what the Snakemake report shows inline). Every
format's footnotes say which scale and seeds the table covers and explain the source tags it uses.
The main table shows `mean [95 % interval]` over seeds and queries. The ablation, stride and
backbone tables are built from every run's per-query hits (evidence.py, stats.py): one row per
(variant, query kind: all / plain / long_range), each metric as `mean [95 % interval]` and,
against `full`, the paired Δ with its interval, a ✓ where it excludes 0, P(variant > full) and
the seeds a paired test would need; the footnote names the method and what was resampled.

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
import evidence  # noqa: E402
import stats  # noqa: E402
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


# ---- main results ---------------------------------------------------------------------------------


def build_main(runs, paper, dataset, paper_name, synthetic, variants, baseline=None, variant_specs=None):
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
    # 95 % intervals over seeds and queries, from the per-query hits (the "all" rows)
    records, warnings, _ = _comparison(runs, variants, layout, variant_specs or {})
    intervals = {r["variant"]: r for r in records if r["kind"] == evidence.ALL}
    for variant in _ordered(variants, runs):
        spread = {m: wflib.seed_stats(runs, variant, m) for m in layout + ["avg"]}
        n = max(s[2] for s in spread.values())
        ours[variant] = spread
        record = {"row": "ours", "method": variant, "variant": variant, "source": "this suite", "seeds": n}
        for m in layout + ["avg"]:
            record[m], record[f"{m}_std"] = spread[m][0], spread[m][1]
        for m in layout:
            record[f"{m}_lo"], record[f"{m}_hi"] = intervals[variant][f"{m}_lo"], intervals[variant][f"{m}_hi"]
        numbers.append(record)
        shown.append(shown_row("ours", variant, "this suite", n,
                               [wflib.fmt_interval(spread[m][0], record[f"{m}_lo"], record[f"{m}_hi"]) for m in layout],
                               wflib.fmt_mean_std(*spread["avg"][:2])))
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
    notes = ["Ours: mean [95 % interval] (recall, %): Student t on the seed variance plus the variance of a "
             "bootstrap (scipy.stats.bootstrap) resampling videos (a video's queries drawn together) within each "
             "query kind, as in the ablation tables; the CSV adds the sample std over seeds (`_std`). Avg: mean of "
             "the row's recalls, ± its sample std over seeds."] + warnings
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
    columns += [c for m in layout for c in (m, f"{m}_std", f"{m}_lo", f"{m}_hi")] + ["avg", "avg_std"]
    frame = pd.DataFrame(numbers).reindex(columns=columns)
    return frame, pd.DataFrame(shown), notes


# ---- ablation / stride / backbones ---------------------------------------------------------------

# What each control proves (ablations/*.yaml `control:`); the table checks its expectation.
CONTROLS = {
    "positive": ("positive control: no global mixer, only local window attention. long_range queries need far "
                 "context, so it must come out resolved worse than full on them; if not, the benchmark is too "
                 "weak to show a real effect (fix the benchmark, not the statistics)."),
    "negative": ("negative (A/A) control: the full model again under disjoint seeds. Nothing differs but the "
                 "seed, so a ✓ on its rows is a false alarm of the statistics (about 5 % of its cells by chance)."),
}


def _comparison(runs, variants, layout, specs, reference="full"):
    """Records per (variant, query kind) from the runs' per-query hits (evidence.py), the
    footnotes they need (a warning when the hits files name no videos), and the hits; a layout
    metric the runs did not measure gets empty (NaN) columns."""
    measured = [m for m in layout if m in runs.columns and runs[m].notna().all()]
    hits = evidence.TableHits(runs, measured, specs, reference)
    records = evidence.evidence_records(hits, _ordered(variants, runs, reference))
    for record in records:
        for m in layout:
            if m not in measured:
                record.update({f"{m}_{c}": math.nan for c in evidence.COLUMNS})
    return records, [hits.warning] if hits.warning else [], hits


def _delta_cell(record, m):
    delta = record[f"{m}_delta"]
    if math.isnan(delta):
        return wflib.DASH
    mark = " ✓" if record[f"{m}_resolved"] else (" †" if record.get(f"{m}_excludes_zero") else "")
    return (f"{wflib.fmt_interval(delta, record[f'{m}_delta_lo'], record[f'{m}_delta_hi'], signed=True)}{mark}; "
            f"P↑ {wflib.fmt_num(record[f'{m}_p_improve'])}; n {wflib.fmt_count(record[f'{m}_seeds_needed'])}")


def _comparison_cells(record, metrics, reference="full"):
    cells = {}
    for m in metrics:
        cells[m] = wflib.fmt_interval(record[f"{m}_mean"], record[f"{m}_lo"], record[f"{m}_hi"])
        cells[f"Δ {m}"] = wflib.DASH if record["variant"] == reference else _delta_cell(record, m)
    return cells


def _front(frame, front):
    return frame[front + [c for c in frame.columns if c not in front]]


def _control_verdicts(records, specs, metrics, hits=None):
    """A sentence per control variant present: what it proves and whether it did."""
    notes = []
    for variant in dict.fromkeys(r["variant"] for r in records):
        role = (specs.get(variant) or {}).get("control")
        if role not in CONTROLS:
            continue
        rows = [r for r in records if r["variant"] == variant]
        if role == "positive":
            target = [r for r in rows if r["kind"] == "long_range"]
            if not target:
                verdict = "Observed: no long_range queries in this split, the control cannot be read."
            else:
                worse = [m for r in target for m in metrics if r[f"{m}_resolved"] and r[f"{m}_delta"] < 0]
                verdict = (f"Observed: resolved worse on long_range in {len(worse)} of {len(metrics)} shown metrics"
                           + (f" ({', '.join(worse)})." if worse else ".") + _seeds_hint(target, metrics))
        else:
            calibration = evidence.aa_calibration(hits, variant, metrics) if hits is not None else None
            verdict = _negative_verdict(rows, metrics, calibration)
        notes.append(f"{variant}: {CONTROLS[role]} {verdict}")
    return notes


def _negative_verdict(rows, metrics, calibration):
    """The A/A row per cell, family-wise (Holm over the row's cells) and, when the runs allow it,
    the calibration over every split of the pooled runs (evidence.aa_calibration)."""
    cells = [(r[f"{m}_resolved"], r[f"{m}_p_value"]) for r in rows for m in metrics if r[f"{m}_resolved"] is not None]
    flagged = sum(bool(resolved) for resolved, _ in cells)
    adjusted = stats.holm([p for _, p in cells])
    family = int(np.sum(adjusted < stats.ALPHA))
    verdict = (f"Observed: {flagged} of {len(cells)} Δ cells flagged at 95 % per cell; family-wise (Holm over the "
               f"row's {len(cells)} cells, alpha {stats.ALPHA}): {family} flagged, so the control is "
               f"{'FLAGGED' if family else 'not flagged'}. Per-cell marks flag some cell of a faultless row of "
               f"{len(cells)} more often than 5 % of the time (the splits below say how often); the family-wise "
               "verdict is the control's.")
    if calibration is not None:
        verdict += (f" Calibration: the {calibration.runs} runs of this one configuration (full and the control) "
                    f"cut into halves in {calibration.splits} ways, each compared as the table compares a variant "
                    f"with full: {calibration.flagged} of {calibration.cells} Δ cells flagged "
                    f"({100 * calibration.rate:.1f} %; nominal 5 %), {calibration.splits_flagged} of "
                    f"{calibration.splits} splits with a flag somewhere.")
    return verdict


def _seeds_hint(rows, metrics):
    """For the metrics a row shows worse but not resolved: the seeds a paired test needs at the
    observed Δ and spread (the n column), and how to run that many."""
    pending = [(m, r[f"{m}_seeds_needed"]) for r in rows for m in metrics
               if r[f"{m}_delta"] < 0 and not r[f"{m}_resolved"] and math.isfinite(r[f"{m}_seeds_needed"])]
    if not pending:
        return ""
    needed = ", ".join(f"{m} n {int(n)}" for m, n in pending)
    return (f" Worse but not resolved: {needed}; at the observed Δ and per-seed spread a paired test has "
            f"power 0.8 with n seeds (`snakemake --config seeds=<n>` runs them).")


def _evidence_notes(warnings=()):
    return [stats.METHOD_NOTE, *warnings, "Rows: every query (all; the bootstrap keeps the query-kind mix) and each query "
            "kind alone. Recall in %; the CSV adds the seed std (`_std`), interval bounds (`_lo`, `_hi`) and "
            "the paired seed count (`_pairs`). With a single (paired) seed an interval covers the sampling "
            "of videos (and so of queries) only and n is —."]


def build_ablation(runs, paper, dataset, paper_name, synthetic, variants, variant_specs):
    layout = _layout(paper, paper_name, runs)
    findings = ((paper.get("ablations") or {}).get("variants") or {})
    # controls after the ablations they vouch for
    variants = ([v for v in variants if not (variant_specs.get(v) or {}).get("control")]
                + [v for v in variants if (variant_specs.get(v) or {}).get("control")])
    records, warnings, hits = _comparison(runs, variants, layout, variant_specs)
    shown = []
    for record in records:
        spec = variant_specs.get(record["variant"]) or {}
        finding = findings.get(record["variant"], {})
        record["description"] = spec.get("description", "")
        record["control"] = spec.get("control") or ""
        record["paper_numbers"] = "not published"
        record["paper_finding"] = finding.get("finding") or ""
        record["paper_source"] = finding.get("source") or ""
        label = record["variant"] + (f" ({record['control']} control)" if record["control"] else "")
        first = record["kind"] == evidence.ALL
        shown.append({"variant": label, "queries": record["kind"], "seeds": record["seeds"],
                      **_comparison_cells(record, _shown_metrics(layout)),
                      "paper (finding)": (f"{record['paper_finding']} [{record['paper_source']}]"
                                          if record["paper_finding"] and first else wflib.DASH)})
    frame = _front(pd.DataFrame(records), ["variant", "kind", "control", "description", "seeds", "n_queries"])
    notes = _evidence_notes(warnings) + _control_verdicts(records, variant_specs, _shown_metrics(layout), hits)
    notes.append("The paper's ablation numbers were not found in any source (paper_numbers.yaml); its "
                 "qualitative findings are quoted.")
    return frame, pd.DataFrame(shown), notes


def build_stride(runs, paper, dataset, paper_name, synthetic, variants, variant_specs):
    layout = _layout(paper, paper_name, runs)
    records, warnings, _ = _comparison(runs, variants, layout, variant_specs)
    for record in records:
        stride = wflib.variant_setting(runs, variant_specs, record["variant"], "model.backbone.stride")
        record["stride"] = None if stride is None else int(stride)
    # The model's default stride (2) applies where neither config.yaml nor the overrides say.
    records.sort(key=lambda r: (r["stride"] if r["stride"] is not None else 2, r["variant"]))
    shown = [{"stride s": wflib.DASH if r["stride"] is None and r["variant"] != "full" else (r["stride"] or 2),
              "variant": r["variant"], "queries": r["kind"], "seeds": r["seeds"],
              **_comparison_cells(r, _shown_metrics(layout))}
             for r in records]
    frame = _front(pd.DataFrame(records), ["stride", "variant", "kind", "seeds", "n_queries"])
    notes = _evidence_notes(warnings) + ["The paper's stride sweep numbers were not found (paper_numbers.yaml)."]
    return frame, pd.DataFrame(shown), notes


def build_backbones(runs, paper, dataset, paper_name, synthetic, variants, variant_specs):
    layout = _layout(paper, paper_name, runs)
    records, warnings, _ = _comparison(runs, variants, layout, variant_specs)
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
        shown.append({"backbone": record["backbone"], "variant": record["variant"], "queries": record["kind"],
                      "params": wflib.fmt_int(record["n_params"]),
                      "backbone params": wflib.fmt_int(record["n_params_backbone"]),
                      "seeds": record["seeds"], **_comparison_cells(record, _shown_metrics(layout)),
                      "train time (s)": wflib.fmt_num(record["train_time_s"], 1),
                      "peak mem (MB)": wflib.fmt_num(record["peak_mem_mb"], 0)})
    frame = pd.DataFrame(records)
    for field in ("n_params", "n_params_backbone"):
        frame[field] = frame[field].astype("Int64")
    frame = _front(frame, ["backbone", "variant", "kind", "n_params", "n_params_backbone", "seeds", "n_queries",
                           "train_time_s", "peak_mem_mb"])
    notes = _evidence_notes(warnings) + [
        "Params: trainable parameters of the whole model / of the backbone, from metrics.json (— where the "
        "run did not record them). Time and memory: means over seeds."]
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


def covers_note(runs: pd.DataFrame, scale: str | None, specs: dict) -> str:
    """Which runs a table covers, so that tables of different configs cannot be mistaken. Seeds
    are seed indices (seed - the variant's `seed_offset`); offset variants are named with theirs."""
    seeds = sorted({int(s) - evidence.seed_offset(specs, v) for v, s in zip(runs["variant"], runs["seed"])})
    listed = ", ".join(str(s) for s in seeds) if seeds else "none"
    offsets = sorted({(v, evidence.seed_offset(specs, v)) for v in runs["variant"]} - {(v, 0) for v in runs["variant"]})
    shifted = "".join(f"; {v} runs seed {off} + each" for v, off in offsets)
    return (f"Covers: scale={scale or 'not recorded'}, seeds {listed} ({len(seeds)} seed"
            f"{'' if len(seeds) == 1 else 's'}, {len(runs)} runs{shifted}).")


def _flat(node, prefix=""):
    """Nested mapping -> {dotted key: leaf}, as ``hieramamba.engine.config.flatten`` reads ablation
    overrides (the tables' environment does not install the package, so it is not imported)."""
    flat = {}
    for key, value in node.items():
        if isinstance(value, dict) and value:
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def inert_variants(runs: pd.DataFrame, specs: dict, variants) -> dict[str, list[str]]:
    """Variants that change nothing on this dataset: every override of their ablation file already
    holds in `full`'s resolved run config (`<run>/config.yaml`), e.g. `no_acc` where the dataset's
    recipe turns ACC off (the MAD family). Their runs repeat full's, so their Delta is 0 by
    construction, not by evidence. -> {variant: its override keys}. A variant without overrides
    (the A/A control: same config, other seeds) is never inert."""
    full_dirs = runs.loc[runs["variant"] == "full", "run_dir"]
    path = Path(full_dirs.iloc[0]) / "config.yaml" if len(full_dirs) else None
    if path is None or not path.is_file():
        return {}
    full = _flat(wflib.read_yaml(path) or {})
    inert = {}
    for variant in variants:
        overrides = _flat((specs.get(variant) or {}).get("overrides") or {})
        if variant == "full" or not overrides or variant not in set(runs["variant"]):
            continue
        if all(key in full and full[key] == value for key, value in overrides.items()):
            inert[variant] = sorted(overrides)
    return inert


def inert_note(inert: dict[str, list[str]]) -> list[str]:
    if not inert:
        return []
    named = "; ".join(f"{v} ({', '.join(keys)})" for v, keys in inert.items())
    return [f"Inert on this dataset: {named}. Each override already holds in full's run config here, so "
            "these runs repeat full's and their Δ is 0 by construction, not a finding."]


def make_table(table, metrics, variant_files, paper_path, dataset, paper_dataset, synthetic, variants,
               csv, md, tex, baseline=None, html=None, scale=None):
    runs = wflib.load_runs(metrics)
    runs = runs[runs["dataset"] == dataset]
    paper = wflib.read_yaml(paper_path)
    specs = wflib.load_variant_files(variant_files)
    if table == "main":
        prior = wflib.load_runs([baseline]) if baseline else None
        numbers, shown, notes = build_main(runs, paper, dataset, paper_dataset, synthetic, variants, prior, specs)
    else:
        numbers, shown, notes = BUILDERS[table](runs, paper, dataset, paper_dataset, synthetic, variants, specs)
    title = f"{TITLES[table]}: {wflib.dataset_title(paper, dataset, paper_dataset, synthetic)}"
    shown_variants = set(variants) | {"full"}  # `full` is every table's reference row
    notes = ([covers_note(runs[runs["variant"].isin(shown_variants)], scale, specs)] + notes
             + inert_note(inert_variants(runs, specs, variants)))
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
