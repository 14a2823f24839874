"""`hieramamba data ...`: `check` a dataset, `synth` a synthetic benchmark (delegated)."""

from __future__ import annotations

import argparse
import json
import sys

from hieramamba.atomic import atomic_write_text
from hieramamba.errors import ConfigError, DataError, report_error


def _check_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="hieramamba data check",
        description="Validate a dataset and write its data report (JSON + Markdown). The dataset is a "
        "YAML path or a name under hieramamba/conf/dataset/, given positionally or as dataset=NAME; "
        "dataset.KEY=VALUE overrides its keys (e.g. dataset.root=DIR), data_root=DIR sets ${data_root}.",
    )
    parser.add_argument("args", nargs="+", help="DATASET | dataset=NAME, then dataset.KEY=VALUE / data_root=DIR overrides")
    parser.add_argument("--strict", action="store_true", help="every counted quirk is an error")
    parser.add_argument("--out", default=None, help="directory for data_report.json and data_report.md")
    parser.add_argument("--report-json", default=None, help="path of the JSON report")
    parser.add_argument("--report-md", default=None, help="path of the Markdown report")
    parser.add_argument("--data-root", default=None, help="value of ${data_root} (default $HIERAMAMBA_DATA_ROOT or 'data')")
    parser.add_argument("--no-features", action="store_true", help="check annotations only")
    args = parser.parse_args(argv)

    from hieramamba.data.check import check_dataset, first_error, render_markdown, write_report
    from hieramamba.data.dataset import GroundingDataset, parse_override

    dataset, data_root, overrides = None, args.data_root, {}
    try:
        for item in args.args:
            if "=" not in item:
                if dataset is not None:
                    raise ConfigError(f"two datasets given: {dataset!r} and {item!r}")
                dataset = item
                continue
            key, value = parse_override(item)
            if key == "dataset":
                dataset = str(value)
            elif key == "data_root":
                data_root = str(value)
            elif key.startswith("dataset."):
                overrides[key[len("dataset."):]] = value
            else:
                raise ConfigError(f"override {item!r}: only dataset=, dataset.KEY= and data_root= are understood here")
        if dataset is None:
            raise ConfigError("no dataset given (a YAML path, a name, or dataset=NAME)")
        ds = GroundingDataset.from_config(dataset, data_root=data_root, overrides=overrides)
    except (DataError, ConfigError) as exc:
        return report_error(exc, "hieramamba data check", status=1)  # one line; --debug adds the traceback
    report = check_dataset(ds, strict=args.strict, check_features=not args.no_features, check_text=not args.no_features)
    if args.out:
        json_path, md_path = write_report(report, args.out)
        print(f"wrote {json_path} and {md_path}")
    for path, text in ((args.report_json, None), (args.report_md, "md")):
        if path:
            body = render_markdown(report) if text == "md" else json.dumps(report, indent=2, default=str) + "\n"
            atomic_write_text(path, body)
            print(f"wrote {path}")
    for name, s in report["splits"].items():
        print(f"{name}: {s['videos']} videos, {s['queries']} queries")
    for split, counts in report["quirks"].items():
        for quirk, n in counts.items():
            print(f"quirk {split}/{quirk}: {n}")
    if not report["ok"]:
        print(f"hieramamba data check: FAILED: {first_error(report)}", file=sys.stderr)
        return 1
    print("OK")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: hieramamba data {check,synth} ...\n\n"
              "  check <dataset yaml or name> [--strict] [--out DIR]   validate a dataset, write a data report\n"
              "  synth --like {ego4d_nlq,mad,tacos} --scale {smoke,default} --seed N --out DIR   synthetic benchmark")
        return 0
    cmd, rest = argv[0], argv[1:]
    if cmd == "check":
        return _check_main(rest)
    if cmd == "synth":
        from hieramamba.data import synth  # lazy: owned by the synthetic-benchmark module

        return int(synth.main(rest) or 0)
    print(f"hieramamba data: unknown subcommand {cmd!r} (check | synth)", file=sys.stderr)
    return 2
