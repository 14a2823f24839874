"""Paper-scale training throughput: the released config of a dataset on random tensors shaped like
its real data, timed through the real training step (model, focal + regression + ACC/SPC
objective, backward, grad clip, AdamW).

Why synthetic tensors: the GPU machine has no data, and throughput depends only on shapes: the
video feature width and padded length (`model.max_seq_len` x `backbone.input_stride`), the text
width and length (`model.max_text_len`), videos per batch and queries per video
(`train.batch_size`, `train.max_queries`), all read from `dataset=<name> scale=paper`. The
projected time of one training run is iterations/s against `samples_per_epoch // batch_size`
iterations x (epochs + warm-up epochs); it needs the number of training samples per epoch, known
only where the data is (TACoS: a lower bound from the 2D-TAN train.json, below).
"""

from __future__ import annotations

import time
from typing import Any

# Training samples per epoch (video-centric groups of at most max_queries queries). TACoS: the
# 2D-TAN train.json has 75 videos and 9,790 queries; sum over videos of ceil(queries / 4) = 2,475
# is a lower bound (long videos split into more windows). Others: pass samples_per_epoch.
SAMPLES_PER_EPOCH: dict[str, int] = {"tacos": 2475}

# Small shapes of the CPU mode (a test of the code path, not a measurement).
TINY_OVERRIDES = ["model.max_seq_len=64", "model.embd_dim=32", "model.backbone.num_levels=3", "model.backbone.headdim=8",
                  "model.text.embd_dim=32", "model.text.num_layers=1", "model.max_text_len=8",
                  "dataset.features.video_dim=16", "dataset.features.text_dim=16", "train.projector_dim=16",
                  "train.batch_size=2", "train.max_queries=2", "train.microbatch_size=null"]


def _random_batch(cfg, video_dim: int, text_dim: int, vid_stride: int, generator, device):
    """One training batch of random features with every video fully valid."""
    import torch

    from hieramamba.engine.batching import Batch

    b_v, q = int(cfg.train.batch_size), int(cfg.train.max_queries)
    t_vid = int(cfg.model.max_seq_len) * vid_stride  # (padded) feature steps per video
    t_txt = int(cfg.model.max_text_len or 24)
    grid = t_vid / vid_stride  # model-grid length the targets live on
    starts = torch.rand(b_v * q, generator=generator) * grid * 0.8
    lengths = torch.rand(b_v * q, generator=generator) * grid * 0.2 + 1.0
    return Batch(
        vid=torch.randn(b_v, video_dim, t_vid, generator=generator),  # (B_v, C, T)
        vid_mask=torch.ones(b_v, 1, t_vid, dtype=torch.bool),  # (B_v, 1, T)
        text=torch.randn(b_v * q, text_dim, t_txt, generator=generator),  # (B_q, C_t, t)
        text_mask=torch.ones(b_v * q, 1, t_txt, dtype=torch.bool),  # (B_q, 1, t)
        queries_per_video=torch.full((b_v,), q, dtype=torch.long),  # (B_v,)
        targets=torch.stack([starts, starts + lengths], dim=1),  # (B_q, 2) grid units
    ).to(device)


