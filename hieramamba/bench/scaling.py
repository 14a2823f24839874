"""`hieramamba bench scaling`: time and peak memory vs sequence length, on the machine at hand.

Two sections (``--what scan|backbone|all``):

(a) **scan**: the SSD scan alone at the Ego4D width (d_model 384 -> H = 12 heads, P = 64,
    N = 64, one group; batch 2 = Hydra's forward + backward halves of one video): the chunked
    torch scan (``hieramamba.models.ssd.ssd_scan_chunked``) against the per-step loop
    (``ssd_scan_reference``), forward and forward+backward for the chunked scan, forward for the
    loop (its backward through l autograd steps is impractical and not what anyone would run).
    Achieved GFLOP/s of the chunked scan = ``ssd_flops`` (the matmul flops it actually performs,
    see its docstring for what is and is not counted) / forward time, printed beside the GFLOP/s of
    a square float32 matmul measured in the same run.
(b) **backbone**: whole backbones built by ``hieramamba.models.backbones.build_backbone`` at the
    Ego4D / TACoS widths (384, 256) for each global x local mixer choice, forward and
    forward+backward, and the fitted log-log slope of time vs L (least squares of log t on log L
    over the reliable points: ``hieramamba.bench.scaling_fit``). The HieraMamba backbone is
    global=hydra, local=window_attention. ``--backbones`` adds the seed backbones and
    ``transformer``, the global-attention reference (8 torch encoder layers at the width, see
    ``hieramamba.bench.scaling_point``). A series stops at its **wall**, the first length over the
    per-point time limit (``--timeout``) or out of memory (``--max-memory-gb``); the wall point and
    the lengths beyond it stay in the report, marked, and the scaling plot marks them.
    The section is skipped with a message when the backbone cannot be imported.

Method. Each point runs ``repeats`` times after one warm-up and reports the median. Forward
timings run in eval mode under ``torch.no_grad()`` (inference: no dropout); forward+backward runs in
train mode, builds the graph and backpropagates
``out.square().mean()`` summed over all outputs. With ``--fresh-process`` (the default, and what
reported numbers should use) every point runs in its own Python process, so that one point's
allocator state, caches and memory high-water mark do not leak into the next.

Peak memory (CPU): the growth of the process's resident-set high-water mark
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``) over the measurement, relative to the mark after
the model and the inputs were built: ``fwd`` = after the first forward, ``fwd+bwd`` = after the
first forward+backward (which always peaks at least as high); ``*_peak_all_mb`` in the JSON = after
the timed repeats too (with the heap-only allocator a fragmented heap can keep growing for a run or
two: measured +10-40 %). Only meaningful in a fresh process
(the mark never goes down), so in-process runs report null. On CUDA: torch.cuda.max_memory_allocated.

Allocator. glibc serves large allocations with fresh mmap'd pages that the kernel has to zero on
first touch; PyTorch on CPU allocates and frees tensors of 10-100 MB all the time, so long
sequences spend much of their time in page faults. ``MALLOC_MMAP_MAX_=0
MALLOC_TRIM_THRESHOLD_=17179869184`` keeps freed memory in the heap for reuse (measured here: up to
~10x faster elementwise passes over 100 MB tensors, ~3x faster end to end at long lengths). The
values the measuring processes saw are recorded in the JSON; ``--malloc-tuning`` sets them for
the child processes of a fresh-process run (it cannot affect an already running process).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from typing import Any

from hieramamba.atomic import atomic_write_json
from hieramamba.bench import scaling_point
from hieramamba.bench.scaling_fit import (  # noqa: F401  (fit_loglog_slope: re-exported)
    MIN_FIT_LENGTH, MIN_FIT_POINTS, fit_loglog_slope, reliable_slope, wall_reason)
from hieramamba.bench.scaling_point import SCAN_SHAPE, measure_point

MALLOC_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "17179869184"}

SCAN_LENGTHS = [1024, 2048, 4096, 8192, 16384]
BACKBONE_LENGTHS = [2048, 4096, 8192, 16384, 32768, 65536]
QUICK_SCAN_LENGTHS = [256, 1024]
QUICK_BACKBONE_LENGTHS = [256, 512]
WIDTHS = [384, 256]  # Ego4D, TACoS
GLOBAL_MIXERS = ["hydra", "mamba", "attention", "none"]
LOCAL_MIXERS = ["window_attention", "none"]
HIERAMAMBA_MIXER = ("hydra", "window_attention")





# --------------------------------------------------------------------------------------------
# running points (in process or one fresh process each)
# --------------------------------------------------------------------------------------------


def run_point(spec: dict, fresh: bool, timeout: float, child_env: dict[str, str]) -> dict:
    if not fresh:
        try:
            return measure_point(dict(spec, fresh=False))
        except Exception as err:  # noqa: BLE001 - one failing point must not end the run
            return {"spec": spec, "error": f"{type(err).__name__}: {err}"}
    cmd = [sys.executable, "-m", "hieramamba.bench.scaling", "--point", json.dumps(dict(spec, fresh=True))]
    # a killed child (the OOM killer, or a memory cap hit outside torch's allocator) is a memory wall
    env = dict(os.environ, **child_env)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"spec": spec, "error": f"timeout after {timeout:.0f} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [f"exit code {proc.returncode}"]
        why = f"killed by signal {-proc.returncode} (out of memory?)" if proc.returncode < 0 else tail[0]
        return {"spec": spec, "error": why}
    return json.loads(lines[-1])


def _fmt(value, scale=1.0, digits=1) -> str:
    return "-" if value is None else f"{value * scale:.{digits}f}"


def _backbone_available() -> str | None:
    """None when the HieraMamba backbone imports, else the reason it does not."""
    try:
        from hieramamba.models.backbones import backbone_class

        backbone_class("hieramamba")
    except Exception as err:  # noqa: BLE001
        return f"{type(err).__name__}: {err}"
    return None


def environment_info(fresh: bool, child_env: dict[str, str], threads: int | None = None) -> dict:
    import torch

    seen = {k: (child_env.get(k) if fresh and k in child_env else os.environ.get(k)) for k in MALLOC_ENV}
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            names = [ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")]
        cpu = f"{names[0]} x{len(names)}" if names else cpu
    except OSError:
        pass
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": threads or torch.get_num_threads(),
        "cpu": cpu,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "load_average_at_start": load,
        "malloc_env": seen,
        "malloc_tuned": all(seen.get(k) == v for k, v in MALLOC_ENV.items()),
        "fresh_process": fresh,
        "memory_method": (
            "growth of ru_maxrss over the measurement in a fresh process (MiB); null in-process"
            if not torch.cuda.is_available()
            else "torch.cuda.max_memory_allocated (MiB)"
        ),
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def run(args) -> dict:
    fresh = args.fresh_process
    child_env = dict(MALLOC_ENV) if args.malloc_tuning else {}
    device = args.device
    report: dict[str, Any] = {"env": environment_info(fresh, child_env, args.threads), "args": vars(args)}
    env = report["env"]
    print(f"# hieramamba bench scaling  ({env['cpu']}, torch {env['torch']}, {env['torch_threads']} threads)")
    print(
        f"# fresh process per point: {fresh}; repeats: {args.repeats} (median); "
        f"MALLOC_MMAP_MAX_={env['malloc_env']['MALLOC_MMAP_MAX_']} "
        f"MALLOC_TRIM_THRESHOLD_={env['malloc_env']['MALLOC_TRIM_THRESHOLD_']}"
        + ("" if env["malloc_tuned"] else "  (untuned: set both, or pass --malloc-tuning, for up to ~3x at long L)")
    )
    print(f"# load average at start: {env['load_average_at_start']} (other work on the machine skews timings)")
    common = dict(repeats=args.repeats, device=device, threads=args.threads, ssm_backend=args.ssm_backend,
                  max_memory_gb=args.max_memory_gb if fresh and device == "cpu" else None)

    if args.what in ("scan", "all"):
        lengths = args.scan_lengths
        mm = run_point(dict(common, kind="matmul", size=args.matmul_size), fresh, args.timeout, child_env)
        mm_gflops = mm.get("gflops")
        bmm = run_point(dict(common, kind="matmul", size=args.chunk_size, batch=2048), fresh, args.timeout, child_env)
        points = []
        print(f"\n## (a) SSD scan alone: b={SCAN_SHAPE['b']}, H={SCAN_SHAPE['h']}, P={SCAN_SHAPE['p']}, "
              f"N={SCAN_SHAPE['n']}, chunk={args.chunk_size}; matmul {args.matmul_size}^2 float32: "
              f"{_fmt(mm_gflops)} GFLOP/s; batched {args.chunk_size}^3 matmul: {_fmt(bmm.get('gflops'))} GFLOP/s")
        print("# ideal: the speedup if the scan did only the recurrence's 4 b L H N P flops, all at the "
              "large-matmul rate (an upper bound for any matmul form)")
        print(f"{'L':>7} {'chunk fwd ms':>13} {'chunk f+b ms':>13} {'loop fwd ms':>12} {'speedup':>8} {'ideal':>6} "
              f"{'GFLOP/s':>8} {'% matmul':>8} {'fwd MiB':>8} {'f+b MiB':>8}")
        for L in lengths:
            chunked = run_point(dict(common, kind="scan", impl="chunked", L=L, chunk_size=args.chunk_size),
                                fresh, args.timeout, child_env)
            loop = None
            if L <= args.loop_max_length:
                loop = run_point(dict(common, kind="scan", impl="loop", L=L, modes=["fwd"],
                                      repeats=max(1, min(args.repeats, 2))), fresh, args.timeout, child_env)
            speedup = None
            if loop and loop.get("fwd_s") and chunked.get("fwd_s"):
                speedup = loop["fwd_s"] / chunked["fwd_s"]
            pct = (100.0 * chunked["gflops"] / mm_gflops) if chunked.get("gflops") and mm_gflops else None
            ideal = None
            if loop and loop.get("fwd_s") and mm_gflops and chunked.get("recurrence_flops"):
                ideal = loop["fwd_s"] / (chunked["recurrence_flops"] / (mm_gflops * 1e9))
            points.append({"L": L, "chunked": chunked, "loop": loop, "speedup": speedup, "ideal_speedup": ideal,
                           "pct_of_matmul": pct})
            err = chunked.get("error") or (loop or {}).get("error")
            print(f"{L:>7} {_fmt(chunked.get('fwd_s'), 1e3):>13} {_fmt(chunked.get('fwd_bwd_s'), 1e3):>13} "
                  f"{_fmt((loop or {}).get('fwd_s'), 1e3):>12} {_fmt(speedup):>8} {_fmt(ideal, 1, 0):>6} "
                  f"{_fmt(chunked.get('gflops')):>8} "
                  f"{_fmt(pct):>8} {_fmt(chunked.get('fwd_peak_mb'), 1, 0):>8} "
                  f"{_fmt(chunked.get('fwd_bwd_peak_mb'), 1, 0):>8}" + (f"  [{err}]" if err else ""))
        report["scan"] = {"shape": SCAN_SHAPE, "chunk_size": args.chunk_size, "matmul": mm, "batched_matmul": bmm,
                          "points": points,
                          "targets": {"speedup_at_16k": ">= 20", "pct_of_matmul": ">= 40"}}

    if args.what in ("backbone", "all"):
        reason = _backbone_available()
        if reason is not None:
            print(f"\n## (b) backbones: skipped, the HieraMamba backbone does not import ({reason})")
            report["backbone"] = {"skipped": reason}
        else:
            report["backbone"] = _run_backbones(args, common, fresh, child_env)
    return report


def _series_specs(args) -> list[tuple[str, str, str]]:
    """(backbone, global mixer, local mixer) per series: HieraMamba once per mixer choice; a seed
    backbone (SnAG, MS-Temba, VideoMamba) or the global-attention transformer once, with its
    published defaults at the width (no mixer switch, labelled by its name)."""
    series = [("hieramamba", g, l) for g, l in args.mixers] if "hieramamba" in args.backbones else []
    return series + [(name, name, "-") for name in args.backbones if name != "hieramamba"]


def _run_backbones(args, common, fresh, child_env) -> dict:
    points, slopes = [], []
    ckpt = "; HieraMamba with activation checkpointing" if args.activation_checkpointing else ""
    print(f"\n## (b) backbones (B = 1, in_dim = d_model, all steps valid{ckpt})")
    print(f"{'d':>4} {'global':>11} {'local':>17} {'L':>7} {'fwd ms':>10} {'f+b ms':>10} {'fwd MiB':>8} {'f+b MiB':>8}")
    for d in args.widths:
        for name, g_mix, l_mix in _series_specs(args):
            series, wall = [], None
            for L in args.backbone_lengths:
                spec = dict(common, kind="backbone", name=name, L=L, d_model=d, modes=args.modes)
                if name == "hieramamba":
                    spec.update(global_mixer=g_mix, local_mixer=l_mix)
                    if args.activation_checkpointing:
                        spec["backbone_kwargs"] = {"activation_checkpointing": True}
                if wall is not None:  # beyond the wall: not run, recorded as such
                    r = {"spec": spec, "wall": wall["wall"], "beyond_wall": True}
                else:
                    r = run_point(spec, fresh, args.timeout, child_env)
                    if wall_reason(r):
                        r["wall"] = wall_reason(r)
                        wall = r
                points.append(r)
                series.append((L, r))
                err = r.get("error") or (f"beyond the {r['wall']} wall" if r.get("beyond_wall") else None)
                print(f"{d:>4} {g_mix:>11} {l_mix:>17} {L:>7} {_fmt(r.get('fwd_s'), 1e3):>10} "
                      f"{_fmt(r.get('fwd_bwd_s'), 1e3):>10} {_fmt(r.get('fwd_peak_mb'), 1, 0):>8} "
                      f"{_fmt(r.get('fwd_bwd_peak_mb'), 1, 0):>8}" + (f"  [{err}]" if err else ""))
            for mode in ("fwd_s", "fwd_bwd_s"):
                fit = reliable_slope([(L, r.get(mode)) for L, r in series], args.fit_min_length, args.fit_min_points)
                slopes.append({"backbone": name, "d_model": d, "global_mixer": g_mix, "local_mixer": l_mix,
                               "mode": mode[:-2], **fit,
                               "wall": None if wall is None else {"L": wall["spec"]["L"], "reason": wall["wall"]}})
    print(f"\nfitted log-log slope of time vs L over L >= {args.fit_min_length}, >= {args.fit_min_points} points, "
          "none at or past a wall (target <= 1.10 for hydra + window_attention):")
    for s in slopes:
        flag = ""
        if s["backbone"] == "hieramamba" and (s["global_mixer"], s["local_mixer"]) == HIERAMAMBA_MIXER \
                and s["slope"] is not None:
            flag = "  ok" if s["slope"] <= 1.10 else "  ABOVE TARGET"
        span = f"L {s['lengths'][0]}-{s['lengths'][-1]}" if s["slope"] is not None else s["note"]
        wall = f"; {s['wall']['reason']} wall at L {s['wall']['L']}" if s["wall"] else ""
        print(f"  d={s['d_model']} {s['global_mixer']:>11}+{s['local_mixer']:<17} {s['mode']:>7}: "
              f"{_fmt(s['slope'], 1, 3)} ({span}{wall}){flag}")
    return {"points": points, "slopes": slopes, "target_slope": 1.10,
            "fit": {"min_length": args.fit_min_length, "min_points": args.fit_min_points}}


# --------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------


def _int_list(text: str) -> list[int]:
    out = []
    for item in text.split(","):
        item = item.strip().lower()
        if item:
            out.append(int(float(item[:-1]) * 1024) if item.endswith("k") else int(item))
    return out


def _mixer_list(text: str) -> list[tuple[str, str]]:
    pairs = []
    for item in text.split(","):
        g_mix, _, l_mix = item.strip().partition(":")
        if g_mix not in GLOBAL_MIXERS or l_mix not in LOCAL_MIXERS:
            raise argparse.ArgumentTypeError(
                f"mixer {item!r}: expected global:local with global in {GLOBAL_MIXERS}, local in {LOCAL_MIXERS}"
            )
        pairs.append((g_mix, l_mix))
    return pairs


BACKBONES = ("hieramamba", "snag", "mstemba", "videomamba", "transformer")


def _backbone_list(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in BACKBONES]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"backbones {bad or text!r}: expected names from {BACKBONES}")
    return names


def _default_memory_cap_gb() -> float | None:
    try:
        return round(0.75 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        return None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hieramamba bench scaling",
        description="Time and peak memory vs sequence length: the SSD scan alone and whole backbones.",
    )
    p.add_argument("--what", choices=["scan", "backbone", "all"], default="all")
    p.add_argument("--lengths", type=_int_list, default=None,
                   help="comma-separated L (k = 1024), used for both sections unless the specific ones are given")
    p.add_argument("--scan-lengths", type=_int_list, default=None)
    p.add_argument("--backbone-lengths", type=_int_list, default=None)
    p.add_argument("--widths", type=_int_list, default=None, help="backbone d_model values (default 384,256)")
    p.add_argument("--mixers", type=_mixer_list, default=None,
                   help="global:local pairs (default: every combination of "
                        f"{'/'.join(GLOBAL_MIXERS)} x {'/'.join(LOCAL_MIXERS)})")
    p.add_argument("--backbones", type=_backbone_list, default=["hieramamba"],
                   help=f"comma-separated backbones to time (from {', '.join(BACKBONES)}); HieraMamba runs "
                        "once per --mixers pair, the others once each")
    p.add_argument("--modes", type=lambda s: [m.strip() for m in s.split(",")], default=["fwd", "fwd_bwd"],
                   help="fwd, fwd_bwd or both (backbone section)")
    p.add_argument("--activation-checkpointing", action="store_true",
                   help="HieraMamba recomputes each AMP branch in the backward (model.backbone.activation_checkpointing)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per point after one warm-up (median)")
    p.add_argument("--fresh-process", dest="fresh_process", action="store_true", default=True,
                   help="one Python process per point (default; needed for peak memory)")
    p.add_argument("--in-process", dest="fresh_process", action="store_false",
                   help="measure every point in this process (faster; no peak memory)")
    p.add_argument("--malloc-tuning", action="store_true",
                   help=f"run the fresh processes with {' '.join(f'{k}={v}' for k, v in MALLOC_ENV.items())}")
    p.add_argument("--chunk-size", type=int, default=64, help="chunk length of the scan section")
    p.add_argument("--loop-max-length", type=int, default=16384, help="longest L for the per-step loop baseline")
    p.add_argument("--matmul-size", type=int, default=2048)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads in each point")
    p.add_argument("--device", default="cpu", help="cpu or cuda (CUDA: CUDA-event timing, torch.cuda.max_memory_allocated)")
    p.add_argument("--ssm-backend", default="auto", choices=["auto", "torch", "mamba_ssm"],
                   help="SSD scan of the SSM backbones: our chunked torch scan, mamba_ssm's kernel (CUDA), or auto")
    p.add_argument("--timeout", type=float, default=1800.0,
                   help="seconds per point (fresh-process mode); a point over it is the series' time wall")
    p.add_argument("--max-memory-gb", type=float, default=_default_memory_cap_gb(),
                   help="data-segment cap of each fresh point process (GiB; default 3/4 of the machine's RAM): "
                        "a point over it fails with an allocation error, the series' memory wall; 0 = no cap")
    p.add_argument("--fit-min-length", type=int, default=MIN_FIT_LENGTH,
                   help="fit the log-log slope only over lengths >= this (shorter ones are dominated by fixed costs)")
    p.add_argument("--fit-min-points", type=int, default=MIN_FIT_POINTS,
                   help="fit a slope only with at least this many measured points (at lengths >= --fit-min-length)")
    p.add_argument("--quick", action="store_true",
                   help="tiny lengths, one width, the HieraMamba mixer only, 1 repeat (a smoke run)")
    p.add_argument("--out", default=None, help="write the results as JSON to this file")
    return p


def parse_args(argv: list[str]) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    if args.quick:
        args.scan_lengths = args.scan_lengths or args.lengths or QUICK_SCAN_LENGTHS
        args.backbone_lengths = args.backbone_lengths or args.lengths or QUICK_BACKBONE_LENGTHS
        args.widths = args.widths or [WIDTHS[0]]
        args.mixers = args.mixers or [HIERAMAMBA_MIXER]
        args.repeats = 1
    args.scan_lengths = args.scan_lengths or args.lengths or SCAN_LENGTHS
    args.backbone_lengths = args.backbone_lengths or args.lengths or BACKBONE_LENGTHS
    args.widths = args.widths or WIDTHS
    args.mixers = args.mixers or [(g, l) for g in GLOBAL_MIXERS for l in LOCAL_MIXERS]
    return args


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--point"]:  # child process of a fresh-process run: one point, one JSON line
        return scaling_point.main(argv[1:])
    args = parse_args(argv)
    report = run(args)
    if args.out:
        atomic_write_json(args.out, report, indent=1, default=str)
        print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
