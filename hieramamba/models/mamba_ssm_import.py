"""Importing mamba_ssm's Triton kernels when its package ``__init__`` cannot run.

A mamba_ssm built with ``MAMBA_SKIP_CUDA_BUILD=TRUE`` (the wheel `make gpu-wheels` prepares for a
bare GPU machine) holds the Triton kernels but not the compiled ``selective_scan_cuda``; its
``__init__`` imports that extension (and, through its language model, transformers), so a plain
``from mamba_ssm.ops.triton.ssd_combined import ...`` fails although the Triton SSD scan and gated
norm would run. ``import_mamba_ssm_module`` imports normally and, only when that fails, registers
a bare ``mamba_ssm`` package module (its source folder as ``__path__``, ``__init__`` not run) and
imports the submodule from it. The parity checks use the same bare package (``bare_mamba_ssm``).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path


def bare_mamba_ssm(package_dir: str | Path) -> types.ModuleType:
    """A ``mamba_ssm`` package module whose submodules import from ``package_dir`` while its
    ``__init__.py`` never runs; registered in ``sys.modules`` (an existing one is returned)."""
    loaded = sys.modules.get("mamba_ssm")
    if loaded is not None:
        return loaded
    package = types.ModuleType("mamba_ssm")
    package.__path__ = [str(package_dir)]
    sys.modules["mamba_ssm"] = package
    return package


def import_mamba_ssm_module(name: str) -> types.ModuleType:
    """``importlib.import_module(name)`` for a ``mamba_ssm.*`` module, falling back to the bare
    package when the installed package's ``__init__`` fails (ImportError if neither works)."""
    try:
        return importlib.import_module(name)
    except Exception as err:  # noqa: BLE001 - the missing compiled extension raises ImportError or OSError
        first = err
    if "mamba_ssm" in sys.modules:  # a bare or a working package is there already: nothing else to try
        raise ImportError(f"{name}: {first!r}") from first
    spec = importlib.util.find_spec("mamba_ssm")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"{name}: mamba_ssm is not installed") from first
    bare_mamba_ssm(next(iter(spec.submodule_search_locations)))
    return importlib.import_module(name)
