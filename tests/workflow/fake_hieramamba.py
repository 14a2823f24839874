"""A fast stand-in for the `hieramamba` CLI, used only by the DAG-mechanics tests.

It honours the contracts the workflow relies on (DEVELOPING.md): `data synth` writes a folder,
`data check` writes the JSON + Markdown report, `train ... out=DIR checkpoint_dir=CK` writes a
checkpoint first, then config.yaml, train_curve.csv, trained.json, hits.csv.gz (per-query hits
with each query's video, whose means are the recalls) and finally metrics.json atomically;
`train --no-eval` stops after trained.json and `evaluate DIR` (which needs the checkpoint) writes
the hits and metrics.json; `evaluate DIR --baseline prior` writes DIR/metrics.prior.json,
`bench scaling --out F` a JSON.
Every call is appended to $FAKE_CALLS. A train whose variant is in $FAKE_SLOW_VARIANTS sleeps
$FAKE_SLOW_SECONDS (to be killed); one that finds its checkpoint logs `resumed`.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import random
import sys
import time
from pathlib import Path

KINDS = ("plain", "long_range")


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


def planted_hits(dataset: str, run_key: str, metric: str, count: int, kinds: list[str],
                 events: list[str] | None = None) -> list[int]:
    """`count` hits among the queries, deterministic: every run ranks the queries by a per-dataset
    difficulty (long_range harder) plus a little per-run noise, so runs of one dataset hit
    mostly the same queries, as real paired runs do. `events`: a label per query; the queries of
    one event (paraphrases of one target) share its difficulty, so they mostly hit or miss together."""
    base, noise = random.Random(f"{dataset}/{metric}"), random.Random(f"{run_key}/{metric}")
    labels = events if events is not None else list(range(len(kinds)))
    difficulty = {label: base.random() for label in dict.fromkeys(labels)}
    score = [difficulty[label] + (0.5 if kind == "long_range" else 0.0) + 0.3 * noise.random()
             for label, kind in zip(labels, kinds)]
    hits = [0] * len(kinds)
    for i in sorted(range(len(kinds)), key=score.__getitem__)[:count]:
        hits[i] = 1
    return hits


def _recall(hits: dict[str, list[int]], rows: list[int]) -> dict[str, float]:
    return {m: 100.0 * sum(h[i] for i in rows) / len(rows) for m, h in hits.items()} if rows else {}


def write_hits_and_score(out: Path, kinds: list[str], bins: list[str], videos: list[str],
                         hits: dict[str, list[int]], bin_labels) -> dict:
    """Write out/hits.csv.gz (the per-query hits contract: query_id, kind, length_bin, video, then
    the metrics) and return the metrics.json fields (metrics, n_queries, by_length_bin,
    by_query_kind) that those hits give."""
    n = len(kinds)
    lines = [",".join(["query_id", "kind", "length_bin", "video", *hits])]
    lines += [",".join([f"q{i:05d}", kinds[i], bins[i], videos[i], *(str(h[i]) for h in hits.values())])
              for i in range(n)]
    tmp = out / ".hits.csv.gz.tmp"
    with gzip.GzipFile(tmp, "wb", mtime=0) as handle:
        handle.write(("\n".join(lines) + "\n").encode())
    os.replace(tmp, out / "hits.csv.gz")

    def group(labels, values):
        return {label: {"n_queries": sum(v == label for v in values),
                        "metrics": _recall(hits, [i for i in range(n) if values[i] == label])} for label in labels}

    return {"metrics": _recall(hits, list(range(n))), "n_queries": n,
            "by_length_bin": group(bin_labels, bins), "by_query_kind": group(KINDS, kinds)}


def record(dataset: str, variant: str, seed: int, out: Path) -> dict:
    digest = hashlib.sha256(f"{dataset}/{variant}/{seed}".encode()).digest()
    kinds = ["plain"] * 20 + ["long_range"] * 10
    bin_labels = ("<1 min", "1-3 min", ">3 min")
    bins = [bin_labels[i % 3] for i in range(len(kinds))]
    videos = [f"v{i % 5}" for i in range(len(kinds))]  # 5 videos, each with both kinds
    hits = {m: planted_hits(dataset, f"{variant}/{seed}", m, min(len(kinds), 3 + 2 * i + digest[i] % 6), kinds)
            for i, m in enumerate(layout(dataset))}
    return {"dataset": dataset, "variant": variant, "seed": seed, "split": "test", "protocol": "snag",
            **write_hits_and_score(out, kinds, bins, videos, hits, bin_labels), "n_dropped": 0,
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
        evaluate = "--no-eval" not in argv
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
        atomic_json(out / "trained.json", {"dataset": dataset, "variant": variant, "seed": seed,
                                            "checkpoint_dir": str(ckpt)})
        if evaluate:
            atomic_json(out / "metrics.json", record(dataset, variant, seed, out))
        return 0
    if argv[:1] == ["evaluate"] and "--baseline" not in argv:
        run = Path(argv[1])
        trained = json.loads((run / "trained.json").read_text())
        if not (Path(trained["checkpoint_dir"]) / "last.ckpt").is_file():
            print(f"fake hieramamba: no checkpoint in {trained['checkpoint_dir']}", file=sys.stderr)
            return 2
        log_call(f"RUN evaluate {trained['dataset']} {trained['variant']} {trained['seed']}")
        atomic_json(run / "metrics.json", record(trained["dataset"], trained["variant"], trained["seed"], run))
        return 0
    if argv[:1] == ["evaluate"]:
        run = Path(argv[1])
        data = json.loads((run / "metrics.json").read_text())
        prior = run / "prior"  # its hits stay out of the run's hits.csv.gz
        prior.mkdir(exist_ok=True)
        atomic_json(run / "metrics.prior.json", {**record(data["dataset"], "prior", data["seed"], prior), "variant": "prior"})
        return 0
    if argv[:2] == ["bench", "scaling"]:
        rows = [{"backbone": name, "L": n, "fwd_time_s": 1e-4 * n ** p, "peak_mem_mb": 0.01 * n ** p}
                for name, p in (("hieramamba", 1.0), ("attention", 2.0)) for n in (2048, 4096, 8192)]
        atomic_json(Path(option(argv, "--out")), {"results": rows})
        return 0
    print(f"fake hieramamba: unsupported call {argv}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
