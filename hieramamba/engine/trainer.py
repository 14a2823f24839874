"""The training loop (reference §1.7, §4.5): micro-batches, focal + IoU/DIoU + ACC + SPC, the
running loss normaliser, grad clip, AdamW + warm-up, EMA, a checkpoint every epoch and resume.

Determinism: on CPU the run is a function of the config. Everything random is seeded from
`seed`: model init (torch global RNG right after `seed_everything`), the one-off grouping and the
per-sample crops (numpy Generators keyed by (seed, epoch, sample)), the epoch order (a torch
Generator keyed by (seed, epoch)), the ACC/SPC negatives (a torch Generator keyed by (seed,
iteration)); dropout draws from the global torch RNG, whose state is saved in every checkpoint.
A run killed at any point and restarted resumes from the last epoch's checkpoint and produces the
same weights, bit for bit, as an uninterrupted run.
"""

from __future__ import annotations

import csv
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hieramamba.atomic import atomic_open
from hieramamba.engine import checkpoint as ckpt
from hieramamba.engine.batching import Batch, TrainCollate, TrainSamples, epoch_order
from hieramamba.engine.config import config_diff, to_yaml
from hieramamba.engine.ema import ModelEMA
from hieramamba.data.preflight import require_usable
from hieramamba.data.run_quirks import describe as describe_quirks
from hieramamba.data.run_quirks import run_data_quirks
from hieramamba.engine.factory import ModelParts, build_parts
from hieramamba.engine.inference import eval_truncates_text
from hieramamba.engine.optim import build_optimizer, build_scheduler
from hieramamba.errors import CheckpointError, ConfigError
from hieramamba.losses import (
    AnchorContrastiveLoss,
    LossNormalizer,
    SegmentContrastiveLoss,
    gt_span_masks,
    label_points,
    regression_loss,
    sigmoid_focal_loss,
)

TRAIN_SPLIT = "train"
CURVE_FIELDS = ("epoch", "iteration", "lr", "loss", "cls", "reg", "acc", "spc", "loss_norm", "num_pos", "grad_norm")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def select_device(name: str) -> torch.device:
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ConfigError("train.device=cuda but no CUDA device is available")
        return torch.device("cuda")
    return torch.device("cpu")


def set_determinism(cfg, device: torch.device) -> None:
    if cfg.train.num_threads:
        torch.set_num_threads(int(cfg.train.num_threads))
    if device.type == "cpu" and cfg.train.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        # Deterministic mode also fills every new uninitialised tensor with NaN (a debugging aid that
        # catches reads of uninitialised memory; ~7,800 fills per default-scale TACoS-like step). It
        # changes no result of correct code, so it is off.
        torch.utils.deterministic.fill_uninitialized_memory = False


class MismatchedRunError(ConfigError):
    """A run directory / checkpoint holds a different config than the one requested."""


def check_same_config(saved_yaml: str, cfg, where: str) -> None:
    from omegaconf import OmegaConf

    diff = config_diff(OmegaConf.create(saved_yaml), cfg)
    if diff:
        shown = ", ".join(diff[:12]) + (f" (+{len(diff) - 12} more)" if len(diff) > 12 else "")
        raise MismatchedRunError(
            f"{where} was made with a different config; differing keys: {shown}. "
            "Use a new out= directory (or delete the old run) instead of reusing it."
        )


# ------------------------------------------------------------------------------ losses


@dataclass
class LossTerms:
    total: torch.Tensor
    cls: float
    reg: float
    acc: float
    spc: float
    num_pos: int


