"""A fast stand-in for the `hieramamba` CLI, used only by the DAG-mechanics tests.

It honours the contracts the workflow relies on (DEVELOPING.md): `data synth` writes a folder,
`data check` writes the JSON + Markdown report, `train ... out=DIR checkpoint_dir=CK` writes a
checkpoint first, then config.yaml, train_curve.csv and finally metrics.json atomically,
`evaluate DIR --baseline prior` writes DIR/metrics.prior.json, `bench scaling --out F` a JSON.
Every call is appended to $FAKE_CALLS. A train whose variant is in $FAKE_SLOW_VARIANTS sleeps
$FAKE_SLOW_SECONDS (to be killed); one that finds its checkpoint logs `resumed`.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path


def log_call(text: str) -> None:
    calls = os.environ.get("FAKE_CALLS")
    if calls:
        with open(calls, "a") as handle:
            handle.write(text + "\n")


def atomic_json(path: Path, data) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def layout(dataset: str) -> list[str]:
    if "mad" in dataset:
        return [f"R{k}@{t}" for k in (1, 5, 10, 50) for t in ("0.1", "0.3", "0.5")]
    return [f"R{k}@{t}" for k in (1, 5) for t in ("0.3", "0.5")]


def record(dataset: str, variant: str, seed: int) -> dict:
    digest = hashlib.sha256(f"{dataset}/{variant}/{seed}".encode()).digest()
    values = {m: round(10 + 5 * i + digest[i] / 32, 2) for i, m in enumerate(layout(dataset))}
    bins = {label: {"n_queries": 10, "metrics": {m: v - 3 * j for m, v in values.items()}}
            for j, label in enumerate(("<1 min", "1-3 min", ">3 min"))}
    return {"dataset": dataset, "variant": variant, "seed": seed, "split": "test", "protocol": "snag",
            "metrics": values, "n_queries": 30, "n_dropped": 0, "by_length_bin": bins,
            "by_query_kind": {"plain": {"n_queries": 20, "metrics": values}},
            "train_time_s": 1.0, "eval_time_s": 0.1, "peak_mem_mb": 100.0,
            "versions": {"python": sys.version.split()[0]}, "device": "cpu (fake)", "git_commit": None,
            "config_sha": "fake"}


def kv(args: list[str]) -> dict[str, str]:
    return dict(a.split("=", 1) for a in args if "=" in a)


def option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def main(argv: list[str]) -> int:
    log_call(" ".join(argv))
    if argv[:2] == ["data", "synth"]:
        out = Path(option(argv, "--out"))
        out.mkdir(parents=True, exist_ok=True)
        (out / "README").write_text(f"fake {option(argv, '--like')} data\n")
        return 0
    if argv[:2] == ["data", "check"]:
        Path(option(argv, "--report-json")).write_text(json.dumps({"ok": True, "args": argv[2:]}))
        Path(option(argv, "--report-md")).write_text("# data report (fake)\n")
        return 0
    if argv[:1] == ["train"]:
        args = kv(argv[1:])
        out, ckpt = Path(args["out"]), Path(args["checkpoint_dir"])
        dataset, variant, seed = args["dataset"], Path(args["ablation"]).stem, int(args["seed"])
        out.mkdir(parents=True, exist_ok=True)
        ckpt.mkdir(parents=True, exist_ok=True)
        resumed = (ckpt / "last.ckpt").exists()
        log_call(f"RUN train {dataset} {variant} {seed} resumed={resumed}")
        (ckpt / "last.ckpt").write_text("epoch 1\n")
        slow = os.environ.get("FAKE_SLOW_VARIANTS", "").split(",")
        if variant in slow and not resumed:
            time.sleep(float(os.environ.get("FAKE_SLOW_SECONDS", "60")))
        (out / "config.yaml").write_text(f"variant: {variant}\nseed: {seed}\n")
        (out / "train_curve.csv").write_text("epoch,step,loss\n0,1,2.0\n1,2,1.0\n")
        atomic_json(out / "metrics.json", record(dataset, variant, seed))
        return 0
    if argv[:1] == ["evaluate"]:
        run = Path(argv[1])
        data = json.loads((run / "metrics.json").read_text())
        atomic_json(run / "metrics.prior.json", {**record(data["dataset"], "prior", data["seed"]), "variant": "prior"})
        return 0
    if argv[:2] == ["bench", "scaling"]:
        rows = [{"backbone": name, "L": n, "fwd_time_s": 1e-4 * n ** p, "peak_mem_mb": 0.01 * n ** p}
                for name, p in (("hieramamba", 1.0), ("attention", 2.0)) for n in (256, 512, 1024)]
        atomic_json(Path(option(argv, "--out")), {"results": rows})
        return 0
    print(f"fake hieramamba: unsupported call {argv}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
