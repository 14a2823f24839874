"""Before `hieramamba train`: decide between resuming and starting over.

A run folder and its checkpoints are reused only for the same inputs: the train arguments, the
ablation file and the package's run-config files. Their fingerprint is stored in
`<run>/.dag_inputs.sha256`. Same fingerprint: nothing is touched, so a killed or failed job
resumes from its checkpoints. Different (an edited ablation file, another scale, changed conf
files) or unknown while old files exist: the run folder's files and the checkpoints are deleted
and the run starts over; `hieramamba train` would otherwise refuse the folder (its config.yaml
differs) or resume from checkpoints of another config.

    python prepare_run.py RUN_DIR CHECKPOINT_DIR --files ABLATION CONF... -- TRAIN_ARGS...
"""

import argparse
import hashlib
import shutil
import sys
from pathlib import Path

FINGERPRINT = ".dag_inputs.sha256"


def fingerprint(files, train_args) -> str:
    """sha256 of the train arguments and the files' contents (not their paths, which may be given
    relative or absolute)."""
    contents = sorted(hashlib.sha256(Path(path).read_bytes()).hexdigest() for path in files)
    return hashlib.sha256("\0".join(list(train_args) + contents).encode()).hexdigest()


def prepare(run_dir: Path, checkpoint_dir: Path, files, train_args) -> str:
    """Returns what was done: "new", "resume" or "restart"."""
    current = fingerprint(files, train_args)
    stored_path = run_dir / FINGERPRINT
    stored = stored_path.read_text().strip() if stored_path.is_file() else None
    leftovers = (run_dir.is_dir() and any(run_dir.iterdir())) or (
        checkpoint_dir.is_dir() and any(checkpoint_dir.iterdir()))
    if stored == current:
        return "resume"
    action = "restart" if leftovers else "new"
    if leftovers:
        for path in (run_dir, checkpoint_dir):
            if path.is_dir():
                shutil.rmtree(path)
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = stored_path.with_name(FINGERPRINT + ".tmp")
    tmp.write_text(current + "\n")
    tmp.replace(stored_path)
    return action


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" not in argv:
        print("prepare_run.py: expected `-- TRAIN_ARGS...`", file=sys.stderr)
        return 2
    split = argv.index("--")
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("checkpoint_dir", type=Path)
    parser.add_argument("--files", nargs="*", default=[])
    args = parser.parse_args(argv[:split])
    action = prepare(args.run_dir, args.checkpoint_dir, args.files, argv[split + 1:])
    messages = {
        "new": "new run",
        "resume": "same inputs as the last attempt: resuming from its checkpoints if any",
        "restart": "inputs changed since the last attempt: deleted the old run folder and checkpoints",
    }
    print(f"prepare_run: {args.run_dir}: {messages[action]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
