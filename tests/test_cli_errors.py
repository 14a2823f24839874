"""Bad input reaches the user as one line on stderr, exit status != 0, in `train`, `evaluate`,
`data check` and `convert-checkpoint`: the traceback goes to DIR/train.log (train), and to the
screen only with `--debug` or HIERAMAMBA_DEBUG=1 (issue 12, class 8). Two cases run
`python -m hieramamba` as a user would; the rest call the same dispatcher in-process (faster)."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from hieramamba import cli
from hieramamba.errors import DEBUG_ENV, ConfigError, DataError, debug_enabled, report_error

REPO = Path(__file__).resolve().parents[1]


def _cli(*argv: str, debug_env: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != DEBUG_ENV}
    if debug_env is not None:
        env[DEBUG_ENV] = debug_env
    return subprocess.run([sys.executable, "-m", "hieramamba", *argv], capture_output=True, text=True, cwd=REPO,
                          env=env, timeout=300)


def _one_line(res: subprocess.CompletedProcess) -> str:
    assert res.returncode != 0, res.stdout + res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    return lines[0]


@pytest.fixture(scope="module")
def missing_data_run(tmp_path_factory):
    """`train` on a data_root without the data: a DataError raised after train.log is opened."""
    out = tmp_path_factory.mktemp("cli") / "run"
    missing = out.parent / "no_data_here"
    res = _cli("train", "dataset=synth_tacos", "scale=smoke", f"data_root={missing}", f"out={out}")
    return res, out, missing


def test_train_data_error_is_one_line_and_the_traceback_goes_to_train_log(missing_data_run):
    res, out, missing = missing_data_run
    line = _one_line(res)
    assert line.startswith("hieramamba: error: ") and str(missing) in line and "not found" in line
    log = (out / "train.log").read_text()
    assert "run failed" in log and "Traceback (most recent call last)" in log and "DataError" in log
    assert not (out / "metrics.json").exists()


@pytest.fixture
def run_cli(monkeypatch, capsys):
    """`hieramamba ARGV` in-process: (exit status, stderr lines)."""
    monkeypatch.delenv(DEBUG_ENV, raising=False)

    def run(*argv: str) -> tuple[int, list[str]]:
        status = cli.main(list(argv))
        return status, capsys.readouterr().err.strip().splitlines()

    return run


def _line(result: tuple[int, list[str]]) -> str:
    status, lines = result
    assert status != 0 and len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize("override, key", [("seed=abc", "seed"), ("model.backbone.gate=no", "model.backbone.gate"),
                                           ("train.nonsense=1", "train.nonsense")])
def test_train_config_error_is_one_line(run_cli, tmp_path, override, key):
    assert key in _line(run_cli("train", "scale=smoke", f"out={tmp_path / 'run'}", override))


def test_debug_flag_shows_the_traceback_then_the_line(tmp_path):
    res = _cli("--debug", "train", "scale=smoke", f"out={tmp_path / 'run'}", "seed=-1")
    assert res.returncode != 0
    assert "Traceback (most recent call last)" in res.stderr and "ConfigError" in res.stderr
    assert res.stderr.strip().splitlines()[-1].startswith("hieramamba: error: run config: seed = -1")


def test_debug_environment_variable_shows_the_traceback(run_cli, monkeypatch, tmp_path):
    monkeypatch.setenv(DEBUG_ENV, "1")
    status, lines = run_cli("train", "scale=smoke", f"out={tmp_path / 'run'}", "seed=-1")
    assert status != 0 and lines[0].startswith("Traceback") and lines[-1].startswith("hieramamba: error: run config")


def test_evaluate_and_convert_and_data_check_errors_are_one_line(run_cli, tmp_path):
    cfg = tmp_path / "run" / "config.yaml"
    cfg.parent.mkdir()
    cfg.write_text("seed: [1, 2]\n")
    assert "seed = [1, 2]" in _line(run_cli("evaluate", str(cfg.parent)))
    assert "not found" in _line(run_cli("evaluate", str(tmp_path / "nowhere")))
    empty = tmp_path / "authors_last.pth"
    empty.write_bytes(b"")
    line = _line(run_cli("convert-checkpoint", str(empty), str(tmp_path / "out.pth"), "dataset=tacos", "scale=smoke"))
    assert f"{empty}: is empty" in line
    line = _line(run_cli("data", "check", "synth_tacos", f"data_root={tmp_path / 'nothing'}"))
    assert line.startswith("hieramamba data check: error: ") and "not found" in line


def test_dispatcher_catches_bad_input_a_command_let_through(monkeypatch, capsys):
    def command(argv):
        raise DataError("ann.json", "start > end", record="q7")

    module = types.ModuleType("hieramamba_test_boom")
    module.command = command
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setitem(cli.COMMANDS, "boom", (module.__name__, "command", "raises"))
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    assert cli.main(["boom"]) == 2
    assert capsys.readouterr().err == "hieramamba: error: ann.json, record 'q7': start > end\n"
    assert cli.main(["boom", "--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.endswith("hieramamba: error: ann.json, record 'q7': start > end\n")
    assert DEBUG_ENV not in os.environ  # --debug in-process leaves the environment as it found it


def test_report_error_joins_a_many_line_message(monkeypatch, capsys):
    monkeypatch.setenv(DEBUG_ENV, "0")
    assert not debug_enabled()
    assert report_error(ConfigError("first\n  second\n"), "prog", status=3) == 3
    assert capsys.readouterr().err == "prog: error: first second\n"
