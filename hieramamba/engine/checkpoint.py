"""Checkpoints: written atomically every epoch, read back with `weights_only=True`.

A checkpoint holds everything a resume needs to continue bitwise-identically on CPU: model, EMA,
optimiser, scheduler, contrastive projectors, the loss normaliser, the RNG states of torch, numpy
and python, the position (epoch, iteration), the accumulated training time and the config it was
trained with (as YAML text, so that `evaluate --checkpoint` can rebuild the model).
Only plain containers, numbers, strings and tensors are stored (the `weights_only` allow-list).
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hieramamba.atomic import atomic_open

LAST = "last.pth"


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


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    return torch.load(Path(path), map_location=map_location, weights_only=True)


def inference_weights(state: dict[str, Any]) -> dict[str, Any]:
    """The weights evaluation uses: the EMA model's when the checkpoint holds them."""
    return state["ema"] if "ema" in state else state["model"]


def last_checkpoint(checkpoint_dir: str | os.PathLike) -> Path | None:
    path = Path(checkpoint_dir) / LAST
    return path if path.is_file() else None
