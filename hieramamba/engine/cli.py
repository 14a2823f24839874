"""`hieramamba train | evaluate | convert-checkpoint`.

    hieramamba train [--no-eval] dataset=synth_tacos model=hieramamba scale=default seed=0 ablation=no_gate \
        out=results/runs/synth_tacos/no_gate/seed0 [checkpoint_dir=DIR] [train.lr=1e-4 ...]
    hieramamba evaluate DIR [--checkpoint FILE] [--split val] [--baseline prior] [key=value ...]
    hieramamba convert-checkpoint AUTHORS.pth OURS.pth [dataset=tacos scale=paper ...]

`train` writes DIR/config.yaml, trains (resuming from the last checkpoint when DIR already holds
one made with the same config; a different config is an error naming the differing keys), writes
DIR/trained.json, then evaluates the EMA weights and writes DIR/predictions.json and
DIR/metrics.json atomically. `--no-eval` stops after trained.json: `hieramamba evaluate DIR` then
writes the same metrics.json (the DAG runs the two as separate jobs).

`evaluate` re-scores a run directory. Outputs other than the run's own protocol (another split, a
baseline, an external checkpoint) go to metrics.<tag>.json / predictions.<tag>.json so the run's
metrics.json is never replaced by something else. With key=value overrides and no DIR/config.yaml
(e.g. to score a converted authors' checkpoint) the config is composed and written first.

Bad input (a config, data or checkpoint error) is one line on stderr and exit status 2; `hieramamba
--debug ...` or HIERAMAMBA_DEBUG=1 print the traceback too, and `train` always writes it to
DIR/train.log. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hieramamba.errors import USER_ERRORS, report_error

TRAIN_USAGE = """usage: hieramamba [--debug] train [--no-eval] out=DIR [dataset=NAME] [model=NAME]
                        [scale=smoke|default|paper] [seed=N] [ablation=NAME|PATH] [checkpoint_dir=DIR]
                        [group.key=value ...]

Compose the run config (hydra-core), train with automatic resume, evaluate, write the run directory.
--no-eval: stop after training (DIR/trained.json); `hieramamba evaluate DIR` evaluates later.
"""


def _fail(msg: str) -> int:
    print(f"hieramamba: error: {msg}", file=sys.stderr)
    return 2


def train_main(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        print(TRAIN_USAGE)
        return 0
    evaluate = "--no-eval" not in argv
    argv = [a for a in argv if a != "--no-eval"]
    bad = [a for a in argv if "=" not in a]
    if bad:
        return _fail(f"train takes key=value arguments only, got {bad}\n{TRAIN_USAGE}")
    try:
        from hieramamba.engine.config import compose_config
        from hieramamba.engine.run import run_training

        cfg = compose_config(argv)
        if not cfg.out:
            return _fail("train needs out=DIR (the run directory)")
        metrics = run_training(cfg, evaluate=evaluate)
    except USER_ERRORS as exc:
        return report_error(exc)
    if not evaluate:
        print(f"trained {cfg.out}: {metrics['iterations']} iterations, {metrics['train_time_s']:.1f} s")
    elif isinstance(metrics, dict) and "metrics" in metrics:
        print(" ".join(f"{k} {v:.2f}" for k, v in metrics["metrics"].items()))
    return 0


def evaluate_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="hieramamba evaluate", description="evaluate a run directory")
    parser.add_argument("run_dir", help="the run directory (holds config.yaml)")
    parser.add_argument("--checkpoint", help="weights to evaluate (ours, or converted with convert-checkpoint); "
                        "default: the run's last checkpoint (EMA weights)")
    parser.add_argument("--split", help="split to evaluate (default: the config's eval.split)")
    parser.add_argument("--baseline", choices=["prior"], help="score the fixed start/end prior instead of a model")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, only when DIR has no config.yaml yet")
    args = parser.parse_args(argv)
    try:
        from hieramamba.engine.run import run_evaluation

        metrics = run_evaluation(Path(args.run_dir), checkpoint=args.checkpoint, split=args.split,
                                 baseline=args.baseline, overrides=args.overrides)
    except (*USER_ERRORS, FileNotFoundError) as exc:
        return report_error(exc)
    print(" ".join(f"{k} {v:.2f}" for k, v in metrics["metrics"].items()))
    return 0


def convert_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="hieramamba convert-checkpoint",
                                     description="convert an authors' checkpoint (last.pth) to this package's names")
    parser.add_argument("source", help="the authors' checkpoint file")
    parser.add_argument("target", help="where to write the converted checkpoint")
    parser.add_argument("overrides", nargs="*", help="key=value config selecting the model it fits, e.g. "
                        "dataset=tacos scale=paper model.reference_precision=true")
    args = parser.parse_args(argv)
    try:
        from hieramamba.engine.run import convert_checkpoint

        convert_checkpoint(Path(args.source), Path(args.target), args.overrides)
    except (*USER_ERRORS, FileNotFoundError) as exc:
        return report_error(exc)
    print(f"wrote {args.target}")
    return 0
