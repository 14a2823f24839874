"""Checkpoints: written atomically every epoch, read back with `weights_only=True`.

A checkpoint holds everything a resume needs to continue bitwise-identically on CPU: model, EMA,
optimiser, scheduler, contrastive projectors, the loss normaliser, the RNG states of torch, numpy
and python, the position (epoch, iteration), the accumulated training time and the config it was
trained with (as YAML text, so that `evaluate --checkpoint` can rebuild the model).
Only plain containers, numbers, strings and tensors are stored (the `weights_only` allow-list).

Every way a file can be unusable (missing, empty, truncated by a kill or a full disk, not a torch
file, holding objects `weights_only` refuses, lacking the keys its reader needs, weights that do not
fit the model) is one `CheckpointError` naming the file, the reason and what the user can do.
"""

from __future__ import annotations

import os
import pickle
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hieramamba.atomic import atomic_open
from hieramamba.errors import CheckpointError

LAST = "last.pth"
# What a resume reads back (the dict trainer.train saves every epoch).
RESUME_KEYS = ("model", "ema", "objective", "optimizer", "scheduler", "loss_norm", "rng", "epoch", "iteration",
               "train_time_s", "config_yaml")


# ---------------------------------------------------------------- RNG states as plain tensors


def capture_rng() -> dict[str, Any]:
    np_state = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {"version": int(py_version), "state": torch.tensor(py_state, dtype=torch.int64),
                   "gauss": py_gauss},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(x) for x in p["state"].tolist()), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---------------------------------------------------------------- files


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """torch.save through hieramamba.atomic (never half-written)."""
    with atomic_open(path, "wb") as fh:
        torch.save(obj, fh)


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    atomic_torch_save(state, path)


def brief_exception(exc: BaseException, limit: int = 300) -> str:
    """An exception as one short line (torch's messages span many)."""
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    text = text if len(text) <= limit else text[:limit] + " ..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _unpickler_reason(exc: BaseException) -> str:
    """The part of torch's many-line weights_only message that says what went wrong."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for i, line in enumerate(lines):
        if "WeightsUnpickler error:" in line:
            tail = line.split("WeightsUnpickler error:", 1)[1].strip()
            return f"UnpicklingError: {tail or (lines[i + 1] if i + 1 < len(lines) else '')}"
    return brief_exception(exc)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu", *,
                    required: tuple[str, ...] = (), remedy: str = "Point at another checkpoint file.") -> dict[str, Any]:
    """`torch.load(path, weights_only=True)` as a mapping holding every `required` key, or one
    CheckpointError saying which file, why, and (`remedy`) what the user can do about it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "no such file", remedy)
    if path.stat().st_size == 0:
        raise CheckpointError(path, "is empty (0 bytes: a write that never finished?)", remedy)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:  # weights_only's refusal, or a pickle stream torch did not write
        refused = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if refused:
            raise CheckpointError(path, f"holds a {refused.group(1)} object, which torch.load(weights_only=True) "
                                  "refuses to unpickle (it is never loaded unsafely)", remedy) from None
        raise CheckpointError(path, "cannot be read as a torch checkpoint (not a .pth file torch wrote?) "
                              f"[{_unpickler_reason(exc)}]", remedy) from None
    except Exception as exc:  # noqa: BLE001 - zip/EOF/format errors of a truncated or foreign file
        raise CheckpointError(path, f"cannot be read as a torch checkpoint (truncated or not a .pth file?) "
                              f"[{brief_exception(exc)}]", remedy) from None
    if not isinstance(state, dict):
        raise CheckpointError(path, f"holds a {type(state).__name__}, not a checkpoint mapping", remedy)
    missing = [key for key in required if key not in state]
    if missing:
        raise CheckpointError(path, f"lacks the key(s) {missing} (has {sorted(map(str, state))[:12]}): not a checkpoint "
                              "this command can use", remedy)
    return state


def load_weights(module: Any, weights: Any, path: str | os.PathLike, what: str, remedy: str) -> None:
    """`module.load_state_dict(weights)` (a module, optimiser, scheduler, EMA: strict where they are);
    a mismatch is a CheckpointError naming the file."""
    try:
        module.load_state_dict(weights)
    except (RuntimeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(path, f"its {what} do not fit the model this config builds [{brief_exception(exc)}]",
                              remedy) from None


def inference_weights(state: dict[str, Any], path: str | os.PathLike,
                      remedy: str = "Point at another checkpoint file.") -> tuple[str, dict[str, Any]]:
    """(name, weights) evaluation uses: the EMA model's when the checkpoint holds them, else the
    model's; neither is a CheckpointError naming `path`."""
    name = "ema" if "ema" in state else "model"
    if name not in state:
        raise CheckpointError(path, f"holds neither 'ema' nor 'model' weights (keys: {sorted(map(str, state))[:12]}); "
                              "an authors' checkpoint needs convert-checkpoint first", remedy)
    return name, state[name]


def last_checkpoint(checkpoint_dir: str | os.PathLike) -> Path | None:
    path = Path(checkpoint_dir) / LAST
    return path if path.is_file() else None
