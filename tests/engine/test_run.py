"""End to end on the synthetic smoke data: the run-directory contract, same seed -> same metrics,
a changed config in an existing run directory is an error, `evaluate` (prior baseline, other split,
converted checkpoint), trainable vs frozen projectors, query chunking. Resume: test_resume.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from hieramamba.engine.cli import evaluate_main, train_main
from hieramamba.engine.run import METRICS_KEYS, TIMING_FIELDS, TRAINED_KEYS

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data_root(synth_tacos_smoke) -> Path:
    return synth_tacos_smoke(0)


def args(data_root: Path, out: Path, *extra: str) -> list[str]:
    return ["dataset=synth_tacos", "scale=smoke", "seed=3", f"data_root={data_root}", f"out={out}", *extra]


def without_timing(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k not in TIMING_FIELDS}


@pytest.fixture(scope="module")
def reference_run(data_root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "ref"
    assert train_main(args(data_root, out)) == 0
    return out


def test_run_directory_contract(reference_run):
    d = reference_run
    for name in ("config.yaml", "train.log", "train_curve.csv", "trained.json", "predictions.json", "hits.csv.gz",
                 "metrics.json", "checkpoints/last.pth"):
        assert (d / name).is_file(), name
    assert not [p for p in d.rglob("*tmp*")], "temporary files left behind"
    metrics = json.loads((d / "metrics.json").read_text())
    assert tuple(metrics) == METRICS_KEYS
    assert metrics["dataset"] == "synth_tacos" and metrics["variant"] == "full" and metrics["seed"] == 3
    assert metrics["split"] == "test" and metrics["protocol"] == "snag"
    assert set(metrics["metrics"]) == {"R1@0.3", "R1@0.5", "R5@0.3", "R5@0.5"}
    assert all(0.0 <= v <= 100.0 for v in metrics["metrics"].values())
    assert metrics["n_queries"] > 0 and set(metrics["by_query_kind"]) >= {"plain", "long_range"}
    assert sum(b["n_queries"] for b in metrics["by_length_bin"].values()) == metrics["n_queries"]
    assert set(metrics["versions"]) == {"python", "torch", "cuda", "mamba_ssm", "hieramamba"}
    assert metrics["device"].startswith("cpu") and len(metrics["config_sha"]) == 64
    trained = json.loads((d / "trained.json").read_text())
    assert tuple(trained) == TRAINED_KEYS
    assert trained["config_sha"] == metrics["config_sha"] and trained["train_time_s"] == metrics["train_time_s"]
    assert 0 < trained["peak_mem_mb"] <= metrics["peak_mem_mb"]
    cfg = yaml.safe_load((d / "config.yaml").read_text())
    assert cfg["out"] == str(d) and cfg["scale"]["name"] == "smoke" and cfg["seed"] == 3
    preds = json.loads((d / "predictions.json").read_text())
    assert len(preds["results"]) == metrics["n_queries"]
    first = preds["results"][0]
    assert len(first["predicted_times"]) == len(first["predicted_scores"]) <= 5
    assert first["predicted_scores"] == sorted(first["predicted_scores"], reverse=True)
    state = torch.load(d / "checkpoints" / "last.pth", weights_only=True)
    assert {"model", "ema", "optimizer", "scheduler", "loss_norm", "rng", "epoch", "iteration", "config_yaml"} <= set(state)
    rows = (d / "train_curve.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,iteration,lr") and len(rows) == 1 + state["iteration"]
    # linear warm-up per iteration over the first epoch (3 iterations at smoke scale), then constant
    lrs = [float(r.split(",")[2]) for r in rows[1:]]
    assert lrs[:4] == [0.0, 0.0005, 0.001, 0.001] and set(lrs[3:]) == {0.001}


def test_hits_file_reproduces_every_recall_of_metrics_json(reference_run):
    """hits.csv.gz: one row per scored query; its column means are the overall, per-kind and
    per-length-bin recalls of metrics.json."""
    import numpy as np

    from hieramamba.evaluation.hits_file import read_hits

    metrics = json.loads((reference_run / "metrics.json").read_text())
    ids, hits = read_hits(reference_run / "hits.csv.gz")
    assert len(ids) == metrics["n_queries"] and set(hits) == set(metrics["metrics"])
    # each query's video, as predictions.json (the dataset reader's video ids) names it
    preds = json.loads((reference_run / "predictions.json").read_text())
    video_of = {r["query_id"]: r["video_id"] for r in preds["results"]}
    assert [r["video"] for r in ids] == [video_of[r["query_id"]] for r in ids]
    assert len({r["video"] for r in ids}) > 1
    for m, column in hits.items():
        assert 100.0 * column.mean() == pytest.approx(metrics["metrics"][m], abs=1e-9)
    for field, column_name in (("by_query_kind", "kind"), ("by_length_bin", "length_bin")):
        labels = np.array([r[column_name] for r in ids])
        for label, entry in metrics[field].items():
            assert int((labels == label).sum()) == entry["n_queries"], (field, label)
            for m, value in entry["metrics"].items():
                assert 100.0 * hits[m][labels == label].mean() == pytest.approx(value, abs=1e-9)


def test_projectors_train_by_default_and_freeze_on_request(data_root, reference_run, tmp_path):
    """Trainable projectors move; `train.frozen_projectors=true` leaves them at their init."""
    from omegaconf import OmegaConf

    from hieramamba.engine.factory import build_parts
    from hieramamba.engine.run import build_data
    from hieramamba.engine.trainer import Objective, seed_everything

    frozen = tmp_path / "frozen"
    assert train_main(args(data_root, frozen, "train.frozen_projectors=true")) == 0
    cfg = OmegaConf.load(frozen / "config.yaml")
    seed_everything(int(cfg.seed))
    parts = build_parts(cfg, build_data(cfg), torch.device("cpu"))
    init = Objective(cfg, parts.embd_dim, parts.anchor_stride).state_dict()
    assert init, "ACC/SPC are on at smoke scale for synth_tacos"
    after_frozen = torch.load(frozen / "checkpoints" / "last.pth", weights_only=True)["objective"]
    after_trained = torch.load(reference_run / "checkpoints" / "last.pth", weights_only=True)["objective"]
    assert all(torch.equal(init[k], after_frozen[k]) for k in init)
    assert any(not torch.equal(init[k], after_trained[k]) for k in init)


def test_same_seed_gives_identical_metrics(data_root, reference_run, tmp_path):
    assert train_main(args(data_root, tmp_path / "again")) == 0
    a = json.loads((reference_run / "metrics.json").read_text())
    b = json.loads((tmp_path / "again" / "metrics.json").read_text())
    assert without_timing(a) == without_timing(b)
    assert (reference_run / "predictions.json").read_text() == (tmp_path / "again" / "predictions.json").read_text()


def test_training_then_evaluation_in_two_processes_equals_one(data_root, reference_run, tmp_path, capsys):
    """`train --no-eval` stops at trained.json; `evaluate DIR` then writes what `train` alone writes
    (the DAG's two jobs per run): the same predictions, hits and metrics, and the run's peak memory
    at least training's."""
    import gzip

    out = tmp_path / "split"
    assert train_main(["--no-eval", *args(data_root, out)]) == 0
    assert (out / "trained.json").is_file() and (out / "checkpoints" / "last.pth").is_file()
    for name in ("metrics.json", "hits.csv.gz", "predictions.json"):
        assert not (out / name).exists(), name
    assert evaluate_main([str(out)]) == 0
    ref = json.loads((reference_run / "metrics.json").read_text())
    got = json.loads((out / "metrics.json").read_text())
    assert without_timing(got) == {**without_timing(ref), "config_sha": got["config_sha"]}  # out= differs
    assert got["peak_mem_mb"] >= json.loads((out / "trained.json").read_text())["peak_mem_mb"]
    assert (out / "predictions.json").read_text() == (reference_run / "predictions.json").read_text()
    assert gzip.open(out / "hits.csv.gz").read() == gzip.open(reference_run / "hits.csv.gz").read()
    # an unreadable trained.json is one error naming it, not a silently lower peak
    (out / "trained.json").write_text("{")
    capsys.readouterr()
    assert evaluate_main([str(out)]) == 2
    assert "trained.json: training's record is unreadable" in capsys.readouterr().err


def test_changed_config_in_existing_run_dir_is_an_error(data_root, reference_run, capsys):
    before = (reference_run / "metrics.json").read_text()
    assert train_main(args(data_root, reference_run, "train.lr=0.5")) == 2
    err = capsys.readouterr().err
    assert "train.lr" in err and "different config" in err
    assert (reference_run / "metrics.json").read_text() == before


def test_evaluate_and_prior_baseline(reference_run):
    before = json.loads((reference_run / "metrics.json").read_text())
    assert evaluate_main([str(reference_run)]) == 0
    after = json.loads((reference_run / "metrics.json").read_text())
    assert after["metrics"] == before["metrics"] and after["n_queries"] == before["n_queries"]
    assert evaluate_main([str(reference_run), "--baseline", "prior"]) == 0
    prior = json.loads((reference_run / "metrics.prior.json").read_text())
    assert prior["variant"] == "prior" and prior["n_queries"] == before["n_queries"]
    assert (reference_run / "hits.prior.csv.gz").is_file()
    assert evaluate_main([str(reference_run), "--split", "val"]) == 0
    assert json.loads((reference_run / "metrics.val.json").read_text())["split"] == "val"


def _authors_layout(state: dict) -> dict:
    """Our GroundingModel state_dict renamed to the authors' layout (the inverse of models.compat)."""
    from hieramamba.models.compat import BLOCK_RULES

    out = {}
    for key, value in state.items():
        if key.startswith("backbone.branch."):
            _, _, idx, sub = key.split(".", 3)
            for theirs, ours in BLOCK_RULES:
                if sub.startswith(ours):
                    sub = theirs + sub[len(ours):]
                    break
            key = f"vid_net.branch.{idx}.{sub}"
        elif key.startswith("backbone."):
            key = "vid_net." + key[len("backbone."):]
        out[key] = value.clone()
    return out


def test_convert_checkpoint_then_evaluate_it(data_root, reference_run, tmp_path):
    from hieramamba.engine.cli import convert_main

    ours = torch.load(reference_run / "checkpoints" / "last.pth", weights_only=True)
    src = tmp_path / "authors_last.pth"
    torch.save({"epoch": 5, "model": _authors_layout(ours["model"]), "model_ema": _authors_layout(ours["ema"])}, src)
    dst = tmp_path / "converted.pth"
    widths = ("model.in_dim=32", "model.text.in_dim=32")  # the smoke synthetic features
    assert convert_main([str(src), str(dst), "dataset=synth_tacos", "scale=smoke", *widths]) == 0
    conv = torch.load(dst, weights_only=True)
    assert all(torch.equal(conv["ema"][k], ours["ema"][k]) for k in ours["ema"])
    assert all(torch.equal(conv["model"][k], ours["model"][k]) for k in ours["model"])
    assert evaluate_main([str(reference_run), "--checkpoint", str(dst)]) == 0
    a = json.loads((reference_run / "metrics.json").read_text())
    b = json.loads((reference_run / "metrics.ckpt.json").read_text())
    assert a["metrics"] == b["metrics"]
    bad = tmp_path / "bad.pth"
    torch.save({"model": {"vid_net.nonsense": torch.zeros(1)}}, bad)
    assert convert_main([str(bad), str(tmp_path / "x.pth"), "dataset=synth_tacos", "scale=smoke", *widths]) == 2


def test_query_chunks_do_not_change_predictions(reference_run):
    """Chunking a video's queries (bounded memory) gives the same predictions as one pass."""
    from omegaconf import OmegaConf

    from hieramamba.engine.factory import build_parts
    from hieramamba.engine.inference import predict_split
    from hieramamba.engine.run import build_data

    cfg = OmegaConf.load(reference_run / "config.yaml")
    data = build_data(cfg)
    parts = build_parts(cfg, data, torch.device("cpu"))
    parts.model.load_state_dict(torch.load(reference_run / "checkpoints" / "last.pth", weights_only=True)["ema"])
    runs = []
    for chunk in (1, None):
        ev = OmegaConf.merge(cfg.eval, {"query_chunk": chunk})
        runs.append(predict_split(parts.model, data, "test", points_for=parts.points_for, pad_multiple=parts.pad_multiple,
                                  vid_stride=parts.vid_stride, eval_cfg=ev, device=torch.device("cpu")))
    a, b = runs
    assert a.rows.keys() == b.rows.keys()
    for q in a.rows:
        assert len(a.rows[q]) == len(b.rows[q])
        assert torch.allclose(torch.tensor(a.rows[q]), torch.tensor(b.rows[q]), atol=1e-4), q
