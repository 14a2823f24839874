"""Fixtures of the workflow tests (helpers live in wfhelpers.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from wfhelpers import write_fixture_runs, write_variant_files  # noqa: E402


@pytest.fixture(scope="module")
def fixture_runs(tmp_path_factory):
    """(root, {dataset: [metrics.json]}, [ablation files]) of the fixture runs."""
    root = tmp_path_factory.mktemp("fixture_runs")
    return root, write_fixture_runs(root), write_variant_files(root)
