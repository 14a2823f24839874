"""mamba_ssm's kernels as the reference of the parity checks: imported on CUDA, interpreted on CPU.

On a CUDA machine with mamba_ssm installed, its kernels are imported as they are and run on the
GPU. Everywhere else, Triton's interpreter (``TRITON_INTERPRET=1``) executes the *same Triton
kernel source* on CPU tensors (with numpy), so our pure-PyTorch SSD scan and gated RMSNorm can be
checked against the upstream kernels on a machine without a GPU. The CUDA C++ extension
(``selective_scan_cuda``, Mamba-1's kernel) cannot be interpreted; on CPU the Mamba-1 scan is
compared with mamba_ssm's own pure-PyTorch ``selective_scan_ref`` instead.

What the interpreter needs:

- triton >= 3.8. The interpreter of 3.6 fails on mamba_ssm's kernels with numpy 2
  (``range(0, chunk_size_limit, ...)`` over a program id: "only 0-dimensional arrays can be
  converted to Python scalars").
- mamba_ssm's Python sources: an installed mamba_ssm, or an unpacked sdist given with
  ``--mamba-ssm-src`` (``pip download --no-deps --no-binary :all: mamba-ssm`` builds metadata and
  fails without CUDA; unpacking the sdist tarball from PyPI works). Its compiled extension is not
  needed: the package ``__init__`` (which imports ``selective_scan_cuda``) is bypassed by
  registering a bare package module with the source folder as its path, and only the submodules
  used here are imported.
- Five shims, applied only in interpreter mode (3 and 4 only while ``interpreter_shims`` is
  active), except shim 1, which CUDA mode also applies to a source-only mamba_ssm (built with
  ``MAMBA_SKIP_CUDA_BUILD=TRUE``, as `make gpu-wheels` does; its Triton kernels then load through
  the same bare package, ``hieramamba.models.mamba_ssm_import``, and ``selective_scan_fn`` is None):
  1. ``selective_scan_cuda``: a placeholder module, so that ``selective_scan_interface`` (which
     holds ``selective_scan_ref``) imports; its CUDA function is never called.
  2. autotuned kernels keep their first config: benchmarking configs needs a GPU driver, and the
     config changes only the tiling, not the result.
  3. ``torch.cuda.device(None)`` (the kernels' ``with torch.cuda.device(x.device.index)`` on a
     CPU tensor) becomes a null context.
  4. ``torch.cuda.get_device_properties(...).multi_processor_count`` (read by the backward
     kernels to size their work split) answers a fixed count.
  5. ``huggingface_hub``, when it is not installed: a placeholder whose ``PyTorchModelHubMixin``
     is an empty class, so that ``mamba_ssm.modules.mamba2`` (which mixes it into ``Mamba2`` for
     hub uploads, never used here) imports.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import re
import sys
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from hieramamba.models.mamba_ssm_import import bare_mamba_ssm, import_mamba_ssm_module

MIN_TRITON_FOR_INTERPRETER = (3, 8)
# What shim 4 reports: only the backward kernels' work split depends on it.
_INTERPRETER_SM_COUNT = 8


class UpstreamUnavailable(RuntimeError):
    """mamba_ssm's kernels cannot be run here; the message says what is missing."""


@dataclass
class Upstream:
    """The upstream functions the checks compare against."""

    version: str  # mamba_ssm's __version__, read from its source
    source: Path  # the mamba_ssm package folder
    mode: str  # "cuda" (compiled and Triton kernels on the GPU) | "interpreter" (Triton on CPU)
    chunk_scan: Callable  # mamba_ssm.ops.triton.ssd_combined.mamba_chunk_scan_combined
    rmsnorm: Callable  # mamba_ssm.ops.triton.layernorm_gated.rmsnorm_fn
    selective_scan_ref: Callable  # mamba_ssm.ops.selective_scan_interface.selective_scan_ref
    selective_scan_fn: Callable | None  # the CUDA kernel; None in interpreter mode
    mamba2: type | None = None  # mamba_ssm.modules.mamba2.Mamba2, None when it does not import