class Objective(nn.Module):
    """focal + reg (+ ACC + SPC) for one micro-batch; sums are divided by `loss_norm`."""

    def __init__(self, cfg, embd_dim: int, anchor_stride: int):
        super().__init__()
        t = cfg.train
        self.t = t
        self.acc = AnchorContrastiveLoss(embd_dim, stride=anchor_stride, temperature=t.acc.temperature,
                                         neg_ratio=t.acc.neg_ratio, gap_ratio=t.acc.gap_ratio,
                                         proj_dim=t.projector_dim) if t.acc.enable else None
        self.spc = SegmentContrastiveLoss(embd_dim, temperature=t.spc.temperature, neg_ratio=t.spc.neg_ratio,
                                          proj_dim=t.projector_dim) if t.spc.enable else None
        if t.frozen_projectors:  # the authors' projectors are never optimised
            for p in self.parameters():
                p.requires_grad_(False)

    def forward(self, out, batch: Batch, points: list[torch.Tensor], loss_norm: float,
                generator: torch.Generator | None) -> LossTerms:
        t = self.t
        lengths = [int(x.shape[-1]) for x in out.logits]
        targets = batch.targets.to(torch.float32)
        labels, tgt_offsets = label_points(points, targets, center_radius=float(t.center_sampling_radius))
        logits = torch.cat(list(out.logits), dim=1).float()  # (B_q, P)
        offsets = torch.cat(list(out.offsets), dim=1).float()  # (B_q, P, 2)
        valid = torch.cat([m.reshape(m.shape[0], -1) for m in out.masks], dim=1)  # (B_q, P)
        pos = labels & valid
        num_pos = int(pos.sum())
        cls = sigmoid_focal_loss(logits[valid], pos[valid], alpha=float(t.focal_alpha), gamma=float(t.focal_gamma),
                                 smoothing=float(t.label_smoothing), reduction="sum") / loss_norm
        if num_pos > 0:
            reg = regression_loss(str(t.reg_loss), offsets[pos], tgt_offsets[pos].float(), reduction="sum") / loss_norm
        else:
            reg = logits.new_zeros(())
        total = cls + float(t.loss_weight) * reg
        acc = spc = logits.new_zeros(())
        n_rows_q, n_rows_f = logits.shape[0], int(out.fpn[0].shape[0])
        late = n_rows_f != n_rows_q
        if self.acc is not None:
            if out.anchors is None:
                raise ConfigError("train.acc.enable=true needs a backbone that returns anchors (HieraMamba)")
            acc = self.acc(out.fpn, out.fpn_masks, out.anchors, out.anchor_masks, generator=generator)
            if late:  # the authors scale the per-video loss by the mean number of queries per video
                acc = acc * (n_rows_q / n_rows_f)
            total = total + float(t.acc.weight) * acc
        if self.spc is not None:
            pos_levels = list(torch.split(pos, lengths, dim=1))
            strides = [int(p[0, 3]) if len(p) else 1 for p in points]
            spans = gt_span_masks(targets, lengths, strides)
            masks = [m.reshape(m.shape[0], -1) for m in out.masks]
            spc = self.spc(out.fpn, masks, pos_levels, spans, generator=generator,
                           queries_per_video=batch.queries_per_video if late else None)
            total = total + float(t.spc.weight) * spc
        return LossTerms(total, float(cls.detach()), float(reg.detach()), float(acc.detach()), float(spc.detach()), num_pos)


# ------------------------------------------------------------------------------ state


@dataclass
class TrainResult:
    parts: ModelParts
    ema: ModelEMA
    epochs_done: int
    iteration: int
    train_time_s: float
    resumed_from: int | None
    data_quirks: dict[str, dict[str, int]]  # split -> quirk -> n (data.run_quirks)


def _curve_rows(path: Path, max_iteration: int) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="") as fh:
        return [r for r in csv.DictReader(fh) if int(r["iteration"]) <= max_iteration]


def _rewrite_curve(path: Path, rows: list[dict[str, str]]) -> None:
    with atomic_open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=CURVE_FIELDS)
        w.writeheader()
        w.writerows(rows)


