"""hieramamba.atomic: files get the mode the umask gives (not mkstemp's 0600), stale temporary
files of a killed write are recognised and removed, nothing else is (issue 12, classes 5 and 10)."""

from __future__ import annotations

import os
import stat

import pytest
import torch

from hieramamba.atomic import atomic_open, atomic_write_json, atomic_write_text, current_umask, remove_stale_temp_files
from hieramamba.engine.checkpoint import save_checkpoint


@pytest.fixture
def umask():
    """Set the process umask for one test, restore it afterwards."""
    old = os.umask(0o022)
    os.umask(old)
    yield lambda mask: os.umask(mask)
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600), (0o027, 0o640)])
def test_atomic_writes_respect_the_umask(tmp_path, umask, mask, expected):
    umask(mask)
    assert current_umask() == mask
    atomic_write_text(tmp_path / "config.yaml", "a: 1\n")
    atomic_write_json(tmp_path / "metrics.json", {"R1@0.3": 1.0})
    with atomic_open(tmp_path / "predictions.bin", "wb") as fh:
        fh.write(b"\0")
    save_checkpoint(tmp_path / "last.pth", {"w": torch.zeros(2)})
    plain = tmp_path / "plain.txt"
    plain.write_text("x")  # what open() gives under this umask
    assert _mode(plain) == expected
    for name in ("config.yaml", "metrics.json", "predictions.bin", "last.pth"):
        assert _mode(tmp_path / name) == expected, name


def test_replacing_a_file_takes_the_umask_mode_too(tmp_path, umask):
    umask(0o022)
    target = tmp_path / "metrics.json"
    target.write_text("{}")
    os.chmod(target, 0o600)
    atomic_write_json(target, {"a": 1})
    assert _mode(target) == 0o644


def test_a_killed_write_leaves_a_temp_file_that_the_next_start_removes(tmp_path):
    target = tmp_path / "last.pth"
    with pytest.raises(KeyboardInterrupt):  # an interrupted write cleans up after itself ...
        with atomic_open(target, "wb") as fh:
            fh.write(b"half")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
    # ... but SIGKILL does not: what it leaves looks like this
    stale = [tmp_path / ".last.pth.k3j_9x2a.tmp", tmp_path / ".metrics.json.abcdefgh.tmp"]
    keep = [tmp_path / "last.pth", tmp_path / "notes.tmp", tmp_path / ".hidden.tmp", tmp_path / ".x.toolongname.tmp"]
    for p in stale + keep:
        p.write_bytes(b"x")
    assert sorted(remove_stale_temp_files(tmp_path)) == sorted(stale)
    assert sorted(tmp_path.iterdir()) == sorted(keep)
    assert remove_stale_temp_files(tmp_path / "missing") == []
