"""`hieramamba parity`: our kernels against mamba_ssm's, on CUDA or through Triton's interpreter.

    hieramamba parity                                 # CUDA + installed mamba_ssm, else interpreter
    hieramamba parity --mamba-ssm-src mamba_ssm-2.3.2.post1 --json results/parity.json

Prints one line per check (max-normalised error of the worst output or gradient) and exits 1 when
any check fails, 2 when mamba_ssm's kernels cannot be run here (the message says what is missing).
Run it in a fresh process: the interpreter must be switched on before triton is imported.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

from hieramamba.atomic import atomic_write_json

# (b, l, h, p, g, n, chunk_size): odd lengths that are not chunk multiples, several groups, and the
# Ego4D Hydra shape (d_inner 768 = 12 heads of 64, d_state 64, one group).
SSD_SHAPES_QUICK = [(1, 77, 2, 16, 1, 16, 32), (2, 300, 4, 64, 2, 64, 64)]
SSD_SHAPES_FULL = SSD_SHAPES_QUICK + [(1, 1000, 12, 64, 1, 64, 64)]
SSD_SHAPES_CUDA = SSD_SHAPES_FULL + [(2, 4096, 12, 64, 1, 64, 64), (1, 16384, 12, 64, 1, 64, 64)]
# (b, d, n, l) for the Mamba-1 selective scan.
SELECTIVE_SHAPES_QUICK = [(2, 16, 8, 100)]
SELECTIVE_SHAPES_FULL = SELECTIVE_SHAPES_QUICK + [(2, 64, 16, 300)]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hieramamba parity", description=__doc__.split("\n\n")[0])
    p.add_argument("--mode", choices=["auto", "cuda", "interpreter"], default="auto",
                   help="cuda: mamba_ssm's kernels on the GPU; interpreter: its Triton kernels on CPU "
                        "(TRITON_INTERPRET=1); auto: cuda when a GPU and an importable mamba_ssm are there")
    p.add_argument("--mamba-ssm-src", default=None,
                   help="mamba_ssm sources (an unpacked sdist) instead of the installed package")
    p.add_argument("--quick", action="store_true", help="the small shapes only (~30 s interpreted on a 2-core CPU, against ~2.5 min for all)")
    p.add_argument("--json", type=Path, default=None, help="write the report here")
    return p


def plan(upstream, quick: bool):
    """The checks to run (argument-free callables returning a ``CheckResult``) for the upstream's mode."""
    from hieramamba.parity import checks

    cuda = upstream.mode == "cuda"
    device = "cuda" if cuda else "cpu"
    ssd_shapes = SSD_SHAPES_QUICK if quick else (SSD_SHAPES_CUDA if cuda else SSD_SHAPES_FULL)
    sel_shapes = SELECTIVE_SHAPES_QUICK if quick else SELECTIVE_SHAPES_FULL
    items = []
    for b, l, h, p, g, n, q in ssd_shapes:
        items.append(lambda b=b, l=l, h=h, p=p, g=g, n=n, q=q: checks.ssd_scan_check(upstream, device, b, l, h, p, g, n, q))
    for before in (True, False):
        items.append(lambda before=before: checks.gated_rmsnorm_check(upstream, device, 64, 768, before))
    for b, d, n, l in sel_shapes:
        items.append(lambda b=b, d=d, n=n, l=l: checks.selective_scan_check(upstream, device, b, d, n, l, "ref"))
        if cuda and upstream.selective_scan_fn is not None:  # None: a source-only mamba_ssm (no CUDA build)
            items.append(lambda b=b, d=d, n=n, l=l: checks.selective_scan_check(upstream, device, b, d, n, l, "fn"))
    if upstream.mamba2 is not None:
        items.append(lambda: checks.mamba2_block_check(upstream, device, 64, 150))
        if not quick:
            items.append(lambda: checks.mamba2_block_check(upstream, device, 384, 1000, b=1, d_state=64, headdim=64))
    if cuda:
        items.append(lambda: checks.hydra_backend_check(device, 384, 1000))
    return items


def environment(upstream) -> dict:
    import torch

    from hieramamba import __version__
    from hieramamba.parity.upstream import triton_version

    tv = triton_version()
    return {
        "hieramamba": __version__,
        "torch": torch.__version__,
        "triton": ".".join(map(str, tv)) if tv else None,
        "mamba_ssm": upstream.version,
        "mamba_ssm_source": str(upstream.source),
        "mode": upstream.mode,
        "device": torch.cuda.get_device_name(0) if upstream.mode == "cuda" else platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from hieramamba.parity.upstream import (
        UpstreamUnavailable,
        interpreter_shims,
        load_upstream,
    )

    try:
        upstream = load_upstream(args.mamba_ssm_src, args.mode)
    except UpstreamUnavailable as err:
        print(f"hieramamba parity: {err}", file=sys.stderr)
        return 2
    env = environment(upstream)
    print(f"mamba_ssm {upstream.version} ({upstream.mode}) from {upstream.source}; torch {env['torch']}, triton {env['triton']}")
    results = []
    with interpreter_shims(upstream):
        for run_check in plan(upstream, args.quick):
            result = run_check()
            results.append(result)
            worst_name, worst = result.worst
            params = ", ".join(f"{k}={v}" for k, v in result.params.items() if k != "seed")
            print(f"{'ok  ' if result.passed else 'FAIL'} {result.name:<22} {params:<58} "
                  f"worst {worst_name} {worst:.2e} (tol {result.tols[worst_name]:.0e}) {result.seconds:6.1f} s", flush=True)
    failed = [r for r in results if not r.passed]
    print(f"{len(results) - len(failed)} of {len(results)} checks passed")
    if args.json is not None:
        report = {"environment": env, "passed": not failed, "checks": [r.as_dict() for r in results]}
        atomic_write_json(args.json, report)
        print(f"wrote {args.json}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
