"""hieramamba.models.mamba_ssm_import: the Triton submodules of a source-only mamba_ssm (whose
package __init__ fails on the missing compiled extension) still import, via a bare package.

Each case runs in a fresh interpreter against a fake mamba_ssm on sys.path, so that the real
sys.modules (and any installed mamba_ssm) are untouched."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _fake_mamba_ssm(root: Path, init_fails: bool) -> Path:
    pkg = root / "mamba_ssm"
    (pkg / "ops" / "triton").mkdir(parents=True)
    (pkg / "__init__.py").write_text("import selective_scan_cuda\n" if init_fails else "__version__ = 'x'\n")
    (pkg / "ops" / "__init__.py").write_text("")
    (pkg / "ops" / "triton" / "__init__.py").write_text("")
    (pkg / "ops" / "triton" / "ssd_combined.py").write_text("def mamba_chunk_scan_combined():\n    return 'fake'\n")
    return root


def _run(code: str, path: Path | None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(p) for p in (path, REPO) if p] + [env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env)


CODE = """
    import sys
    from hieramamba.models.mamba_ssm_import import import_mamba_ssm_module
    mod = import_mamba_ssm_module("mamba_ssm.ops.triton.ssd_combined")
    print(mod.mamba_chunk_scan_combined(), hasattr(sys.modules["mamba_ssm"], "__file__"))
"""


def test_source_only_install_imports_through_a_bare_package(tmp_path):
    result = _run(CODE, _fake_mamba_ssm(tmp_path, init_fails=True))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["fake", "False"]  # the kernel module, from a package whose __init__ never ran


def test_working_install_imports_normally(tmp_path):
    result = _run(CODE, _fake_mamba_ssm(tmp_path, init_fails=False))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["fake", "True"]  # the real package module, __init__ run


def test_ssd_backend_finds_the_source_only_kernel(tmp_path):
    code = """
        from hieramamba.models.ssd import _mamba_chunk_scan_combined
        print(_mamba_chunk_scan_combined()())
    """
    result = _run(code, _fake_mamba_ssm(tmp_path, init_fails=True))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "fake"


def test_absent_mamba_ssm_is_an_import_error(tmp_path):
    code = """
        import importlib.util, sys
        if importlib.util.find_spec("mamba_ssm") is not None:
            print("installed"); sys.exit(0)
        from hieramamba.models.mamba_ssm_import import import_mamba_ssm_module
        try:
            import_mamba_ssm_module("mamba_ssm.ops.triton.ssd_combined")
        except ImportError as err:
            print("ImportError", "not installed" in str(err))
    """
    result = _run(code, None)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() in (["ImportError", "True"], ["installed"])
