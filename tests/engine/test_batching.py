"""Batching: fixed-length training padding, text padding, packing to one row per query, micro-batch
splits, reproducible crops and epoch orders, eval padding; the prior baseline."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hieramamba.data.dataset import GroundingDataset
from hieramamba.engine.batching import (
    Batch,
    TrainCollate,
    TrainSamples,
    epoch_order,
    eval_video_batch,
    pad_texts,
    pad_video,
)
from hieramamba.engine.inference import fit_prior, prior_predictions, score


@pytest.fixture(scope="module")
def data(synth_tacos_smoke) -> GroundingDataset:
    return GroundingDataset.from_config("synth_tacos", data_root=synth_tacos_smoke(1))


def test_pad_video_and_texts():
    vid, mask = pad_video(np.ones((3, 2), np.float32), 5)
    assert vid.shape == (2, 5) and mask.tolist() == [[True, True, True, False, False]]
    assert vid[:, 3:].abs().sum() == 0
    with pytest.raises(ValueError):
        pad_video(np.ones((6, 2), np.float32), 5)
    text, tmask = pad_texts([np.ones((2, 3), np.float32), np.ones((7, 3), np.float32)], 4)
    assert text.shape == (2, 3, 4) and tmask.sum(-1).flatten().tolist() == [2, 4]  # truncated to 4


def test_training_samples_are_fixed_length_and_packed(data):
    ds = TrainSamples(data, seed=0, max_seq_len=32, vid_stride=1, max_queries=3, crop_ratio=[0.9, 1.0], max_text_len=6)
    ds.set_epoch(0)
    items = [ds[i] for i in range(3)]
    batch = TrainCollate(6)(items)
    n_q = sum(len(it["texts"]) for it in items)
    assert batch.vid.shape[0] == 3 and batch.vid.shape[-1] == 32 and batch.vid_mask.shape == (3, 1, 32)
    assert batch.text.shape[0] == n_q == batch.targets.shape[0] and batch.text.shape[-1] == 6
    assert batch.queries_per_video.tolist() == [len(it["texts"]) for it in items]
    assert all(1 <= len(it["texts"]) <= 3 for it in items)
    # targets lie (within half a clip) inside the valid part of their video
    starts = np.cumsum([0] + batch.queries_per_video.tolist())
    for v in range(3):
        valid = int(batch.vid_mask[v].sum())
        t = batch.targets[starts[v]:starts[v + 1]]
        assert (t[:, 0] >= -1).all() and (t[:, 1] <= valid + 1).all() and (t[:, 1] > t[:, 0]).all()
    micro = batch.split_videos(2)
    assert [m.num_videos for m in micro] == [2, 1]
    assert torch.equal(torch.cat([m.text for m in micro]), batch.text)
    assert torch.equal(torch.cat([m.targets for m in micro]), batch.targets)


def test_crops_and_orders_are_reproducible(data):
    a = TrainSamples(data, seed=5, max_seq_len=32, vid_stride=1, max_queries=3, crop_ratio=[0.9, 1.0])
    b = TrainSamples(data, seed=5, max_seq_len=32, vid_stride=1, max_queries=3, crop_ratio=[0.9, 1.0])
    assert a.samples == b.samples
    a.set_epoch(2), b.set_epoch(2)
    assert torch.equal(a[4]["vid"], b[4]["vid"]) and torch.equal(a[4]["targets"], b[4]["targets"])
    b.set_epoch(3)
    assert epoch_order(20, 5, 2) == epoch_order(20, 5, 2) != epoch_order(20, 5, 3)
    assert sorted(epoch_order(20, 5, 2)) == list(range(20))


def test_eval_batch_pads_to_the_coarsest_stride(data):
    sample = data.eval_samples()[0]
    vs = data.load_sample(sample)
    batch = eval_video_batch(vs, 16, 1)
    t = vs.video.shape[0]
    assert batch.vid.shape[-1] % 16 == 0 and batch.vid.shape[-1] - t < 16
    assert int(batch.vid_mask.sum()) == t
    assert batch.text.shape[0] == len(vs.queries) == int(batch.queries_per_video[0])
    assert isinstance(batch, Batch)


def test_prior_baseline(data):
    prior = fit_prior(data, "train", k=5)
    assert len(prior) == 5 and prior[0][2] == 1.0
    assert all(0 <= s <= 1 and 0 <= e <= 1 for s, e, _ in prior)
    preds = prior_predictions(data, "test", prior)
    assert len(preds.rows) == data.split("test").num_queries
    from omegaconf import OmegaConf

    ev = OmegaConf.create({"ranks": [1, 5], "iou_thresholds": [0.3, 0.5], "length_bins": [0, 120, 600]})
    out = score(preds, ev, "snag")
    assert out["n_queries"] == len(preds.ground_truth)
    assert out["metrics"]["R5@0.3"] >= out["metrics"]["R1@0.3"] >= out["metrics"]["R1@0.5"]
