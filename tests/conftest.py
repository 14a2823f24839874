"""Shared test fixtures and settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_TACOS = Path(os.environ.get("HIERAMAMBA_SHARED_TACOS", REPO_ROOT.parent / "shared" / "data" / "tacos"))


@pytest.fixture(scope="session")
def shared_tacos_dir() -> Path:
    """The real TACoS annotation files (2D-TAN release); skip when they are not beside the repo."""
    if not (SHARED_TACOS / "train.json").is_file():
        pytest.skip(f"real TACoS annotations not found at {SHARED_TACOS}")
    return SHARED_TACOS
