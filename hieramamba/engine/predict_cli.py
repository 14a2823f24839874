"""`hieramamba predict`: where in this video does each query happen?

    hieramamba predict RUN_DIR_OR_CHECKPOINT --video FEATURES [--video-key KEY]
        (--query TEXT [--query TEXT ...] | --queries FILE.jsonl)
        [--glove FILE | --text-features FILE ...] [--top-k 5] [--duration S] [--fps F]
        [--out PRED.json] [--json] [--plot OUT.png] [--device cpu|cuda] [key=value ...]

Prints a table of the top-k moments (start_s, end_s, score) per query (or the JSON with --json),
writes the JSON to --out and the timeline to --plot. key=value overrides name the model an authors'
checkpoint fits (e.g. dataset=tacos scale=paper). Errors are one line, as the other engine commands.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hieramamba predict",
                                description="top-k moments of text queries in one video, with a trained model")
    p.add_argument("model", help="a run directory, our checkpoint file, or an authors' last.pth (+ key=value overrides)")
    p.add_argument("--video", required=True, help="the video's features: .npy, .pt, or an h5 file (see --video-key)")
    p.add_argument("--video-key", help="the dataset inside the h5 file (not needed when it holds one)")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--query", action="append", help="a query text (repeat for several)")
    which.add_argument("--queries", help="JSONL: one {\"query\", \"query_id\", \"text_features\", \"segment\"} per line")
    p.add_argument("--text-features", action="append",
                   help="precomputed (t, C) token features (.npy/.pt) of each --query, in order (Ego4D / MAD-style models)")
    p.add_argument("--glove", help="GloVe word vectors (TACoS-style models; default: the run's dataset.glove)")
    p.add_argument("--top-k", type=int, default=5, help="moments per query (default 5)")
    p.add_argument("--duration", type=float, help="video length in seconds (default: what the features cover)")
    p.add_argument("--fps", type=float, help="frame rate the features were cut at (default: the dataset config's)")
    p.add_argument("--out", help="write the predictions as JSON here")
    p.add_argument("--json", action="store_true", help="print the JSON instead of the table")
    p.add_argument("--plot", help="write a timeline of the moments (PNG)")
    p.add_argument("--device", help="cpu or cuda (default: the run config's train.device)")
    p.add_argument("overrides", nargs="*", help="key=value config for a checkpoint that carries none")
    return p


def predict_main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    from hieramamba.engine.cli import _fail
    from hieramamba.errors import ConfigError, DataError

    try:
        from hieramamba.atomic import atomic_write_json
        from hieramamba.engine.predict import predict, read_queries_jsonl

        queries = read_queries_jsonl(args.queries) if args.queries else args.query
        if args.queries and args.text_features:
            raise ConfigError("--text-features pairs with --query; in --queries FILE give \"text_features\" per line")
        result = predict(args.model, args.video, queries, top_k=args.top_k, glove=args.glove,
                         text_features=args.text_features, video_key=args.video_key, duration=args.duration,
                         fps=args.fps, overrides=args.overrides, device=args.device)
        payload = result.to_json()
        if args.out:
            atomic_write_json(Path(args.out), payload, indent=1)
        if args.plot:
            from hieramamba.engine.timeline_plot import plot_timeline

            plot_timeline(result, args.plot)
    except (ConfigError, DataError, FileNotFoundError, ValueError) as exc:
        return _fail(str(exc))
    print(json.dumps(payload, indent=1) if args.json else result.table())
    n_unknown = sum(len(q.unknown_words) for q in result.queries)
    if n_unknown:
        print(f"note: {n_unknown} query word(s) not in GloVe embedded as zero vectors (listed per query)", file=sys.stderr)
    return 0