def _tensorboard(run_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter  # needs the optional `tensorboard` package
    except Exception:  # noqa: BLE001 - optional
        return None
    return SummaryWriter(str(run_dir / "tensorboard"))


def train(cfg, data, run_dir: Path, checkpoint_dir: Path, logger) -> TrainResult:
    """Train (or resume) the run described by `cfg` on `data`; returns the trained parts and EMA."""
    device = select_device(cfg.train.device)
    set_determinism(cfg, device)
    seed = int(cfg.seed)
    seed_everything(seed)
    eval_split = str(cfg.eval.split)
    require_usable(data, TRAIN_SPLIT, eval_split)  # empty splits, mixed feature widths: before anything is built
    parts = build_parts(cfg, data, device)
    data_quirks = run_data_quirks(data, {TRAIN_SPLIT: True, eval_split: eval_truncates_text(cfg)},
                                  parts.max_text_len)
    logger.info("data quirks (counted; handled as the reference protocol does): %s", describe_quirks(data_quirks))
    model = parts.model
    objective = Objective(cfg, parts.embd_dim, parts.anchor_stride).to(device)
    trainable = [model] + ([] if cfg.train.frozen_projectors else [objective])
    optimizer = build_optimizer(trainable, cfg.train.lr, cfg.train.weight_decay, tuple(cfg.train.betas))
    clip_params = [p for m in trainable for p in m.parameters() if p.requires_grad]

    samples = TrainSamples(data, seed=seed, max_seq_len=parts.max_seq_len, vid_stride=parts.vid_stride,
                           max_queries=int(cfg.train.max_queries), crop_ratio=cfg.train.crop_ratio,
                           trunc_thresh=float(cfg.train.trunc_thresh), max_text_len=parts.max_text_len,
                           split=TRAIN_SPLIT)
    collate = TrainCollate(parts.max_text_len)
    bs = int(cfg.train.batch_size)
    iters_per_epoch = max(1, len(samples) // bs)  # drop_last: every step sees a full batch
    if cfg.train.max_iters_per_epoch:
        iters_per_epoch = min(iters_per_epoch, int(cfg.train.max_iters_per_epoch))
    total_epochs = int(cfg.train.epochs) + int(cfg.train.warmup_epochs)
    scheduler = build_scheduler(optimizer, int(cfg.train.warmup_epochs) * iters_per_epoch,
                                total_epochs * iters_per_epoch, int(cfg.train.anneal_epochs) * iters_per_epoch)
    ema = ModelEMA(model, float(cfg.train.ema_beta))
    loss_norm = LossNormalizer(float(cfg.train.loss_norm), float(cfg.train.loss_norm_momentum))
    micro = int(cfg.train.microbatch_size or bs)
    use_bf16 = bool(cfg.train.bf16) and device.type == "cuda"

    start_epoch, iteration, train_time, resumed_from = 0, 0, 0.0, None
    curve = run_dir / "train_curve.csv"
    last = ckpt.last_checkpoint(checkpoint_dir)
    if last is not None:
        remedy = "Delete it to train this run from scratch, or set checkpoint_dir= (or out=) to another folder"
        state = ckpt.load_checkpoint(last, map_location=device, required=ckpt.RESUME_KEYS, remedy=remedy)
        if not isinstance(state["config_yaml"], str):
            raise CheckpointError(last, "its config_yaml is not text", remedy)
        check_same_config(state["config_yaml"], cfg, f"checkpoint {last}")
        for name, module in (("model", model), ("ema", ema), ("objective", objective), ("optimizer", optimizer),
                             ("scheduler", scheduler), ("loss_norm", loss_norm)):
            ckpt.load_weights(module, state[name], last, f"{name!r} states", remedy)
        try:
            ckpt.restore_rng(state["rng"])
            start_epoch, iteration = int(state["epoch"]), int(state["iteration"])
            train_time = float(state["train_time_s"])
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
            raise CheckpointError(last, f"its RNG states or position are unreadable [{ckpt.brief_exception(exc)}]",
                                  remedy) from None
        resumed_from = start_epoch
        logger.info("resumed from %s (epoch %d done, iteration %d)", last, start_epoch, iteration)
    _rewrite_curve(curve, _curve_rows(curve, iteration))  # drop rows of an interrupted epoch
    if start_epoch == 0 and resumed_from is None:
        logger.info("training %s on %s: %d samples, %d it/epoch, %d epochs (%d warm-up), device %s, %d parameters",
                    cfg.variant, cfg.dataset.name, len(samples), iters_per_epoch, total_epochs,
                    int(cfg.train.warmup_epochs), device, sum(p.numel() for p in model.parameters()))
    tb = _tensorboard(run_dir)

    for epoch in range(start_epoch, total_epochs):
        t0 = time.perf_counter()
        model.train()
        objective.train()
        samples.set_epoch(epoch)
        order = epoch_order(len(samples), seed, epoch)
        bar = None
        if cfg.train.progress:
            from tqdm import tqdm

            bar = tqdm(total=iters_per_epoch, desc=f"epoch {epoch + 1}/{total_epochs}", unit="it", leave=False)
        rows = []
        for it in range(iters_per_epoch):
            batch = collate([samples[i] for i in order[it * bs:(it + 1) * bs]])
            lr = optimizer.param_groups[0]["lr"]
            optimizer.zero_grad(set_to_none=True)
            gen = torch.Generator(device=device).manual_seed(seed * 100003 + iteration)
            sums = {"loss": 0.0, "cls": 0.0, "reg": 0.0, "acc": 0.0, "spc": 0.0}
            num_pos = 0
            for mb in batch.split_videos(micro):
                mb = mb.to(device)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                    out = model(mb.vid, mb.vid_mask, mb.text, mb.text_mask, mb.queries_per_video)
                points = parts.points_for([int(x.shape[-1]) for x in out.logits])
                terms = objective(out, mb, [p.to(device) for p in points], loss_norm.value, gen)
                terms.total.backward()
                for k, v in (("loss", float(terms.total.detach())), ("cls", terms.cls), ("reg", terms.reg),
                             ("acc", terms.acc), ("spc", terms.spc)):
                    sums[k] += v
                num_pos += terms.num_pos
            if not math.isfinite(sums["loss"]):
                raise FloatingPointError(f"non-finite loss at epoch {epoch + 1}, iteration {iteration}: {sums}")
            grad_norm = float(torch.nn.utils.clip_grad_norm_(clip_params, float(cfg.train.clip_grad_norm)))
            optimizer.step()
            scheduler.step()
            ema.update(model)
            loss_norm.update(num_pos)
            iteration += 1
            row = {"epoch": epoch + 1, "iteration": iteration, "lr": f"{lr:.6g}", "loss": f"{sums['loss']:.6g}",
                   "cls": f"{sums['cls']:.6g}", "reg": f"{sums['reg']:.6g}", "acc": f"{sums['acc']:.6g}",
                   "spc": f"{sums['spc']:.6g}", "loss_norm": f"{loss_norm.value:.6g}", "num_pos": num_pos,
                   "grad_norm": f"{grad_norm:.6g}"}
            rows.append(row)
            if tb is not None:
                for k in ("loss", "cls", "reg", "acc", "spc"):
                    tb.add_scalar(f"train/{k}", sums[k], iteration)
                tb.add_scalar("train/lr", lr, iteration)
            if bar is not None:
                bar.set_postfix(loss=f"{sums['loss']:.3f}", lr=f"{lr:.2g}")
                bar.update(1)
            if iteration % max(1, int(cfg.train.log_interval)) == 0:
                logger.info("epoch %d it %d lr %.3g loss %.4f (cls %.4f reg %.4f acc %.4f spc %.4f) norm %.2f",
                            epoch + 1, iteration, lr, sums["loss"], sums["cls"], sums["reg"], sums["acc"],
                            sums["spc"], loss_norm.value)
        if bar is not None:
            bar.close()
        train_time += time.perf_counter() - t0
        with open(curve, "a", newline="") as fh:
            csv.DictWriter(fh, fieldnames=CURVE_FIELDS).writerows(rows)
        ckpt.save_checkpoint(checkpoint_dir / ckpt.LAST, {
            "model": model.state_dict(), "ema": ema.state_dict(), "objective": objective.state_dict(),
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "loss_norm": loss_norm.state_dict(), "rng": ckpt.capture_rng(), "epoch": epoch + 1,
            "iteration": iteration, "train_time_s": train_time, "config_yaml": to_yaml(cfg),
        })
        logger.info("epoch %d/%d done: %d iterations, %.1f s, last loss %.4f", epoch + 1, total_epochs,
                    iters_per_epoch, time.perf_counter() - t0, float(rows[-1]["loss"]) if rows else float("nan"))
    if tb is not None:
        tb.close()
    return TrainResult(parts, ema, total_epochs, iteration, train_time, resumed_from, data_quirks)
