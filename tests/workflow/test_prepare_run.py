"""prepare_run.py: resume for the same inputs, start over when they changed."""

import subprocess
import sys

from wfhelpers import SCRIPTS

sys.path.insert(0, str(SCRIPTS))
from prepare_run import FINGERPRINT, prepare  # noqa: E402


def test_new_resume_restart(tmp_path):
    run, ckpt, ablation = tmp_path / "run", tmp_path / "ckpt", tmp_path / "a.yaml"
    ablation.write_text("overrides: {model.backbone.gate: false}\n")
    args = ["dataset=synth_tacos", "scale=smoke", "seed=0"]
    assert prepare(run, ckpt, [ablation], args) == "new"
    assert (run / FINGERPRINT).is_file()
    # a killed attempt left a config and a checkpoint: same inputs -> both kept
    (run / "config.yaml").write_text("x: 1\n")
    ckpt.mkdir()
    (ckpt / "last.pth").write_text("weights")
    assert prepare(run, ckpt, [ablation], args) == "resume"
    assert (run / "config.yaml").is_file() and (ckpt / "last.pth").is_file()
    # the ablation file was edited -> start over
    ablation.write_text("overrides: {model.backbone.gate: true}\n")
    assert prepare(run, ckpt, [ablation], args) == "restart"
    assert not (run / "config.yaml").exists() and not ckpt.exists()
    assert prepare(run, ckpt, [ablation], args) == "resume"
    # other train arguments (another scale) -> start over too
    (run / "config.yaml").write_text("x: 1\n")
    assert prepare(run, ckpt, [ablation], ["dataset=synth_tacos", "scale=default", "seed=0"]) == "restart"


def test_files_without_fingerprint_are_not_trusted(tmp_path):
    run, ckpt = tmp_path / "run", tmp_path / "ckpt"
    run.mkdir()
    (run / "config.yaml").write_text("from an older workflow\n")
    assert prepare(run, ckpt, [], ["seed=0"]) == "restart"


def test_command_line(tmp_path):
    result = subprocess.run([sys.executable, str(SCRIPTS / "prepare_run.py"), str(tmp_path / "run"),
                             str(tmp_path / "ckpt"), "--files", "--", "seed=0"], capture_output=True, text=True)
    assert result.returncode == 0 and "new run" in result.stdout
