"""Shared helpers of the workflow's table and plot scripts.

Reads the run-directory contract (DEVELOPING.md: `metrics.json`, `config.yaml`,
`train_curve.csv`), the published numbers (`workflow/paper_numbers.yaml`) and the ablation files,
and writes tables as CSV (numbers), Markdown and LaTeX (formatted). Every script runs either from
Snakemake's `script:` directive (a global `snakemake` object) or from the command line (tests).
"""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

METRIC_RE = re.compile(r"^R(\d+)@([0-9.]+)$")
RUN_FIELDS = ("train_time_s", "eval_time_s", "peak_mem_mb", "n_queries", "n_dropped")
DASH = "—"


# ---- reading --------------------------------------------------------------------------------


def run_script(namespace: dict, main, under_snakemake) -> None:
    """Entry point of every workflow script: its CLI `main()` when run directly, or
    `under_snakemake(snakemake)` with stderr sent to the rule's log when run by a `script:`
    directive (which injects the `snakemake` object into the script's globals)."""
    sm = namespace.get("snakemake")
    if sm is None:
        if namespace.get("__name__") == "__main__":
            raise SystemExit(main())
        return
    sys.stderr = open(sm.log[0], "w") if sm.log else sys.stderr
    under_snakemake(sm)


def metric_key(name: str) -> tuple[int, float]:
    """Sort key of `R{k}@{iou}`: by rank, then IoU (the paper's column order)."""
    match = METRIC_RE.match(name)
    if not match:
        raise ValueError(f"not a recall metric key: {name!r} (expected R{{k}}@{{iou}})")
    return int(match.group(1)), float(match.group(2))


def read_json(path: str | Path) -> dict:
    with open(path) as handle:
        try:
            return json.load(handle)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from None


def read_yaml(path: str | Path):
    with open(path) as handle:
        return yaml.safe_load(handle)


def load_runs(paths) -> pd.DataFrame:
    """One row per run: identity, every metric as a column, the run fields, and the run folder."""
    rows = []
    for path in paths:
        data = read_json(path)
        for field in ("dataset", "variant", "seed", "metrics"):
            if field not in data:
                raise ValueError(f"{path}: metrics.json has no {field!r} field")
        row = {
            "dataset": data["dataset"],
            "variant": data["variant"],
            "seed": int(data["seed"]),
            "run_dir": str(Path(path).parent),
        }
        for field in RUN_FIELDS + ("n_params", "n_params_backbone"):
            row[field] = data.get(field)
        for name, value in data["metrics"].items():
            metric_key(name)
            row[name] = np.nan if value is None else float(value)
        rows.append(row)
    if not rows:
        return pd.DataFrame(columns=["dataset", "variant", "seed", "run_dir"])
    frame = pd.DataFrame(rows)
    duplicated = frame.duplicated(["dataset", "variant", "seed"], keep=False)
    if duplicated.any():
        raise ValueError(f"duplicate runs: {frame.loc[duplicated, 'run_dir'].tolist()}")
    return frame.sort_values(["dataset", "variant", "seed"]).reset_index(drop=True)


TRAIN_CURVE = "train_curve.csv"  # beside each run's metrics.json, one row per iteration


def load_curves(paths, dataset: str | None = None, required_columns: tuple[str, ...] | None = None) -> pd.DataFrame:
    """Every run's train_curve.csv (read beside its metrics.json) with the run's `variant`, `seed`,
    `dataset` and `run_dir` columns added, runs in the given order; with `dataset`, only that dataset's runs.
    A run without a curve is skipped, unless `required_columns` is given: then a missing curve, or a
    curve without one of those columns, is an error naming the file."""
    frames = []
    for path in paths:
        data = read_json(path)
        if dataset is not None and data.get("dataset") != dataset:
            continue
        curve = Path(path).parent / TRAIN_CURVE
        if not curve.is_file():
            if required_columns is None:
                continue
            raise FileNotFoundError(f"{curve}: missing (every run writes its training curve beside metrics.json)")
        frame = pd.read_csv(curve)
        missing = [c for c in required_columns or () if c not in frame.columns]
        if missing:
            raise ValueError(f"{curve}: no {missing[0]!r} column (columns: {list(frame.columns)})")
        frame["variant"], frame["seed"], frame["dataset"] = data["variant"], int(data["seed"]), data["dataset"]
        frame["run_dir"] = str(Path(path).parent)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def metric_columns(frame: pd.DataFrame) -> list[str]:
    return sorted((c for c in frame.columns if METRIC_RE.match(str(c))), key=metric_key)


