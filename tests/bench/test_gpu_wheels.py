"""`make gpu-wheels`: the wheel set of the bare GPU machine, under 64 MiB, and (where a Python 3.12
can make a venv here) installed the way `hieramamba gpu-check` installs it, with pip --no-index.

Needs the network (PyPI): skipped without it. The venv has no torch for 3.12 here, so a stub
torch-2.11.0 metadata stands in for the GPU machine's torch (only pip's resolver reads it)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LIMIT = 64 * 2**20
EXPECTED = ("hydra_core", "omegaconf", "antlr4_python3_runtime", "PyYAML", "tqdm", "einops", "packaging", "jsonschema",
            "referencing", "rpds_py",
            "mamba_ssm", "hieramamba")
NEEDED_IMPORTS = "import hydra, omegaconf, antlr4, yaml, tqdm, einops, jsonschema; from importlib.metadata import version; " \
                 "print(version('hieramamba'), version('mamba-ssm'))"

pytestmark = [pytest.mark.slow]


def _online() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
    except OSError:
        return False
    return True


@pytest.fixture(scope="module")
def wheels(tmp_path_factory):
    if not _online():
        pytest.skip("needs the network (pypi.org) to download the GPU machine's wheels")
    folder = tmp_path_factory.mktemp("gpu") / "wheels"
    result = subprocess.run(["make", "-C", str(REPO), "gpu-wheels", f"GPU_WHEELS={folder}", f"PYTHON={sys.executable}"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return folder


def test_every_wheel_is_there_for_cpython_312_and_small(wheels):
    names = sorted(p.name for p in wheels.glob("*.whl"))
    for dist in EXPECTED:
        assert any(n.startswith(dist + "-") for n in names), (dist, names)
    for name in names:  # pure Python, or built for CPython 3.12 on manylinux x86_64
        tag = name[:-4].split("-")[-3:]
        assert tag[:2] == ["py3", "none"] or (tag[0] == "cp312" and "manylinux" in tag[2] and "x86_64" in tag[2]), name
    size = sum(p.stat().st_size for p in wheels.iterdir())
    assert size < LIMIT, f"{size / 2**20:.1f} MiB"


def _python312() -> str | None:
    """A python3.12 that runs (a pyenv shim may exist for a version not enabled: then ask pyenv)."""
    candidates = [shutil.which("python3.12")]
    pyenv = shutil.which("pyenv")
    if pyenv:
        root = subprocess.run([pyenv, "root"], capture_output=True, text=True).stdout.strip()
        candidates += sorted(str(p) for p in Path(root).glob("versions/3.12*/bin/python3.12"))
    for exe in filter(None, candidates):
        if subprocess.run([exe, "-c", "import venv"], capture_output=True).returncode == 0:
            return exe
    return None


def test_the_wheels_install_into_a_fresh_python_312(wheels, tmp_path):
    python312 = _python312()
    if python312 is None:
        pytest.skip("no working python3.12 here to make a venv")
    venv = tmp_path / "venv"
    subprocess.run([python312, "-m", "venv", str(venv)], check=True, timeout=300)
    py = str(venv / "bin" / "python")
    site = subprocess.run([py, "-c", "import site; print(site.getsitepackages()[0])"], capture_output=True,
                          text=True, check=True).stdout.strip()
    stub = Path(site) / "torch-2.11.0.dist-info"
    stub.mkdir()
    (stub / "METADATA").write_text("Metadata-Version: 2.1\nName: torch\nVersion: 2.11.0\n")
    (stub / "RECORD").write_text("")
    for pre in (["numpy", "h5py"],):  # the GPU machine's own packages, from this machine's index
        subprocess.run([py, "-m", "pip", "install", "--quiet", *pre], check=True, timeout=600)
    code = ("from pathlib import Path; from hieramamba.bench.gpu_check import install_step, missing_modules; "
            f"steps = install_step(Path({str(wheels)!r}), 300, Path({str(tmp_path)!r}), with_mamba_ssm=True); "
            "print([s['status'] for s in steps], missing_modules(True))")
    result = subprocess.run([py, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("['ok', 'ok'] []"), result.stdout
    check = subprocess.run([py, "-c", NEEDED_IMPORTS], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert check.returncode == 0, check.stderr
    assert check.stdout.split() == ["0.1.0", "2.3.2.post1"]
