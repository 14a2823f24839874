# What results/ holds: the scale and seeds of the tables, plots and runs written there
# (results/covers.json), so that another config does not overwrite them silently. Functions and
# one parse-time check; uses TABLES, SCALE, table_seeds from common.smk (included before).

import json
import os

from snakemake.exceptions import WorkflowError

# Tables and plots have one path per (table, dataset), and a run folder one per (dataset, variant,
# seed) whatever the scale: a config with other seeds or another scale would replace them. The
# first run writes what it covers here (onstart, Snakefile); a later config that differs stops
# at parse time unless the user asks for the replacement.
COVERS_FILE = "results/covers.json"
COVERS = {"scale": SCALE, "seeds": {table: table_seeds(table) for table in TABLES if table_enabled(table)}}


def _describe_covers(covers):
    seeds = "; ".join(f"{t}: {', '.join(map(str, s))}" for t, s in sorted(covers.get("seeds", {}).items()))
    return f"scale={covers.get('scale')}, seeds per table ({seeds})"


def check_covers(path=COVERS_FILE):
    if config.get("replace_results") or not os.path.isfile(path):
        return
    with open(path) as handle:
        held = json.load(handle)
    if held != COVERS:
        raise WorkflowError(
            f"{path}: results/ holds the results of {_describe_covers(held)}; this config asks for "
            f"{_describe_covers(COVERS)}, whose tables, plots (and, for another scale, runs) would "
            "replace them. Keep them by moving results/ aside (e.g. `mv results results_old`), or "
            "replace them with `--config replace_results=true`."
        )


def write_covers(path=COVERS_FILE):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as handle:
        json.dump(COVERS, handle, indent=1)
    os.replace(tmp, path)


check_covers()
