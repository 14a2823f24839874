"""A learning-free-ish baseline showing that the planted structure is learnable and that the
long-range queries need context: per-word feature prototypes matched locally.

Training: for every content word of a training query's target phrase (the words before
"again" / "for the first time"; stop words removed) the prototype is the mean (per-video-centred) feature inside
the query's ground-truth window. Test: the query's prototype is the mean of its words' prototypes;
the cosine of each (centred) feature with it, box-smoothed, is thresholded at half its maximum and
the connected run with the highest peak is the top-1 prediction. The matcher only looks at one
place in the video, so for "X again" / "X for the first time" it cannot tell the two X occurrences apart: it should be
well above chance on plain queries and clearly worse on long-range ones.

    python -m hieramamba.data.synth.baseline DIR [--train train] [--test test]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from hieramamba.data.synth.spec import window_seconds
from hieramamba.data.synth.world import tokenize

STOP = {"the", "i", "when", "did", "he", "she", "someone", "person", "man", "woman"}
SPLIT_WORDS = {"again", "for"}


def target_words(sentence: str) -> list[str]:
    words = []
    for w in tokenize(sentence):
        if w in SPLIT_WORDS:
            break
        if w not in STOP:
            words.append(w)
    return words


class FeatureReader:
    """Features of a generated dataset by video id, read from the released-format files."""

    def __init__(self, root: Path, like: str):
        self.root, self.like = root, like

    def __call__(self, video_id: str) -> np.ndarray:
        if self.like == "ego4d_nlq":
            import torch

            return torch.load(self.root / "features" / "video" / f"{video_id}.pt").numpy()
        import h5py

        name = "CLIP_B32_frames_features_5fps.h5" if self.like == "mad" else "tall_c3d_features.hdf5"
        with h5py.File(self.root / "features" / name, "r") as f:
            return f[video_id][()]


def _iou(a: tuple[float, float], b: tuple[float, float]) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = (a[1] - a[0]) + (b[1] - b[0]) - inter
    return inter / union if union > 0 else 0.0


def best_run(scores: np.ndarray) -> tuple[int, int]:
    """The connected run of steps scoring >= half the maximum that holds the highest peak: (first, last)."""
    above = scores >= 0.5 * scores.max()
    best, best_peak, i = (0, 0), -np.inf, 0
    while i < len(scores):
        if above[i]:
            j = i
            while j + 1 < len(scores) and above[j + 1]:
                j += 1
            if scores[i:j + 1].max() > best_peak:
                best, best_peak = (i, j), scores[i:j + 1].max()
            i = j + 1
        else:
            i += 1
    return best


def run(root: str | Path, train_split: str = "train", test_split: str | None = None, smooth: int = 3) -> dict:
    root = Path(root)
    manifest = json.loads((root / "synth_manifest.json").read_text())
    truth = json.loads((root / "synth_truth.json").read_text())
    like = manifest["like"]
    if test_split is None:
        test_split = "val" if like == "ego4d_nlq" else "test"  # Ego4D's test file has no ground truth
    step, size = window_seconds(like)
    read = FeatureReader(root, like)
    cache: dict[str, np.ndarray] = {}

    def feats(vid: str) -> np.ndarray:
        if vid not in cache:
            f = read(vid).astype(np.float64)
            cache[vid] = f - f.mean(0, keepdims=True)  # per-video centring removes the style offset
        return cache[vid]

    def centres(n: int) -> np.ndarray:
        return np.arange(n) * step + 0.5 * size

    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    for q in truth["queries"].values():
        if q["split"] != train_split:
            continue
        f = feats(q["video"])
        c = centres(len(f))
        inside = (c >= q["segment"][0]) & (c <= q["segment"][1])
        if not inside.any():
            continue
        m = f[inside].mean(0)
        for w in target_words(q["sentence"]):
            sums[w] = sums.get(w, 0.0) + m
            counts[w] = counts.get(w, 0) + 1
    protos = {w: sums[w] / counts[w] for w in sums}

    rng = np.random.default_rng(0)
    res: dict[str, dict[str, list[float]]] = {}
    kernel = np.ones(smooth) / smooth
    for q in truth["queries"].values():
        if q["split"] != test_split:
            continue
        words = [w for w in target_words(q["sentence"]) if w in protos]
        if not words:
            continue
        p = np.mean([protos[w] for w in words], axis=0)
        f = feats(q["video"])
        sim = f @ p / (np.linalg.norm(f, axis=1) * np.linalg.norm(p) + 1e-9)
        sim = np.convolve(sim, kernel, mode="same")
        best = best_run(sim)
        duration = truth["videos"][q["split"]][q["video"]]["duration"]
        pred = (best[0] * step, min(best[1] * step + size, duration))
        gt = tuple(q["segment"])
        length = gt[1] - gt[0]
        start = rng.uniform(0.0, duration - length)
        r = res.setdefault(q["kind"], {"iou": [], "chance_iou": []})
        r["iou"].append(_iou(pred, gt))
        r["chance_iou"].append(_iou((start, start + length), gt))  # same length, uniform position
    out = {"like": like, "scale": manifest["scale"], "seed": manifest["seed"], "train": train_split,
           "test": test_split, "by_kind": {}}
    for kind, r in sorted(res.items()):
        iou, ch = np.array(r["iou"]), np.array(r["chance_iou"])
        out["by_kind"][kind] = {"n": int(len(iou)),
                                "R1@0.3": round(100 * float((iou >= 0.3).mean()), 1),
                                "R1@0.5": round(100 * float((iou >= 0.5).mean()), 1),
                                "chance R1@0.3": round(100 * float((ch >= 0.3).mean()), 1),
                                "chance R1@0.5": round(100 * float((ch >= 0.5).mean()), 1)}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hieramamba.data.synth.baseline", description=__doc__.split("\n\n")[0])
    p.add_argument("root", help="a directory written by `hieramamba data synth`")
    p.add_argument("--train", default="train")
    p.add_argument("--test", default=None, help="default: val for ego4d_nlq, test otherwise")
    args = p.parse_args(argv)
    print(json.dumps(run(args.root, args.train, args.test), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