def locate_mamba_ssm(src: str | os.PathLike | None = None) -> Path:
    """The ``mamba_ssm`` package folder: from ``src`` (the folder itself or one that contains it,
    e.g. an unpacked sdist), else from the installed distribution (found without importing it)."""
    if src is not None:
        root = Path(src).expanduser()
        for candidate in (root, root / "mamba_ssm"):
            if (candidate / "ops" / "triton" / "ssd_combined.py").is_file():
                return candidate.resolve()
        raise UpstreamUnavailable(
            f"{root}: no mamba_ssm sources there (expected {root}/mamba_ssm/ops/triton/ssd_combined.py "
            "or an unpacked mamba-ssm sdist)"
        )
    spec = importlib.util.find_spec("mamba_ssm")
    if spec is None or not spec.submodule_search_locations:
        raise UpstreamUnavailable(
            "mamba_ssm is not installed; pass --mamba-ssm-src with an unpacked mamba-ssm sdist "
            "(https://pypi.org/project/mamba-ssm/#files)"
        )
    return Path(next(iter(spec.submodule_search_locations))).resolve()


def mamba_ssm_version(package_dir: Path) -> str:
    text = (package_dir / "__init__.py").read_text(encoding="utf-8")
    match = re.search(r"""__version__\s*=\s*["']([^"']+)["']""", text)
    return match.group(1) if match else "unknown"


def triton_version() -> tuple[int, ...] | None:
    """The installed triton's version as a tuple, or None when triton is not installed."""
    spec = importlib.util.find_spec("triton")
    if spec is None:
        return None
    from importlib.metadata import PackageNotFoundError, version

    try:
        text = version("triton")
    except PackageNotFoundError:
        return None
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def _cuda_ready() -> bool:
    import torch

    return torch.cuda.is_available()


def load_upstream(src: str | os.PathLike | None = None, mode: str = "auto") -> Upstream:
    """Import mamba_ssm's kernels for ``mode`` "cuda", "interpreter" or "auto" (cuda when a GPU
    and an importable mamba_ssm are there, the interpreter otherwise)."""
    if mode not in ("auto", "cuda", "interpreter"):
        raise ValueError(f"mode must be auto, cuda or interpreter, got {mode!r}")
    package_dir = locate_mamba_ssm(src)
    if mode == "auto":
        mode = "cuda" if _cuda_ready() and src is None else "interpreter"
    if mode == "cuda":
        return _load_for_cuda(package_dir)
    return _load_for_interpreter(package_dir)


def _placeholder_selective_scan_cuda() -> bool:
    """Shim 1: a placeholder ``selective_scan_cuda`` when the compiled one is absent; True if placed."""
    if importlib.util.find_spec("selective_scan_cuda") is not None:
        return False
    sys.modules.setdefault("selective_scan_cuda", types.ModuleType("selective_scan_cuda"))
    return True


def _load_for_cuda(package_dir: Path) -> Upstream:
    """The Triton kernels on the GPU; mamba_ssm's CUDA selective scan too when it was compiled (a
    source-only install, MAMBA_SKIP_CUDA_BUILD=TRUE, has none: then only its reference is compared)."""
    if not _cuda_ready():
        raise UpstreamUnavailable("mode 'cuda' needs a CUDA GPU; none is visible to torch")
    try:
        chunk_scan = import_mamba_ssm_module("mamba_ssm.ops.triton.ssd_combined").mamba_chunk_scan_combined
        rmsnorm = import_mamba_ssm_module("mamba_ssm.ops.triton.layernorm_gated").rmsnorm_fn
        compiled = not _placeholder_selective_scan_cuda()
        interface = import_mamba_ssm_module("mamba_ssm.ops.selective_scan_interface")
    except Exception as err:
        raise UpstreamUnavailable(f"mamba_ssm did not import on this CUDA machine: {err!r}") from err
    return Upstream(
        mamba_ssm_version(package_dir), package_dir, "cuda", chunk_scan, rmsnorm,
        interface.selective_scan_ref, interface.selective_scan_fn if compiled else None, _mamba2_class(),
    )