def measure_training(dataset: str, device: str = "cuda", *, steps: int = 20, warmup: int = 3,
                     budget_s: float = 60.0, overrides: list[str] | None = None,
                     samples_per_epoch: int | None = None) -> dict[str, Any]:
    """Iterations/s and peak memory of the released config of `dataset` (tacos, ego4d_nlq, mad)."""
    import torch

    from omegaconf import OmegaConf

    from hieramamba.engine.config import compose_config
    from hieramamba.engine.optim import build_optimizer
    from hieramamba.engine.trainer import Objective
    from hieramamba.models.model import build_model
    from hieramamba.models.points import PointGenerator

    args = [f"dataset={dataset}", "scale=paper", f"train.device={device}", "out=unused", *(overrides or [])]
    cfg = compose_config(args)
    video_dim, text_dim = int(cfg.dataset.features.video_dim), int(cfg.dataset.features.text_dim)
    dev = torch.device(device)
    torch.manual_seed(0)
    mcfg = OmegaConf.to_container(cfg.model, resolve=True)
    mcfg["in_dim"] = video_dim
    mcfg.setdefault("text", {})["in_dim"] = text_dim
    model = build_model(mcfg).to(dev)
    stride = int(getattr(model.backbone, "stride", 2))
    points = PointGenerator(int(mcfg["max_seq_len"]), int(model.num_levels), stride=stride).to(dev)
    objective = Objective(cfg, int(mcfg["embd_dim"]), stride).to(dev)
    trainable = [model] + ([] if cfg.train.frozen_projectors else [objective])
    optimizer = build_optimizer(trainable, cfg.train.lr, cfg.train.weight_decay, tuple(cfg.train.betas))
    params = [p for m in trainable for p in m.parameters() if p.requires_grad]
    vid_stride = int(model.level_strides[0])
    gen = torch.Generator().manual_seed(0)
    batch = _random_batch(cfg, video_dim, text_dim, vid_stride, gen, dev)
    micro = int(cfg.train.microbatch_size or cfg.train.batch_size)
    use_bf16 = bool(cfg.train.bf16) and dev.type == "cuda"
    neg_gen = torch.Generator(device=dev).manual_seed(0)
    cuda = dev.type == "cuda"

    def step():
        optimizer.zero_grad(set_to_none=True)
        for mb in batch.split_videos(micro):
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_bf16):
                out = model(mb.vid, mb.vid_mask, mb.text, mb.text_mask, mb.queries_per_video)
            pts = points([int(x.shape[-1]) for x in out.logits])
            objective(out, mb, [p.to(dev) for p in pts], 1.0, neg_gen).total.backward()
        torch.nn.utils.clip_grad_norm_(params, float(cfg.train.clip_grad_norm))
        optimizer.step()

    model.train()
    for _ in range(warmup):
        step()
    if cuda:
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
    done, started = 0, time.perf_counter()
    while done < steps and time.perf_counter() - started < budget_s:
        step()
        done += 1
    if cuda:
        torch.cuda.synchronize(dev)
    elapsed = time.perf_counter() - started
    its = done / elapsed if elapsed > 0 else None
    epochs = int(cfg.train.epochs) + int(cfg.train.warmup_epochs)
    samples = samples_per_epoch if samples_per_epoch is not None else SAMPLES_PER_EPOCH.get(dataset)
    iters = None if samples is None else max(1, samples // int(cfg.train.batch_size))
    return {
        "dataset": dataset,
        "shapes": {"batch_videos": int(cfg.train.batch_size), "queries_per_video": int(cfg.train.max_queries),
                   "video_len": int(cfg.model.max_seq_len) * vid_stride, "video_dim": video_dim,
                   "text_len": int(cfg.model.max_text_len or 24), "text_dim": text_dim,
                   "embd_dim": int(mcfg["embd_dim"]), "bf16": use_bf16},
        "n_params": sum(p.numel() for p in model.parameters()),
        "timed_iterations": done,
        "iterations_per_s": its,
        "peak_mem_mb": torch.cuda.max_memory_allocated(dev) / 2**20 if cuda else None,
        "epochs_with_warmup": epochs,
        "samples_per_epoch": samples,
        "projected_run_h": None if (its is None or iters is None) else iters * epochs / its / 3600.0,
    }


def main(argv: list[str] | None = None) -> int:
    """`python -m hieramamba.bench.throughput --dataset tacos --device cuda --json OUT`."""
    import argparse
    import sys

    from hieramamba.atomic import atomic_write_json

    p = argparse.ArgumentParser(prog="python -m hieramamba.bench.throughput", description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", required=True, choices=["tacos", "ego4d_nlq", "mad", "madv2"])
    p.add_argument("--device", default="cuda")
    p.add_argument("--steps", type=int, default=20, help="timed iterations (at most; see --budget)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--budget", type=float, default=60.0, help="seconds of timed iterations at most")
    p.add_argument("--samples-per-epoch", type=int, default=None, help="training samples per epoch of your copy")
    p.add_argument("--tiny", action="store_true", help="small shapes (CPU mode: checks the code path only)")
    p.add_argument("--json", default=None, help="write the result here")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    result = measure_training(args.dataset, args.device, steps=args.steps, warmup=args.warmup, budget_s=args.budget,
                              overrides=TINY_OVERRIDES if args.tiny else None,
                              samples_per_epoch=args.samples_per_epoch)
    result["tiny"] = bool(args.tiny)
    its = result["iterations_per_s"]
    print(f"{args.dataset}: {its:.3g} it/s over {result['timed_iterations']} iterations, peak "
          f"{result['peak_mem_mb']} MiB, projected run {result['projected_run_h']} h")
    if args.json:
        atomic_write_json(args.json, result, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
