"""`hieramamba data check`: validate a dataset and write a data report (JSON + Markdown).

The report lists, per split: videos, queries (by kind), durations, moment lengths; every counted
quirk (what the reference protocol does with it); and, when features are configured, missing
feature files, feature dimensions, lengths vs duration, NaN/Inf, and text features per query.

Structural problems (missing/unreadable feature files, wrong dimensions, features whose width
differs from the others', NaN/Inf, empty features, a training or evaluation split without an
annotated query) are errors: the check lists them all and fails. Known quirks are counted and pass, unless
`strict`, which turns every counted quirk into an error.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from hieramamba.atomic import atomic_write_text
from hieramamba.data.dataset import GroundingDataset
from hieramamba.data.preflight import empty_split_problems, width_outliers
from hieramamba.data.records import QUIRKS
from hieramamba.errors import DataError

MAX_LISTED = 50  # problems listed per kind in the report (all are counted)
LENGTH_TOLERANCE = (3, 0.05)  # |T - expected| within max(3 features, 5 %) is not a mismatch


def _stats(values) -> dict[str, float]:
    v = np.asarray(list(values), dtype=np.float64)
    if v.size == 0:
        return {"n": 0}
    return {"n": int(v.size), "min": float(v.min()), "mean": float(v.mean()), "median": float(np.median(v)), "max": float(v.max())}


class _Problems:
    def __init__(self):
        self.counts: dict[str, int] = {}
        self.items: dict[str, list[dict]] = {}

    def add(self, kind: str, path: object, record: object, problem: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        lst = self.items.setdefault(kind, [])
        if len(lst) < MAX_LISTED:
            lst.append({"path": str(path), "record": None if record is None else str(record), "problem": problem})


def _expected_len(ds: GroundingDataset, video) -> int:
    stored = video.num_clips if video.num_clips is not None else ds.grid.estimate_num_clips(video.duration, video.fps)
    return ds.grid.num_used(stored)


def check_dataset(ds: GroundingDataset, strict: bool = False, check_features: bool = True, check_text: bool = True) -> dict[str, Any]:
    """Validate `ds`; returns the report dict (see module doc). Never raises for data problems."""
    errors = _Problems()
    warnings = _Problems()
    report: dict[str, Any] = {
        "dataset": ds.name,
        "format": ds.records.format,
        "config": ds.config.get("_source"),
        "paths": {k: ds.config.get(k) for k in ("root", "annotations", "video_features", "text_features", "glove", "query_kinds")},
        "grid": {
            "clip_size": ds.grid.clip_size,
            "clip_stride": ds.grid.clip_stride,
            "downsample_rate": ds.grid.downsample_rate,
            "effective_stride_frames": ds.grid.stride,
        },
        "eval_split": ds.eval_split,
        "protocol": ds.protocol,
        "strict": strict,
        "splits": {},
    }
    for name, split in ds.records.splits.items():
        queries = list(split.queries())
        kinds: dict[str, int] = {}
        for q in queries:
            kinds[q.kind] = kinds.get(q.kind, 0) + 1
        moments = [q.segment[1] - q.segment[0] for q in queries if q.segment is not None]
        rel = [(q.segment[1] - q.segment[0]) / split.videos[q.video_id].duration for q in queries if q.segment is not None]
        report["splits"][name] = {
            "source": split.source,
            "videos": len(split.videos),
            "queries": len(queries),
            "annotated_queries": len(moments),
            "queries_by_kind": dict(sorted(kinds.items())),
            "duration_s": _stats(v.duration for v in split.videos.values()),
            "total_hours": sum(v.duration for v in split.videos.values()) / 3600.0,
            "moment_s": _stats(moments),
            "moment_relative": _stats(rel),
            "queries_per_video": _stats(len(v.queries) for v in split.videos.values()),
        }

    # an empty training or evaluation split would train on nothing or score NaN over no query
    for p in empty_split_problems(ds, {"training": "train", "evaluation": ds.eval_split}):
        errors.add(p.kind, p.path, p.record, p.problem)

    # ------------------------------------------------------------ features
    feat_info: dict[str, Any] = {"video": {"checked": 0, "dims": {}}, "text": {"checked": 0, "dims": {}}}
    has_video = any(v.feature is not None for s in ds.records.splits.values() for v in s.videos.values())
    if check_features and has_video:
        lengths_ratio = []
        video_widths: list[tuple[str, str, int]] = []
        for split in ds.records.splits.values():
            for vid, video in split.videos.items():
                try:
                    feats = ds.load_video_features(vid)
                except DataError as exc:
                    kind = "missing_video_feature" if "not found" in exc.problem or "no dataset" in exc.problem else "bad_video_feature"
                    errors.add(kind, exc.path, exc.record, exc.problem)
                    continue
                feat_info["video"]["checked"] += 1
                video_widths.append((video.feature.path, vid, int(feats.shape[1])))
                dim = str(feats.shape[1])
                feat_info["video"]["dims"][dim] = feat_info["video"]["dims"].get(dim, 0) + 1
                expected = _expected_len(ds, video)
                lengths_ratio.append(len(feats) / max(expected, 1))
                tol = max(LENGTH_TOLERANCE[0], LENGTH_TOLERANCE[1] * expected)
                if abs(len(feats) - expected) > tol:
                    warnings.add(
                        "feature_length_mismatch",
                        video.feature.path,
                        vid,
                        f"{len(feats)} features (after down-sampling) for {video.duration:.2f} s; about {expected} expected",
                    )
                del feats
        for p in width_outliers(video_widths, "inconsistent_video_dim", "video features"):
            errors.add(p.kind, p.path, p.record, p.problem)
        feat_info["video"]["length_over_expected"] = _stats(lengths_ratio)
    else:
        feat_info["video"]["skipped"] = "no video features configured" if not has_video else "not requested"

    if check_text and ds.text_source is not None:
        unknown = 0
        text_widths: list[tuple[str, str, int]] = []
        glove = getattr(ds.text_source, "glove", None)
        for split in ds.records.splits.values():
            for q in split.queries():
                try:
                    t = ds.load_text_features(q)
                except DataError as exc:
                    kind = "missing_text_feature" if "not found" in exc.problem or "no features" in exc.problem or "no language" in exc.problem else "bad_text_feature"
                    errors.add(kind, exc.path, exc.record, exc.problem)
                    continue
                feat_info["text"]["checked"] += 1
                text_widths.append((ds.text_source.locate(q), q.query_id, int(t.shape[1])))
                dim = str(t.shape[1])
                feat_info["text"]["dims"][dim] = feat_info["text"]["dims"].get(dim, 0) + 1
                if glove is not None:
                    unknown += len(glove.unknown_words(q.sentence))
        if glove is not None:
            feat_info["text"]["glove_unknown_words"] = unknown  # embedded as zero vectors (HieraMamba)
        for p in width_outliers(text_widths, "inconsistent_text_dim", "text features"):
            errors.add(p.kind, p.path, p.record, p.problem)
    else:
        feat_info["text"]["skipped"] = "no text features configured" if ds.text_source is None else "not requested"
    report["features"] = feat_info

    # ------------------------------------------------------------ quirks
    quirks = ds.records.quirks.as_dict()
    report["quirks"] = quirks
    report["quirk_examples"] = ds.records.quirks.examples
    report["quirk_meaning"] = {k: QUIRKS[k] for k in sorted({k for c in quirks.values() for k in c}) if k in QUIRKS}
    if strict:
        for split, counts in quirks.items():
            for quirk, n in counts.items():
                ex = ds.records.quirks.examples.get(split, {}).get(quirk, [])
                errors.add(f"strict:{quirk}", ds.records.splits[split].source, ex[0] if ex else None, f"{n} x {QUIRKS.get(quirk, quirk)}")
        for kind, n in warnings.counts.items():
            for item in warnings.items[kind]:
                errors.add(f"strict:{kind}", item["path"], item["record"], item["problem"])
    report["warnings"] = {"counts": warnings.counts, "items": warnings.items}
    report["errors"] = {"counts": errors.counts, "items": errors.items}
    report["ok"] = not errors.counts
    return report


def first_error(report: dict[str, Any]) -> str | None:
    for kind, items in report["errors"]["items"].items():
        if items:
            it = items[0]
            where = it["path"] if it["record"] is None else f"{it['path']}, record {it['record']!r}"
            n = report["errors"]["counts"][kind]
            more = f" (and {n - 1} more {kind})" if n > 1 else ""
            return f"{where}: {it['problem']}{more}"
    return None


def _md_table(rows: list[list[Any]], header: list[str]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return out


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        return f"{x:.2f}" if math.isfinite(x) else str(x)
    return str(x)


def render_markdown(report: dict[str, Any]) -> str:
    lines = [f"# Data report: {report['dataset']} ({report['format']})", ""]
    lines.append(f"Config: `{report['config']}`. Eval split `{report['eval_split']}`, protocol `{report['protocol']}`, strict: {report['strict']}.")
    lines.append(f"**Result: {'OK' if report['ok'] else 'FAILED'}**")
    lines.append("")
    rows = []
    for name, s in report["splits"].items():
        d, m = s["duration_s"], s["moment_s"]
        rows.append([
            name, s["videos"], s["queries"], _fmt(s["total_hours"]),
            "/".join(_fmt(d.get(k, "-")) for k in ("min", "mean", "max")),
            "/".join(_fmt(m.get(k, "-")) for k in ("mean", "median")),
            ", ".join(f"{k}: {v}" for k, v in s["queries_by_kind"].items()),
        ])
    lines += _md_table(rows, ["split", "videos", "queries", "hours", "duration s (min/mean/max)", "moment s (mean/median)", "query kinds"])
    lines += ["", "## Quirks (counted; handled as the reference protocol does)", ""]
    qrows = [[split, q, n, report["quirk_meaning"].get(q, "")] for split, c in report["quirks"].items() for q, n in c.items()]
    lines += _md_table(qrows, ["split", "quirk", "count", "handling"]) if qrows else ["none"]
    lines += ["", "## Features", ""]
    for kind in ("video", "text"):
        info = report["features"][kind]
        if "skipped" in info:
            lines.append(f"- {kind}: skipped ({info['skipped']})")
        else:
            extra = f", GloVe unknown words: {info['glove_unknown_words']}" if "glove_unknown_words" in info else ""
            lines.append(f"- {kind}: {info['checked']} checked, dims {info['dims']}{extra}")
    for title, key in (("Warnings", "warnings"), ("Errors", "errors")):
        lines += ["", f"## {title}", ""]
        counts = report[key]["counts"]
        if not counts:
            lines.append("none")
            continue
        for kind, n in counts.items():
            lines.append(f"- **{kind}**: {n}")
            for it in report[key]["items"][kind][:10]:
                rec = f" record `{it['record']}`" if it["record"] is not None else ""
                lines.append(f"  - `{it['path']}`{rec}: {it['problem']}")
    return "\n".join(lines) + "\n"


def write_report(report: dict[str, Any], out_dir: str | Path) -> tuple[Path, Path]:
    """Write `data_report.json` and `data_report.md` atomically into out_dir."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = (out_dir / "data_report.json", out_dir / "data_report.md")
    for path, text in zip(paths, (json.dumps(report, indent=2, default=str) + "\n", render_markdown(report))):
        atomic_write_text(path, text)
    return paths
