"""Lazy feature handles and array loading (.npy, .pt, h5) with errors that name the file.

Nothing is read until `load()`. h5 files are opened per read and closed again (safe with forked
data-loader workers); a dataset is read straight into one float32 array (no second copy).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hieramamba.errors import DataError

ARRAY_SUFFIXES = (".npy", ".pt")


def to_float32_2d(arr: Any, path: object, record: object | None = None) -> np.ndarray:
    """A (T, C) float32 numpy array from a numpy array or torch tensor, or a DataError."""
    if hasattr(arr, "detach"):  # torch tensor
        arr = arr.detach().cpu()
        if str(arr.dtype) in ("torch.bfloat16",):
            arr = arr.float()
        arr = arr.numpy()
    if not isinstance(arr, np.ndarray):
        raise DataError(path, f"expected an array or tensor, found {type(arr).__name__}", record=record)
    if arr.ndim != 2:
        raise DataError(path, f"expected a 2-D array (T, C), found shape {tuple(arr.shape)}", record=record)
    if not np.issubdtype(arr.dtype, np.floating) and not np.issubdtype(arr.dtype, np.integer):
        raise DataError(path, f"expected a numeric array, found dtype {arr.dtype}", record=record)
    return np.asarray(arr, dtype=np.float32)


def load_array_file(path: str | Path, record: object | None = None, allow_pickle: bool = False) -> Any:
    """Raw content of a .npy or .pt file (array, tensor or dict), or a DataError naming the file.

    `allow_pickle` only for the user-named EgoVLP-style text dict (a pickled numpy object).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "feature file not found", record=record)
    try:
        if path.suffix == ".pt":
            import torch  # lazy: readers of .npy/h5 data never need torch

            return torch.load(path, map_location="cpu", weights_only=True)
        obj = np.load(path, allow_pickle=False)
        return obj
    except ValueError as exc:
        if path.suffix == ".npy" and allow_pickle and "allow_pickle" in str(exc):
            # EgoVLP-style text dicts are pickled numpy objects; the user pointed us at this file.
            try:
                return np.load(path, allow_pickle=True).item()
            except Exception as exc2:  # noqa: BLE001 - any failure is an unreadable file
                raise DataError(path, f"unreadable feature file: {exc2}", record=record) from None
        raise DataError(path, f"unreadable feature file: {exc}", record=record) from None
    except Exception as exc:  # noqa: BLE001 - any failure to read is reported as such
        raise DataError(path, f"unreadable feature file: {exc}", record=record) from None


def find_array_file(directory: str | Path, stem: str) -> Path | None:
    """`<directory>/<stem>.npy` or `.pt` (first that exists), else None."""
    for suffix in ARRAY_SUFFIXES:
        p = Path(directory) / f"{stem}{suffix}"
        if p.is_file():
            return p
    return None


@dataclass
class FileFeature:
    """One array per file (`<vid>.npy` / `<vid>.pt`)."""

    path: str
    record: str | None = None

    def exists(self) -> bool:
        return Path(self.path).is_file()

    def shape(self) -> tuple[int, ...]:
        p = Path(self.path)
        if p.suffix == ".npy" and p.is_file():
            try:
                return tuple(np.load(p, mmap_mode="r").shape)
            except Exception:  # noqa: BLE001 - fall back to a full read which reports properly
                pass
        return tuple(self.load().shape)

    def load(self) -> np.ndarray:
        return to_float32_2d(load_array_file(self.path, self.record), self.path, self.record)


@dataclass
class H5Feature:
    """One dataset of an h5 file (MAD frames: one per movie; TACoS C3D: one per video)."""

    path: str
    key: str
    record: str | None = None

    def _open(self):
        import h5py

        if not Path(self.path).is_file():
            raise DataError(self.path, "feature file not found", record=self.record)
        try:
            return h5py.File(self.path, "r")
        except OSError as exc:
            raise DataError(self.path, f"unreadable h5 file: {exc}", record=self.record) from None

    def exists(self) -> bool:
        if not Path(self.path).is_file():
            return False
        with self._open() as f:
            return self.key in f

    def shape(self) -> tuple[int, ...]:
        with self._open() as f:
            if self.key not in f:
                raise DataError(self.path, f"no dataset {self.key!r} in the h5 file", record=self.record)
            return tuple(f[self.key].shape)

    def load(self) -> np.ndarray:
        with self._open() as f:
            if self.key not in f:
                raise DataError(self.path, f"no dataset {self.key!r} in the h5 file", record=self.record)
            ds = f[self.key]
            if ds.ndim != 2:
                raise DataError(self.path, f"dataset {self.key!r} has shape {ds.shape}, expected (T, C)", record=self.record)
            if ds.dtype == np.float32:
                out = np.empty(ds.shape, dtype=np.float32)
                ds.read_direct(out)  # one copy: disk -> the returned array
                return out
            return np.asarray(ds[()], dtype=np.float32)


@dataclass
class SlicedFeature:
    """Rows [start, end] (inclusive) of another handle: official Ego4D per-video features cut per clip."""

    base: Any  # FeatureHandle
    start: int
    end: int  # inclusive, as the official NLQ preparation
    record: str | None = None

    @property
    def path(self) -> str:
        return self.base.path

    def exists(self) -> bool:
        return self.base.exists()

    def shape(self) -> tuple[int, ...]:
        n, c = self.base.shape()
        return (max(0, min(self.end + 1, n) - self.start), c)

    def load(self) -> np.ndarray:
        full = self.base.load()
        if self.start >= len(full):
            raise DataError(
                self.path,
                f"clip rows {self.start}..{self.end} start past the video's {len(full)} feature rows",
                record=self.record,
            )
        return np.ascontiguousarray(full[self.start : self.end + 1])


@dataclass
class ConcatFeature:
    """Channel concatenation of several handles (SnAG's list of feature dirs).

    Lengths may differ by at most 1; shorter ones are padded by repeating their last row (SnAG).
    """

    parts: list
    record: str | None = None

    @property
    def path(self) -> str:
        return " + ".join(p.path for p in self.parts)

    def exists(self) -> bool:
        return all(p.exists() for p in self.parts)

    def shape(self) -> tuple[int, ...]:
        shapes = [p.shape() for p in self.parts]
        return (max(s[0] for s in shapes), sum(s[1] for s in shapes))

    def load(self) -> np.ndarray:
        arrs = [p.load() for p in self.parts]
        lens = [len(a) for a in arrs]
        if max(lens) - min(lens) > 1:
            raise DataError(self.path, f"misaligned feature lengths {lens} (at most 1 apart allowed)", record=self.record)
        n = max(lens)
        arrs = [a if len(a) == n else np.concatenate([a, np.repeat(a[-1:], n - len(a), axis=0)]) for a in arrs]
        return np.concatenate(arrs, axis=1)