def _load_for_interpreter(package_dir: Path) -> Upstream:
    found = triton_version()
    if found is None or found < MIN_TRITON_FOR_INTERPRETER:
        have = "not installed" if found is None else ".".join(map(str, found))
        need = ".".join(map(str, MIN_TRITON_FOR_INTERPRETER))
        raise UpstreamUnavailable(f"Triton's interpreter needs triton >= {need} (pip install 'triton>={need}'); triton is {have}")
    if "triton" in sys.modules and os.environ.get("TRITON_INTERPRET") != "1":
        raise UpstreamUnavailable(
            "triton was imported before TRITON_INTERPRET=1 was set; run the checks in a fresh process "
            "(`hieramamba parity`)"
        )
    os.environ["TRITON_INTERPRET"] = "1"  # read when the kernels are decorated, i.e. at import
    loaded = sys.modules.get("mamba_ssm")
    if loaded is not None and Path(next(iter(getattr(loaded, "__path__", [""])))).resolve() != package_dir:
        raise UpstreamUnavailable(f"another mamba_ssm ({loaded.__path__}) is already imported in this process")
    bare_mamba_ssm(package_dir)  # bypasses mamba_ssm/__init__.py and its CUDA imports
    _placeholder_selective_scan_cuda()
    if importlib.util.find_spec("huggingface_hub") is None:  # shim 5
        hub = types.ModuleType("huggingface_hub")
        hub.PyTorchModelHubMixin = type("PyTorchModelHubMixin", (), {})
        sys.modules.setdefault("huggingface_hub", hub)

    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_ref
        from mamba_ssm.ops.triton.layernorm_gated import rmsnorm_fn
        from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined
    except ImportError as err:  # e.g. einops: `pip install --no-deps mamba-ssm` leaves its dependencies out
        missing = getattr(err, "name", None) or ""
        if missing and missing.split(".")[0] != "mamba_ssm":
            hint = f"module {missing!r} is not installed (pip install {missing.split('.')[0]})"
        else:
            hint = repr(err)
        raise UpstreamUnavailable(f"mamba_ssm's kernels in {package_dir} did not import: {hint}") from err
    from triton.runtime import autotuner

    mamba2 = _mamba2_class()
    for name, module in list(sys.modules.items()):  # shim 2, over every kernel imported above
        if name.startswith("mamba_ssm.") and module is not None:
            for value in vars(module).values():
                if isinstance(value, autotuner.Autotuner):
                    value.configs = value.configs[:1]
    return Upstream(
        mamba_ssm_version(package_dir), package_dir, "interpreter",
        mamba_chunk_scan_combined, rmsnorm_fn, selective_scan_ref, None, mamba2,
    )


def _mamba2_class() -> type | None:
    """mamba_ssm's ``Mamba2`` block, or None when its module does not import here."""
    try:
        from mamba_ssm.modules.mamba2 import Mamba2
    except Exception:  # noqa: BLE001 - any import failure just leaves this check out
        return None
    return Mamba2


@contextlib.contextmanager
def interpreter_shims(upstream: Upstream) -> Iterator[None]:
    """Shims 3 and 4 of the module docstring while the interpreted kernels run; nothing on CUDA."""
    if upstream.mode != "interpreter":
        yield
        return
    import torch

    saved = torch.cuda.device, torch.cuda.get_device_properties
    torch.cuda.device = lambda index: contextlib.nullcontext()
    torch.cuda.get_device_properties = lambda device: types.SimpleNamespace(multi_processor_count=_INTERPRETER_SM_COUNT)
    try:
        yield
    finally:
        torch.cuda.device, torch.cuda.get_device_properties = saved
