"""`hieramamba gpu-check` (`make gpu-check`): everything the suite can say about one GPU, in one
command of at most ~8 minutes on an H100, including its installs.

Steps, each a subprocess with its own time budget (so a hang or an out-of-memory costs only that
step) and recorded with its exact command, exit status and wall time:

1. install: the wheels of `make gpu-wheels` (default folder gpu-wheels/) with
   `pip install --no-index --find-links`, only for what does not import (hydra-core, omegaconf,
   PyYAML, tqdm, einops, this package; mamba-ssm with --no-deps: its Python sources only).
2. pytest: `pytest -m cuda` (the CUDA tests).
3. parity: `hieramamba parity` (CUDA mode on a GPU: the Triton kernels against our chunked scan
   and gated norm, a whole Hydra layer on both backends, outputs and gradients).
4. scaling: `hieramamba bench scaling` per series (HieraMamba on the torch and the mamba_ssm SSD
   path, the global-attention variant, SnAG, MS-Temba, VideoMamba) at the released width, L from
   2k to 256k, forward and forward+backward, CUDA-event medians, torch.cuda.max_memory_allocated;
   a series stops at its first out-of-memory (marked in the JSON).
5. throughput: the released config per dataset on random tensors shaped like the real data
   (`hieramamba.bench.throughput`): iterations/s, peak memory, projected training time.
6. train_eval: `hieramamba data synth` + `hieramamba train ... train.device=<device>` +
   `hieramamba evaluate`, end to end through the CLI.

`--device cpu` (the CPU mode) runs the same steps at tiny sizes: the test suite runs it end to end.
Results: results/gpu/gpu_check.json and gpu_check.md (hieramamba.bench.gpu_report).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shlex
import shutil
import subprocess
import sys
import time
from importlib.metadata import distributions
from pathlib import Path

# seconds per step on a GPU; the sum (465 s) leaves ~15 s of the 8 minutes for start-up and writing
GPU_BUDGET_S = {"install": 45, "pytest": 45, "parity": 60, "scaling": 180, "throughput": 75, "train_eval": 60}
# CPU mode: tiny sizes; generous, because a loaded 2-core machine starts each Python process slowly
CPU_BUDGET_S = {"install": 30, "pytest": 60, "parity": 90, "scaling": 90, "throughput": 60, "train_eval": 120}
# one BLAS thread per process in CPU mode: several threads per process on a busy machine ran 30x slower
CPU_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

# import name -> distribution name of what the check needs beyond the GPU machine's own packages
NEEDED = {"yaml": "PyYAML", "tqdm": "tqdm", "omegaconf": "omegaconf", "hydra": "hydra-core",
          "antlr4": "antlr4-python3-runtime", "jsonschema": "jsonschema", "hieramamba": "hieramamba"}
# and, for the mamba_ssm path (CUDA mode), what its Triton kernels import
NEEDED_FOR_MAMBA_SSM = {"einops": "einops"}
GPU_LENGTHS = "2k,4k,8k,16k,32k,64k,128k,256k"
CPU_LENGTHS = "128"
DATASETS = ("tacos", "ego4d_nlq", "mad")
# (series label, --backbones, --mixers, --ssm-backend)
SCALING_SERIES = [
    ("hieramamba_torch", "hieramamba", "hydra:window_attention", "torch"),
    ("hieramamba_mamba_ssm", "hieramamba", "hydra:window_attention", "mamba_ssm"),
    ("global_attention", "hieramamba", "attention:window_attention", "auto"),
    ("snag", "snag", None, "auto"),
    ("mstemba", "mstemba", None, "auto"),
    ("videomamba", "videomamba", None, "auto"),
]


def run_step(name: str, cmd: list[str], budget_s: float, log_dir: Path, env: dict | None = None) -> dict:
    """Run one command with a wall-clock budget; its output goes to log_dir/<name>.log."""
    started = time.perf_counter()
    log = log_dir / f"{name}.log"
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=budget_s,
                              env=None if env is None else dict(os.environ, **env))
        rc, out, timed_out = proc.returncode, proc.stdout + proc.stderr, False
    except subprocess.TimeoutExpired as err:
        rc, timed_out = None, True
        out = (err.stdout or b"").decode(errors="replace") if isinstance(err.stdout, bytes) else (err.stdout or "")
    log.write_text(out)
    wall = time.perf_counter() - started
    status = "timeout" if timed_out else ("ok" if rc == 0 else "failed")
    print(f"[{status:>7}] {name:<28} {wall:6.1f} s / {budget_s:.0f} s  {shlex.join(cmd)}", flush=True)
    return {"name": name, "command": shlex.join(cmd), "status": status, "rc": rc, "wall_s": round(wall, 2),
            "budget_s": budget_s, "log": str(log), "tail": out.strip().splitlines()[-3:]}


def skipped(name: str, reason: str) -> dict:
    print(f"[skipped] {name:<28} {reason}", flush=True)
    return {"name": name, "command": None, "status": "skipped", "reason": reason}


def missing_modules(with_mamba_ssm: bool) -> list[str]:
    needed = list(NEEDED) + (list(NEEDED_FOR_MAMBA_SSM) + ["mamba_ssm"] if with_mamba_ssm else [])
    return [mod for mod in needed if not _installed(mod)]


def _installed(module: str) -> bool:
    """Importable; for this package, installed (run from the repo root it imports from the
    checkout anyway, but its wheel's dependency metadata is what the install step checks)."""
    if module == "hieramamba":
        # the hieramamba.egg-info that a build (`pip wheel .`) leaves in the checkout is found
        # through the current directory, and is no installation
        here = Path.cwd().resolve()
        return any(Path(d.locate_file("")).resolve() != here for d in distributions(name="hieramamba"))
    return importlib.util.find_spec(module) is not None


def install_step(wheels: Path, budget_s: float, log_dir: Path, with_mamba_ssm: bool) -> list[dict]:
    """pip install --no-index from `wheels` whatever does not import; nothing when all do. CPU mode
    (with_mamba_ssm False) does without mamba_ssm: its parity step then says why it is skipped."""
    missing = missing_modules(with_mamba_ssm)
    if not missing:
        return [skipped("install", "every needed module imports already")]
    if not wheels.is_dir():
        return [{"name": "install", "command": None, "status": "failed",
                 "reason": f"{', '.join(missing)} missing and no wheel folder {wheels} (run `make gpu-wheels`)"}]
    pip = [sys.executable, "-m", "pip", "install", "--no-index", "--find-links", str(wheels)]
    steps = []
    dists = [{**NEEDED, **NEEDED_FOR_MAMBA_SSM}[m] for m in missing if m != "mamba_ssm"]
    if dists:
        steps.append(run_step("install", pip + dists, budget_s, log_dir))
    if "mamba_ssm" in missing:  # its declared deps (transformers, tilelang, ...) are not what the kernels need
        steps.append(run_step("install_mamba_ssm", pip + ["--no-deps", "mamba-ssm"], budget_s, log_dir))
    importlib.invalidate_caches()  # the later steps' imports in this process see the new packages
    return steps


def _hm(*args: str) -> list[str]:
    return [sys.executable, "-m", "hieramamba", *args]


def build_plan(args) -> list[tuple[str, list[str] | None, float, str | None]]:
    """(step name, command or None, budget, reason when None) after the install step."""
    cpu = args.device == "cpu"
    budget = CPU_BUDGET_S if cpu else GPU_BUDGET_S
    out = Path(args.out_dir)
    plan = [("pytest", [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider",
                        *args.pytest_paths], budget["pytest"], None)]
    if importlib.util.find_spec("mamba_ssm") is None and not args.mamba_ssm_src:
        plan.append(("parity", None, 0, "mamba_ssm is not installed (and no --mamba-ssm-src)"))
    else:
        mode = ["--mode", "interpreter", "--quick"] if cpu else ["--mode", "cuda"]
        src = ["--mamba-ssm-src", args.mamba_ssm_src] if args.mamba_ssm_src else []
        plan.append(("parity", _hm("parity", *mode, *src, "--json", str(out / "parity.json")), budget["parity"], None))
    # CPU mode: the torch path and the attention variant (the other series run the same code)
    series = SCALING_SERIES if not cpu else [s for s in SCALING_SERIES if s[0] in ("hieramamba_torch", "global_attention")]
    width, lengths = ("64", CPU_LENGTHS) if cpu else ("384", GPU_LENGTHS)
    for label, backbone, mixers, backend in series:
        cmd = _hm("bench", "scaling", "--device", args.device, "--what", "backbone", "--backbones", backbone,
                  "--widths", width, "--backbone-lengths", lengths, "--modes", "fwd,fwd_bwd",
                  "--repeats", "1" if cpu else "3", "--in-process", "--ssm-backend", backend,
                  "--out", str(out / f"scaling_{label}.json"))
        if mixers:
            cmd[cmd.index("--backbones") + 2:cmd.index("--backbones") + 2] = ["--mixers", mixers]
        plan.append((f"scaling_{label}", cmd, budget["scaling"] / len(series), None))
    for name in args.datasets:
        cmd = [sys.executable, "-m", "hieramamba.bench.throughput", "--dataset", name, "--device", args.device,
               "--budget", str(budget["throughput"] / len(args.datasets) * 0.5), "--json",
               str(out / f"throughput_{name}.json")] + (["--tiny", "--steps", "1", "--warmup", "1"] if cpu else [])
        plan.append((f"throughput_{name}", cmd, budget["throughput"] / len(args.datasets), None))
    work = out / "train_eval"
    train_args = ["dataset=synth_tacos", f"dataset.root={work / 'data'}", "scale=smoke", "seed=0",
                  f"train.device={args.device}", f"out={work / 'run'}"]
    if cpu:
        train_args.append("train.max_iters_per_epoch=1")
    plan += [
        ("train_eval_synth", _hm("data", "synth", "--like", "tacos", "--scale", "smoke", "--seed", "0",
                                 "--out", str(work / "data")), budget["train_eval"] * 0.2, None),
        ("train_eval_train", _hm("train", *train_args), budget["train_eval"] * 0.6, None),
        ("train_eval_evaluate", _hm("evaluate", str(work / "run")), budget["train_eval"] * 0.2, None),
    ]
    return plan


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hieramamba gpu-check", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"], help="cpu: tiny sizes (the test suite's run)")
    p.add_argument("--wheels", default="gpu-wheels", help="folder of `make gpu-wheels`")
    p.add_argument("--out-dir", default="results/gpu", help="gpu_check.json, gpu_check.md and each step's files")
    # where the cuda-marked tests live; the rest of tests/ imports what the GPU machine lacks
    # (snakemake, jsonschema, scipy), and one collection error would fail the step
    p.add_argument("--pytest-paths", nargs="*", default=["tests/models", "tests/parity"],
                   help="what `pytest -m cuda` collects")
    p.add_argument("--datasets", nargs="*", default=list(DATASETS), help="throughput points")
    p.add_argument("--mamba-ssm-src", default=None, help="unpacked mamba-ssm sources for the parity step")
    p.add_argument("--skip", nargs="*", default=[], help="step names (or prefixes) to leave out, recorded as skipped")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    from hieramamba.bench.gpu_report import environment, summarise, write_report

    out = Path(args.out_dir)
    (out / "logs").mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out / "train_eval", ignore_errors=True)  # a previous check's data and run
    started = time.perf_counter()
    budget = CPU_BUDGET_S if args.device == "cpu" else GPU_BUDGET_S
    steps = install_step(Path(args.wheels), budget["install"], out / "logs", with_mamba_ssm=args.device == "cuda")
    env = CPU_ENV if args.device == "cpu" else None
    if args.device == "cuda" and not _cuda_visible():
        steps.append({"name": "cuda", "command": None, "status": "failed", "reason": "torch sees no CUDA device"})
    else:
        for name, cmd, step_budget, reason in build_plan(args):
            if any(name.startswith(s) for s in args.skip):
                steps.append(skipped(name, "--skip"))
            elif cmd is None:
                steps.append(skipped(name, reason))
            else:
                steps.append(run_step(name, cmd, step_budget, out / "logs", env))
    report = {"device_mode": args.device, "env": environment(), "steps": steps,
              "total_wall_s": round(time.perf_counter() - started, 1)}
    report["figures"] = summarise(out, steps, args.device)
    write_report(report, out / "gpu_check.json", out / "gpu_check.md")
    failed = [s["name"] for s in steps if s["status"] in ("failed", "timeout")]
    print(f"\nwrote {out / 'gpu_check.json'} and {out / 'gpu_check.md'} ({report['total_wall_s']} s); "
          + (f"FAILED: {', '.join(failed)}" if failed else "every step ran"))
    return 1 if failed else 0


def _cuda_visible() -> bool:
    import torch

    return torch.cuda.is_available()


if __name__ == "__main__":
    raise SystemExit(main())
