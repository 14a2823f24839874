"""A small learned probe: does gradient descent pick up the planted structure in CPU minutes, and do
long-range queries need a model with long-range context?

Two tiny text-conditioned frame scorers, identical except for the temporal mixer:
`local` (three 3-tap convolutions: a 7-feature receptive field) and `global` (the same plus a
bidirectional GRU over the whole video, run on a 4x average-pooled sequence and concatenated back). Text: a bidirectional GRU over the token features (word
order matters: "X again" vs "X for the first time"). Fusion: FiLM. Loss: per-feature BCE on "inside the
target window". Prediction: the above-half-maximum run with the highest peak. Not part of the
suite's model; it only characterises the benchmark.

    python -m hieramamba.data.synth.probe DIR --mixer {local,global} [--epochs 20] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from hieramamba.data.synth.baseline import FeatureReader, _iou, best_run
from hieramamba.data.synth.spec import window_seconds
from hieramamba.data.synth.world import tokenize


class TextReader:
    """Token features of a generated dataset by query id, read from the released-format files."""

    def __init__(self, root: Path, like: str):
        self.root, self.like = root, like
        self.glove: dict[str, np.ndarray] | None = None
        if like == "tacos":
            self.glove = {}
            for line in (root / "glove.6B.300d.txt").read_text().splitlines():
                w, *v = line.split(" ")
                self.glove[w] = np.array(v, dtype=np.float32)

    def __call__(self, qid: str, sentence: str) -> np.ndarray:
        if self.like == "tacos":
            return np.stack([self.glove[w] for w in tokenize(sentence)])
        if self.like == "ego4d_nlq":
            import torch

            return torch.load(self.root / "features" / "text" / f"{qid}.pt").numpy()
        import h5py

        with h5py.File(self.root / "features" / "CLIP_B32_language_tokens_features.h5", "r") as f:
            return f[qid][()]


def _build(c_v: int, c_t: int, d: int, mixer: str):
    import torch
    from torch import nn

    class Probe(nn.Module):
        def __init__(self):
            super().__init__()
            self.vin = nn.Conv1d(c_v, d, 3, padding=1)
            self.text = nn.GRU(c_t, d, batch_first=True, bidirectional=True)
            self.film = nn.Linear(2 * d, 2 * d)
            self.local = nn.Sequential(nn.ReLU(), nn.Conv1d(d, d, 3, padding=1), nn.ReLU(),
                                       nn.Conv1d(d, d, 3, padding=1), nn.ReLU())
            self.mix = nn.GRU(d, d, batch_first=True, bidirectional=True) if mixer == "global" else None
            self.head = nn.Conv1d(3 * d if self.mix is not None else d, 1, 3, padding=1)

        def forward(self, video, texts, text_len):  # (1, C, T), (Q, t, C_t), (Q,)
            packed = nn.utils.rnn.pack_padded_sequence(texts, text_len, batch_first=True, enforce_sorted=False)
            _, h = self.text(packed)  # (2, Q, d)
            gamma, beta = self.film(torch.cat([h[0], h[1]], -1)).chunk(2, -1)  # (Q, d)
            v = self.vin(video)  # (1, d, T)
            x = v * (1 + gamma[:, :, None]) + beta[:, :, None]  # (Q, d, T)
            x = self.local(x)
            if self.mix is not None:  # GRU on a 4x pooled sequence (faster, shorter paths), then back
                t_len = x.shape[-1]
                g = nn.functional.avg_pool1d(x, 4, 4, ceil_mode=True)  # (Q, d, T/4)
                g = self.mix(g.transpose(1, 2))[0].transpose(1, 2)  # (Q, 2d, T/4)
                g = g.repeat_interleave(4, dim=-1)[..., :t_len]  # (Q, 2d, T)
                x = torch.cat([x, g], 1)  # (Q, 3d, T)
            return self.head(x)[:, 0]  # (Q, T)

    return Probe()


def run(root: str | Path, mixer: str = "global", epochs: int = 20, seed: int = 0, d: int = 64,
        lr: float = 3e-3, threads: int = 1, eval_split: str | None = None) -> dict:
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    root = Path(root)
    manifest = json.loads((root / "synth_manifest.json").read_text())
    truth = json.loads((root / "synth_truth.json").read_text())
    like = manifest["like"]
    test_split = eval_split or ("val" if like == "ego4d_nlq" else "test")
    step, size = window_seconds(like)
    read_v, read_t = FeatureReader(root, like), TextReader(root, like)

    def batches(split: str):
        by_video: dict[str, list[str]] = {}
        for qid, q in truth["queries"].items():
            if q["split"] == split:
                by_video.setdefault(q["video"], []).append(qid)
        out = []
        for vid, qids in sorted(by_video.items()):
            f = read_v(vid).astype(np.float32)
            f = (f - f.mean(0)) / (f.std(0) + 1e-6)
            c = np.arange(len(f)) * step + 0.5 * size
            toks = [read_t(qid, truth["queries"][qid]["sentence"]) for qid in qids]
            lens = torch.tensor([len(t) for t in toks])
            tt = torch.zeros(len(toks), int(lens.max()), toks[0].shape[1])
            for i, t in enumerate(toks):
                tt[i, : len(t)] = torch.from_numpy(np.asarray(t, dtype=np.float32))
            segs = [truth["queries"][q]["segment"] for q in qids]
            target = torch.tensor(np.stack([(c >= s) & (c <= e) for s, e in segs]), dtype=torch.float32)
            dur = truth["videos"][split][vid]["duration"]
            out.append((torch.from_numpy(f.T.copy())[None], tt, lens, target, segs, qids, dur))
        return out

    train, test = batches("train"), batches(test_split)
    model = _build(manifest["dims"]["video"], manifest["dims"]["text"], d, mixer)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        model.train()
        for i in rng.permutation(len(train)):
            v, tt, lens, target, *_ = train[i]
            logits = model(v, tt, lens)
            pos = target.sum(1, keepdim=True).clamp(min=1)
            weight = torch.where(target > 0, target.shape[1] / pos, torch.ones_like(target))
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, target, weight=weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
    train_s = time.perf_counter() - t0
    model.eval()
    res: dict[str, list[float]] = {}
    with torch.no_grad():
        for v, tt, lens, target, segs, qids, dur in test:
            scores = torch.sigmoid(model(v, tt, lens)).numpy()
            for sc, seg, qid in zip(scores, segs, qids):
                best = best_run(sc)
                pred = (best[0] * step, min(best[1] * step + size, dur))
                res.setdefault(truth["queries"][qid]["kind"], []).append(_iou(pred, tuple(seg)))
    out = {"like": like, "scale": manifest["scale"], "mixer": mixer, "epochs": epochs, "seed": seed, "split": test_split,
           "train_s": round(train_s, 1), "by_kind": {}}
    for kind, ious in sorted(res.items()):
        a = np.array(ious)
        out["by_kind"][kind] = {"n": int(len(a)), "R1@0.3": round(100 * float((a >= 0.3).mean()), 1),
                                "R1@0.5": round(100 * float((a >= 0.5).mean()), 1)}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hieramamba.data.synth.probe", description=__doc__.split("\n\n")[0])
    p.add_argument("root")
    p.add_argument("--mixer", choices=("local", "global"), default="global")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split", default=None, help="evaluation split (default: val for ego4d_nlq, test otherwise)")
    args = p.parse_args(argv)
    print(json.dumps(run(args.root, args.mixer, args.epochs, args.seed, eval_split=args.split), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
