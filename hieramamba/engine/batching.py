"""Tensors for the model from the data helper's video-centric samples.

Training (reference §1.7): each sample is one video window with the queries grouped into it
(`GroundingDataset.train_samples`, built once per run as HieraMamba does); the window is randomly
cropped (`load_sample(train=True)`), padded to the fixed length `vid_stride * max_seq_len` with a
bool mask, its text padded to `max_text_len`, and the batch is packed to one row per query.
Targets are in model-grid units (feature grid / `vid_stride`).

Evaluation (§1.8): one video with all its queries, zero-padded to a multiple of the coarsest
pyramid stride (in feature steps).

Every random choice comes from a numpy Generator seeded by (seed, epoch, sample index), so a
sample's crop does not depend on the order samples are visited nor on where a run resumed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from hieramamba.data.dataset import GroundingDataset, VideoSample
from hieramamba.data.sampling import Sample

CROP_STREAM = 1  # numpy seed stream for crops
GROUP_STREAM = 2  # numpy seed stream for the one-off grouping


@dataclass
class Batch:
    """One training (micro-)batch or one evaluation chunk.

    vid (B_v, C, T) float32, vid_mask (B_v, 1, T) bool, text (B_q, C_t, t) float32,
    text_mask (B_q, 1, t) bool, queries_per_video (B_v,) long, targets (B_q, 2) float32 in
    model-grid units (None for unannotated queries at evaluation).
    """

    vid: torch.Tensor
    vid_mask: torch.Tensor
    text: torch.Tensor
    text_mask: torch.Tensor
    queries_per_video: torch.Tensor
    targets: torch.Tensor | None

    def to(self, device: torch.device) -> "Batch":
        move = lambda t: None if t is None else t.to(device, non_blocking=True)  # noqa: E731
        return Batch(*(move(t) for t in (self.vid, self.vid_mask, self.text, self.text_mask, self.queries_per_video, self.targets)))

    @property
    def num_videos(self) -> int:
        return int(self.vid.shape[0])

    def split_videos(self, size: int) -> list["Batch"]:
        """Micro-batches of at most `size` videos (with their queries)."""
        if size >= self.num_videos:
            return [self]
        out = []
        qpv = self.queries_per_video.tolist()
        starts = np.concatenate([[0], np.cumsum(qpv)]).astype(int)
        for v0 in range(0, self.num_videos, size):
            v1 = min(v0 + size, self.num_videos)
            q0, q1 = starts[v0], starts[v1]
            out.append(Batch(self.vid[v0:v1], self.vid_mask[v0:v1], self.text[q0:q1], self.text_mask[q0:q1],
                             self.queries_per_video[v0:v1], None if self.targets is None else self.targets[q0:q1]))
        return out


def pad_video(feats: np.ndarray, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(T, C) numpy -> (C, length) float32 zero-padded and (1, length) bool mask (T <= length)."""
    t, c = feats.shape
    if t > length:
        raise ValueError(f"video of {t} steps does not fit the padded length {length}")
    vid = torch.zeros(c, length, dtype=torch.float32)
    vid[:, :t] = torch.from_numpy(np.ascontiguousarray(feats, dtype=np.float32)).T
    mask = torch.zeros(1, length, dtype=torch.bool)
    mask[:, :t] = True
    return vid, mask


def pad_texts(texts: list[np.ndarray], length: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """[(t_i, C_t)] -> (B_q, C_t, L) float32 and (B_q, 1, L) bool; L = `length` or the longest."""
    if not texts:
        raise ValueError("a batch needs at least one query")
    longest = max(len(t) for t in texts)
    length = longest if length is None else int(length)
    c = texts[0].shape[1]
    out = torch.zeros(len(texts), c, length, dtype=torch.float32)
    mask = torch.zeros(len(texts), 1, length, dtype=torch.bool)
    for i, t in enumerate(texts):
        n = min(len(t), length)
        out[i, :, :n] = torch.from_numpy(np.ascontiguousarray(t[:n], dtype=np.float32)).T
        mask[i, :, :n] = True
    return out, mask


class TrainSamples(torch.utils.data.Dataset):
    """Video-centric training samples; `set_epoch` before iterating an epoch."""

    def __init__(self, data: GroundingDataset, *, seed: int, max_seq_len: int, vid_stride: int, max_queries: int,
                 crop_ratio=None, trunc_thresh: float = 0.5, max_text_len: int | None = None, split: str = "train"):
        self.data = data
        self.seed = int(seed)
        self.vid_stride = int(vid_stride)
        self.max_vid_len = int(vid_stride) * int(max_seq_len)
        self.crop_ratio = None if crop_ratio is None else tuple(float(r) for r in crop_ratio)
        self.trunc_thresh = float(trunc_thresh)
        self.max_text_len = max_text_len
        self.epoch = 0
        group_rng = np.random.default_rng([self.seed, GROUP_STREAM])
        self.samples: list[Sample] = data.train_samples(group_rng, self.max_vid_len, max_queries, self.crop_ratio, split=split)
        if not self.samples:
            raise ValueError(f"dataset {data.name!r}: no training samples in split {split!r}")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, idx: int) -> dict:
        rng = np.random.default_rng([self.seed, CROP_STREAM, self.epoch, int(idx)])
        vs = self.data.load_sample(self.samples[idx], train=True, rng=rng, max_vid_len=self.max_vid_len,
                                   crop_ratio=self.crop_ratio, trunc_thresh=self.trunc_thresh,
                                   max_text_len=self.max_text_len)
        vid, mask = pad_video(vs.video, self.max_vid_len)
        return {"vid": vid, "mask": mask, "texts": vs.texts,
                "targets": torch.from_numpy(vs.targets / self.vid_stride).float()}


class TrainCollate:
    def __init__(self, max_text_len: int | None):
        self.max_text_len = max_text_len

    def __call__(self, items: list[dict]) -> Batch:
        text, text_mask = pad_texts([t for it in items for t in it["texts"]], self.max_text_len)
        return Batch(
            vid=torch.stack([it["vid"] for it in items]),
            vid_mask=torch.stack([it["mask"] for it in items]),
            text=text,
            text_mask=text_mask,
            queries_per_video=torch.tensor([len(it["texts"]) for it in items], dtype=torch.long),
            targets=torch.cat([it["targets"] for it in items]),
        )


def epoch_order(num_samples: int, seed: int, epoch: int) -> list[int]:
    """The shuffled sample order of one epoch (a function of seed and epoch only)."""
    gen = torch.Generator().manual_seed(int(seed) * 1000 + int(epoch))
    return torch.randperm(num_samples, generator=gen).tolist()


def eval_video_batch(vs: VideoSample, pad_multiple: int, vid_stride: int) -> Batch:
    """One evaluation video with all its queries, padded to a multiple of `pad_multiple` steps.

    The text arrives cut to max_text_len unless `eval.truncate_text=false` (`inference.eval_truncates_text`);
    the authors cut it in training only."""
    t = vs.video.shape[0]
    length = max(int(pad_multiple), -(-t // int(pad_multiple)) * int(pad_multiple))
    vid, mask = pad_video(vs.video, length)
    text, text_mask = pad_texts(vs.texts, None)
    targets = torch.from_numpy(vs.targets / vid_stride).float() if len(vs.targets) == len(vs.texts) else None
    return Batch(vid[None], mask[None], text, text_mask, torch.tensor([len(vs.texts)], dtype=torch.long), targets)
