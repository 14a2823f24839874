"""`hieramamba` command line: a thin dispatcher.

Each command group lives with the code it drives and exposes `main(argv) -> int`; the group's
module is imported only when the command runs, so `hieramamba --help` stays fast and a missing
optional dependency of one group never breaks another.
"""

from __future__ import annotations

import importlib
import os
import sys

from hieramamba.errors import DEBUG_ENV, USER_ERRORS, report_error

# command -> (module, function, one-line help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "train": ("hieramamba.engine.cli", "train_main", "train one (dataset, variant, seed) run"),
    "evaluate": ("hieramamba.engine.cli", "evaluate_main", "evaluate a run directory or checkpoint"),
    "convert-checkpoint": (
        "hieramamba.engine.cli",
        "convert_main",
        "convert an authors' checkpoint to this package's parameter names",
    ),
    "predict": ("hieramamba.engine.predict_cli", "predict_main", "top-k moments of text queries in one video"),
    "data": ("hieramamba.data.cli", "main", "synthesize or check a dataset (`data synth`, `data check`)"),
    "bench": ("hieramamba.bench.cli", "main", "benchmarks (`bench scaling`)"),
    "gpu-check": ("hieramamba.bench.gpu_check", "main", "one-command GPU check: CUDA tests, parity, scaling, throughput, train+evaluate"),
    "parity": ("hieramamba.parity.cli", "main", "our SSM kernels against mamba_ssm's (CUDA, or Triton interpreted on CPU)"),
}


def _usage() -> str:
    lines = ["usage: hieramamba <command> [args...]", "", "commands:"]
    lines += [f"  {name:<20} {help_}" for name, (_, _, help_) in COMMANDS.items()]
    lines += ["", "`hieramamba <command> --help` for the command's options.",
              "Bad input is reported as one line; `--debug` (or HIERAMAMBA_DEBUG=1) adds the traceback."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from hieramamba import __version__

        print(__version__)
        return 0
    # --debug anywhere: the traceback of a bad-input error is printed as well as its one line
    debug = "--debug" in argv
    debug_before = os.environ.get(DEBUG_ENV)
    if debug:
        argv = [a for a in argv if a != "--debug"]
        os.environ[DEBUG_ENV] = "1"
    if not argv:
        print(_usage())
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"hieramamba: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module_name, func_name, _ = COMMANDS[command]
    func = getattr(importlib.import_module(module_name), func_name)
    try:
        return int(func(rest) or 0)
    except USER_ERRORS as exc:  # a command that let bad input through: still one line
        return report_error(exc)
    finally:
        if debug and debug_before is None:  # main() may run in-process (tests): leave the environment as found
            os.environ.pop(DEBUG_ENV, None)
        elif debug:
            os.environ[DEBUG_ENV] = debug_before


if __name__ == "__main__":
    raise SystemExit(main())
