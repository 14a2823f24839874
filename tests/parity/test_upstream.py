"""Locating and loading mamba_ssm for the parity checks, and (where triton >= 3.8 and mamba_ssm's
sources are there) the real check: ``hieramamba parity --quick`` against the upstream kernels."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hieramamba.parity import cli, upstream
from hieramamba.parity.upstream import UpstreamUnavailable


def _fake_source(tmp_path: Path, version: str = "9.9.9") -> Path:
    pkg = tmp_path / "mamba_ssm-src" / "mamba_ssm"
    (pkg / "ops" / "triton").mkdir(parents=True)
    (pkg / "__init__.py").write_text(f'__version__ = "{version}"\n')
    (pkg / "ops" / "triton" / "ssd_combined.py").write_text("")
    return pkg


def test_locate_accepts_the_package_or_its_parent(tmp_path):
    pkg = _fake_source(tmp_path)
    assert upstream.locate_mamba_ssm(pkg) == pkg.resolve()
    assert upstream.locate_mamba_ssm(pkg.parent) == pkg.resolve()
    assert upstream.mamba_ssm_version(pkg) == "9.9.9"


def test_locate_names_the_folder_without_sources(tmp_path):
    with pytest.raises(UpstreamUnavailable, match=str(tmp_path)):
        upstream.locate_mamba_ssm(tmp_path)


def test_old_triton_is_refused_with_the_reason(tmp_path, monkeypatch):
    pkg = _fake_source(tmp_path)
    monkeypatch.setattr(upstream, "triton_version", lambda: (3, 6, 0))
    with pytest.raises(UpstreamUnavailable, match=r"triton >= 3\.8.*3\.6\.0"):
        upstream.load_upstream(pkg, "interpreter")
    monkeypatch.setattr(upstream, "triton_version", lambda: None)
    with pytest.raises(UpstreamUnavailable, match="not installed"):
        upstream.load_upstream(pkg, "interpreter")


def test_cli_exits_2_when_the_kernels_cannot_run(tmp_path, capsys):
    assert cli.main(["--mamba-ssm-src", str(tmp_path / "nowhere")]) == 2
    assert "no mamba_ssm sources" in capsys.readouterr().err


def _real_source() -> str | None:
    src = os.environ.get("HIERAMAMBA_MAMBA_SSM_SRC")
    if src:
        return src
    try:
        upstream.locate_mamba_ssm(None)
    except UpstreamUnavailable:
        return None
    return ""  # the installed package


def test_against_the_real_mamba_ssm_kernels(tmp_path):
    src = _real_source()
    if src is None:
        pytest.skip("mamba_ssm's sources not found: install mamba-ssm or set HIERAMAMBA_MAMBA_SSM_SRC "
                    "to an unpacked mamba-ssm sdist")
    found = upstream.triton_version()
    cuda = "torch" in sys.modules and sys.modules["torch"].cuda.is_available()
    if not cuda and (found is None or found < upstream.MIN_TRITON_FOR_INTERPRETER):
        pytest.skip(f"no CUDA GPU, and Triton's interpreter needs triton >= 3.8 (found {found})")
    report = tmp_path / "parity.json"
    cmd = [sys.executable, "-m", "hieramamba", "parity", "--quick", "--json", str(report)]
    if src:
        cmd += ["--mamba-ssm-src", src]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(report.read_text())
    assert data["passed"] and len(data["checks"]) >= 5
    assert {c["name"] for c in data["checks"]} >= {"ssd_scan", "gated_rmsnorm", "selective_scan_vs_ref", "mamba2_block"}


@pytest.fixture
def modules_restored():
    """sys.modules as it was before the test (loading registers a bare mamba_ssm and placeholders)."""
    before = dict(sys.modules)
    for name in [n for n in sys.modules if n == "mamba_ssm" or n.startswith("mamba_ssm.")]:
        del sys.modules[name]
    yield
    for name in set(sys.modules) - set(before):
        del sys.modules[name]
    sys.modules.update(before)


def test_a_missing_dependency_of_the_sources_is_named(tmp_path, monkeypatch, modules_restored):
    """`pip install --no-deps mamba-ssm` (as `make parity` installs it) leaves out einops: one
    clear error naming the module and the pip command, not a traceback."""
    pkg = _fake_source(tmp_path)
    (pkg / "ops" / "selective_scan_interface.py").write_text("import hieramamba_test_absent_dependency\n")
    monkeypatch.setattr(upstream, "triton_version", lambda: (3, 9, 0))
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    with pytest.raises(UpstreamUnavailable, match=r"'hieramamba_test_absent_dependency' is not installed "
                       r"\(pip install hieramamba_test_absent_dependency\)") as raised:
        upstream.load_upstream(pkg, "interpreter")
    assert str(pkg) in str(raised.value)
