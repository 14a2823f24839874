"""Drop the checkpoints of finished runs, keep those of unfinished ones (`make clean-checkpoints`).

A training job keeps its checkpoints outside its outputs, in
`checkpoints/<dataset>/<variant>/seed<seed>/`, so that a killed run resumes. Once the run's
`results/runs/<dataset>/<variant>/seed<seed>/metrics.json` exists (written last and atomically by
the run's evaluation job, `hieramamba evaluate`), nothing in the DAG reads its checkpoint again:
its folder can go. A run without metrics.json keeps its folder, so it still resumes, or (trained,
not yet evaluated) its evaluation job still finds the weights. What is lost: re-scoring a finished
run's weights with `hieramamba evaluate DIR` (the run would have to be trained again).

Prints what it removed and kept, and the space freed; `--dry-run` only prints.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from pathlib import Path

SEED_DIR = re.compile(r"seed\d+")


def _size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def checkpoint_folders(checkpoints: Path) -> list[tuple[str, str, str]]:
    """(dataset, variant, seed folder) of every checkpoints/<dataset>/<variant>/seed<n>/."""
    found = []
    for folder in sorted(checkpoints.glob("*/*/seed*")):
        if folder.is_dir() and SEED_DIR.fullmatch(folder.name):
            found.append((folder.parent.parent.name, folder.parent.name, folder.name))
    return found


def clean(checkpoints: Path, runs: Path, dry_run: bool = False) -> dict:
    """Remove the checkpoint folders of runs that have a metrics.json; returns what happened."""
    removed, kept, freed = [], [], 0
    for dataset, variant, seed in checkpoint_folders(checkpoints):
        folder = checkpoints / dataset / variant / seed
        if (runs / dataset / variant / seed / "metrics.json").is_file():
            freed += _size(folder)
            removed.append(str(folder))
            if not dry_run:
                shutil.rmtree(folder)
        else:
            kept.append(str(folder))
    return {"removed": removed, "kept": kept, "freed_bytes": freed}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoints", default="checkpoints", help="the DAG's checkpoint folder")
    parser.add_argument("--runs", default="results/runs", help="the DAG's run folders")
    parser.add_argument("--dry-run", action="store_true", help="print what would be removed, remove nothing")
    args = parser.parse_args(argv)
    checkpoints, runs = Path(args.checkpoints), Path(args.runs)
    if not checkpoints.is_dir():
        print(f"{checkpoints}: no checkpoint folder, nothing to do")
        return 0
    result = clean(checkpoints, runs, args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for folder in result["removed"]:
        print(f"{verb} {folder} (finished: {runs}/{Path(folder).relative_to(checkpoints)}/metrics.json)")
    for folder in result["kept"]:
        print(f"kept {folder} (no metrics.json yet: the run resumes from it)")
    print(f"{verb} {len(result['removed'])} finished runs' checkpoints, {result['freed_bytes'] / 2**20:.1f} MiB; "
          f"kept {len(result['kept'])} unfinished")
    return 0


if __name__ == "__main__":
    sys.exit(main())
