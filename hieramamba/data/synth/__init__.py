"""The synthetic benchmark: a dataset written in Ego4D-NLQ, MAD or TACoS's raw released format.

    hieramamba data synth --like {ego4d_nlq,mad,tacos} --scale {smoke,default} --seed N --out DIR

Same arguments -> byte-identical files. The planted structure (event types with feature
signatures, drift, noise, background; plain and long-range queries) is described in
`hieramamba.data.synth.world` and docs/synthetic.md; the per-dataset numbers in `spec.py`.

Besides the format's own files, DIR gets `query_kinds.json` ({query_id: "plain" | "long_range"}),
`synth_manifest.json` (version, arguments, dims, counts, planted-structure parameters, files) and
`synth_truth.json` (every planted event and query target in seconds, for analysis and tests).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from hieramamba.data.synth.formats import WRITERS, Output, spec_summary, write_json
from hieramamba.data.synth.spec import FEATURE_WINDOWS, LIKES, SCALES, features_per_second, get_spec
from hieramamba.data.synth.world import World, tokenize

GENERATOR_VERSION = "4.0"
# Paths the generator owns inside DIR (removed by --overwrite, nothing else is touched).
OWNED = ("annotations", "features", "glove.6B.300d.txt", "query_kinds.json", "synth_manifest.json",
         "synth_truth.json")


def generate(like: str, scale: str, seed: int, out: str | Path, overwrite: bool = False) -> dict:
    """Write the dataset under `out`; returns the manifest (also written to synth_manifest.json)."""
    spec = get_spec(like, scale)
    root = Path(out)
    if root.exists() and not root.is_dir():
        raise FileExistsError(f"{root}: exists and is not a directory")
    if root.exists() and any(root.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{root}: output directory is not empty (use --overwrite to replace a dataset)")
        for name in OWNED:
            p = root / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    root.mkdir(parents=True, exist_ok=True)
    world = World(spec, seed)
    sink = Output(root)
    WRITERS[like](world, sink)

    write_json(root / "query_kinds.json", sink.kinds)
    write_json(root / "synth_truth.json", {
        "units": "seconds (TACoS: frame / 29.4; Ego4D: clip-relative)",
        "signatures": [[float(v) for v in row] for row in world.signatures.astype("float32")],
        "background_signatures": [[float(v) for v in row] for row in world.background.astype("float32")],
        "types": [{"noun": t.noun, "verb": t.verb_base, "verb_past": t.verb_past} for t in world.types],
        "videos": sink.truth_videos, "queries": sink.truth_queries,
    })
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    n_all = sum(c["queries"] for c in sink.counts.values())
    n_lr = sum(c["long_range"] for c in sink.counts.values())
    manifest = {
        "generator": "hieramamba.data.synth", "version": GENERATOR_VERSION,
        "like": like, "scale": scale, "seed": int(seed),
        "dims": {"video": spec.video_dim, "text": spec.text_dim},
        "feature_rate": {**FEATURE_WINDOWS[like], "features_per_second": features_per_second(like)},
        "counts": sink.counts, "long_range_fraction": round(n_lr / max(n_all, 1), 4),
        "planted": spec_summary(spec),
        "tokenizer": "lower-case \\w+ tokens; one token feature row per token (word vector + token noise)",
        "num_files": len(files),
        "total_bytes": sum((root / f).stat().st_size for f in files),
    }
    write_json(root / "synth_manifest.json", manifest)
    return manifest


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hieramamba data synth",
                                description="Write a synthetic grounding dataset in a released format.")
    p.add_argument("--like", required=True, choices=LIKES, help="which dataset's raw format and statistics")
    p.add_argument("--scale", default="default", choices=SCALES, help="smoke: seconds, for tests; default: DAG runs")
    p.add_argument("--seed", type=int, default=0, help="same seed -> byte-identical files")
    p.add_argument("--out", required=True, help="output directory (must be empty unless --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="replace the generator's files in a non-empty --out")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "synth":  # tolerate being handed the sub-command name too
        argv = argv[1:]
    args = _parser().parse_args(argv)
    t0 = time.perf_counter()
    try:
        m = generate(args.like, args.scale, args.seed, args.out, overwrite=args.overwrite)
    except (FileExistsError, ValueError) as exc:
        print(f"hieramamba data synth: {exc}", file=sys.stderr)
        return 2
    counts = ", ".join(f"{s}: {c['videos']} videos / {c['queries']} queries" for s, c in m["counts"].items())
    print(f"wrote {args.like} ({args.scale}, seed {args.seed}) to {args.out} in {time.perf_counter() - t0:.1f} s: "
          f"{counts}; long-range fraction {m['long_range_fraction']:.2f}")
    return 0


__all__ = ["GENERATOR_VERSION", "generate", "main", "tokenize"]
