"""Collect every run's metrics.json into tidy CSVs (results/metrics/): one row per run
(`runs.csv`), and long tables of the recall by video-length bin and by query kind.

Snakemake: `script:` with input.metrics; output.runs, output.bins, output.kinds.
Command line: `python collect_metrics.py --out DIR metrics.json ...`.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import wflib  # noqa: E402


def collect(metrics, runs_csv, bins_csv, kinds_csv):
    for path in (runs_csv, bins_csv, kinds_csv):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    wflib.load_runs(metrics).to_csv(runs_csv, index=False, float_format="%.10g")
    wflib.load_breakdown(metrics, "by_length_bin").to_csv(bins_csv, index=False, float_format="%.10g")
    wflib.load_breakdown(metrics, "by_query_kind").to_csv(kinds_csv, index=False, float_format="%.10g")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("metrics", nargs="+")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    out = Path(args.out)
    collect(args.metrics, out / "runs.csv", out / "by_length_bin.csv", out / "by_query_kind.csv")
    return 0


wflib.run_script(globals(), main, lambda sm: collect(
    list(sm.input.metrics), sm.output.runs, sm.output.bins, sm.output.kinds))