def load_breakdown(paths, field: str) -> pd.DataFrame:
    """Long table of `by_length_bin` / `by_query_kind`: dataset, variant, seed, group, order,
    n_queries, metric, value (group order as written in metrics.json)."""
    rows = []
    for path in paths:
        data = read_json(path)
        for order, (group, entry) in enumerate((data.get(field) or {}).items()):
            for name, value in (entry.get("metrics") or {}).items():
                rows.append(
                    {
                        "dataset": data["dataset"],
                        "variant": data["variant"],
                        "seed": int(data["seed"]),
                        "group": group,
                        "order": order,
                        "n_queries": entry.get("n_queries"),
                        "metric": name,
                        "value": np.nan if value is None else float(value),
                    }
                )
    columns = ["dataset", "variant", "seed", "group", "order", "n_queries", "metric", "value"]
    return pd.DataFrame(rows, columns=columns)


def load_variant_files(paths) -> dict[str, dict]:
    return {Path(p).stem: read_yaml(p) for p in paths}


def run_config_value(run_dir: str, dotted: str):
    """A value of the run's resolved config (`<run>/config.yaml`), or None when absent."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        return None
    node = read_yaml(path)
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def variant_setting(runs: pd.DataFrame, variants: dict, variant: str, dotted: str, default=None):
    """What a variant sets `dotted` to: the runs' resolved config, else its overrides, else default."""
    for run_dir in runs.loc[runs["variant"] == variant, "run_dir"]:
        value = run_config_value(run_dir, dotted)
        if value is not None:
            return value
    overrides = (variants.get(variant) or {}).get("overrides") or {}
    return overrides.get(dotted, default)


# ---- published numbers ---------------------------------------------------------------------------


def paper_cell(cell, row_source):
    """(value, source) of one published cell (a number, null or {value, source, note})."""
    if isinstance(cell, dict):
        return cell.get("value"), cell.get("source")
    return cell, (row_source if cell is not None else None)


def paper_dataset(paper: dict, name: str) -> dict:
    try:
        return paper["datasets"][name]
    except KeyError:
        raise ValueError(f"paper numbers have no dataset {name!r}") from None


def paper_rows(paper: dict, name: str, metrics: list[str]) -> pd.DataFrame:
    """Published rows of a dataset: method, variant, source, one column per metric, avg."""
    rows = []
    for method in paper_dataset(paper, name)["methods"]:
        row = {"method": method["name"], "variant": method.get("variant"), "source": method["source"]}
        sources = set()
        for metric in metrics:
            value, source = paper_cell(method["values"].get(metric), method["source"])
            row[metric] = np.nan if value is None else float(value)
            if source:
                sources.add(source)
        if sources - {method["source"]}:
            row["source"] = "+".join(sorted(sources | ({method["source"]} - {None})))
        row["avg"] = np.nan if method.get("avg") is None else float(method["avg"])
        rows.append(row)
    return pd.DataFrame(rows)


# ---- statistics ---------------------------------------------------------------------------------


def seed_stats(runs: pd.DataFrame, variant: str, metric: str) -> tuple[float, float, int]:
    """Mean, sample std (ddof=1; NaN for one seed) and number of seeds of one variant's metric."""
    values = runs.loc[runs["variant"] == variant, metric].dropna().to_numpy(dtype=float)
    if len(values) == 0:
        return math.nan, math.nan, 0
    std = float(np.std(values, ddof=1)) if len(values) > 1 else math.nan
    return float(np.mean(values)), std, len(values)


# ---- formatting and writing ----------------------------------------------------------------------


