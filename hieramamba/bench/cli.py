"""`hieramamba bench <name>`: benchmarks (scripts that print and write JSON; not tests).

`hieramamba bench scaling [options]` runs `hieramamba.bench.scaling` (see its docstring);
`python -m hieramamba.bench [scaling] [options]` does the same.
"""

from __future__ import annotations

import sys

BENCHMARKS = {"scaling": "time and peak memory vs sequence length (SSD scan, backbones)"}


def _usage() -> str:
    lines = ["usage: hieramamba bench <benchmark> [options]", "", "benchmarks:"]
    lines += [f"  {name:<10} {help_}" for name, help_ in BENCHMARKS.items()]
    lines += ["", "`hieramamba bench <benchmark> --help` for its options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if not argv or argv[0].startswith("-"):  # `python -m hieramamba.bench --quick`: scaling is the default
        argv = ["scaling", *argv]
    name, rest = argv[0], argv[1:]
    if name == "scaling":
        from hieramamba.bench.scaling import main as scaling_main

        return scaling_main(rest)
    print(f"hieramamba bench: unknown benchmark {name!r}\n\n{_usage()}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