def fmt_num(value, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return DASH
    return f"{value:.{digits}f}"


def fmt_signed(value, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return DASH
    return f"{value:+.{digits}f}"


def fmt_mean_std(mean, std, digits: int = 2) -> str:
    if mean is None or math.isnan(mean):
        return DASH
    if std is None or math.isnan(std):
        return fmt_num(mean, digits)
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def fmt_interval(value, lo, hi, digits: int = 2, signed: bool = False) -> str:
    """`42.00 [40.10, 43.90]` (`+1.20 [-0.40, +2.80]` when signed); — for a missing value."""
    if value is None or math.isnan(value):
        return DASH
    fmt = fmt_signed if signed else fmt_num
    if lo is None or hi is None or math.isnan(lo) or math.isnan(hi):
        return fmt(value, digits)
    return f"{fmt(value, digits)} [{fmt(lo, digits)}, {fmt(hi, digits)}]"


def fmt_count(value) -> str:
    """A whole number, ∞ for infinity, — for a missing value (seeds needed)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return DASH
    return "∞" if math.isinf(value) else f"{int(value)}"


def fmt_int(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return DASH
    return f"{int(value):,}"


def to_markdown(frame: pd.DataFrame, title: str = "", notes: list[str] | None = None) -> str:
    header = [str(c) for c in frame.columns]
    lines = []
    if title:
        lines += [f"### {title}", ""]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join("---" for _ in header) + "|")
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |")
    for note in notes or []:
        lines += ["", note]
    return "\n".join(lines) + "\n"


# one pass, character by character: LaTeX's specials, then the symbols the tables print (✓ needs amssymb)
_TEX_ESCAPE = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
               "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"$<$", ">": r"$>$",
               "±": r"$\pm$", "Δ": r"$\Delta$", "—": "--", "−": "-",
               "✓": r"$\checkmark$", "↑": r"$\uparrow$", "∞": r"$\infty$", "†": r"$\dagger$"}


def tex_escape(text: str) -> str:
    return "".join(_TEX_ESCAPE.get(ch, ch) for ch in str(text))


def to_latex(frame: pd.DataFrame, caption: str = "", label: str = "") -> str:
    columns = [str(c) for c in frame.columns]
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        r"\small",
        r"\begin{tabular}{l" + "r" * (len(columns) - 1) + "}",
        r"\toprule",
        " & ".join(tex_escape(c) for c in columns) + r" \\",
        r"\midrule",
    ]
    for row in frame.itertuples(index=False):
        lines.append(" & ".join(tex_escape(v) for v in row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    if caption:
        lines.append(r"\caption{" + tex_escape(caption) + "}")
    if label:
        lines.append(r"\label{" + label + "}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def write_table(numbers: pd.DataFrame, shown: pd.DataFrame, csv: str, md: str, tex: str,
                title: str, notes: list[str] | None = None, label: str = "", html: str | None = None,
                sources: dict | None = None) -> None:
    """CSV holds the numbers (machine-readable); Markdown, LaTeX and HTML (shown inline in the
    Snakemake report) the formatted table. `sources` (paper_numbers.yaml's tag -> description)
    adds a legend of the source tags the table uses to the footnotes of every format."""
    import table_html

    notes = list(notes or [])
    legend = table_html.legend_entries(sources or {}, table_html.used_source_tags(sources or {}, shown, notes))
    text_notes = notes + ([table_html.legend_note(legend)] if legend else [])
    for path in (csv, md, tex, html):
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    numbers.to_csv(csv, index=False, float_format="%.10g")
    Path(md).write_text(to_markdown(shown, title, text_notes))
    caption = title + (". " + " ".join(text_notes) if text_notes else "")
    Path(tex).write_text(to_latex(shown, caption, label))
    if html:
        Path(html).write_text(table_html.to_html(shown, title, notes, legend))


def dataset_title(paper: dict, dataset: str, paper_name: str, synthetic: bool) -> str:
    base = paper_dataset(paper, paper_name)["title"]
    return f"{dataset} (synthetic, {paper_name}-like layout)" if synthetic else f"{dataset}: {base}"


# ---- plots ------------------------------------------------------------------------------------------


def save_figure(fig, png: str, pdf: str) -> None:
    import matplotlib.pyplot as plt

    for path in (png, pdf):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    # Fixed metadata so the PDF/PNG bytes do not depend on the clock.
    fig.savefig(png, dpi=120, bbox_inches="tight", metadata={"Software": None})
    fig.savefig(pdf, bbox_inches="tight", metadata={"CreationDate": None, "Creator": None, "Producer": None})
    plt.close(fig)


def empty_figure(message: str):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 2))
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True)
    return fig


def use_agg() -> None:
    import matplotlib

    matplotlib.use("Agg")
