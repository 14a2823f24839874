"""Time the Mamba-1 selective scan on CPU: chunked scan per chunk size vs the old loop vs per-step.

    python -m hieramamba.bench.selective_scan_bench [--lengths 2048 8192 16384] [--chunks 4 8 16 32 64]
        [--impls step old new qxq] [--modes fwd fwdbwd] [--repeats 3] [--threads 1] [--interleave]
        [--json OUT]

A script that prints figures (not a test). Shape: batch 1, d_inner 768 (d_model 384, expand 2),
d_state 16, float32, z / D / delta_bias / softplus on (as the Vim mixer calls it). Three
implementations:

- ``new``: ``hieramamba.models.selective_scan.selective_scan_chunked`` (chunks + a parallel prefix
  scan over chunks), for every chunk size in ``--chunks``;
- ``old``: the previous chunked scan, kept here only (its state passes between chunks in a Python
  loop over L/Q chunks; one checkpoint around the whole computation);
- ``step``: the recurrence as a Python loop over time, in float32 (the per-step loop);
- ``qxq`` (design check): the old Q x Q segment-sum form inside chunks with the new prefix scan
  over chunks.

Forward runs under ``torch.no_grad()``; forward+backward backpropagates ``out.square().mean()``
to every input. Each point runs in its own Python process (one warm-up, then ``--repeats`` runs;
median reported) so that ``ru_maxrss`` (peak resident set, MiB) is that point's own high-water
mark; ``rss0`` is the mark after building the inputs, ``peak`` the mark at the end. A point that
fails (e.g. killed for memory) or exceeds ``--point-timeout`` is reported as such.
The allocator settings of ``hieramamba.bench.scaling`` (``MALLOC_MMAP_MAX_=0``,
``MALLOC_TRIM_THRESHOLD_``) are set for the child processes unless ``--no-malloc-tuning``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from hieramamba.atomic import atomic_write_json
from hieramamba.models import selective_scan as ss

D_INNER, D_STATE = 768, 16


# --- the previous implementation (loop over chunks), kept here for comparison only -------------

def _qxq_local(delta, x, A, Bc):
    """Inside each chunk, the QxQ segment-sum form: log decays `cum` and states `w` from a zero start."""
    q = x.shape[-1]
    dA = delta[:, :, :, None, :] * A[None, None, :, :, None]
    cum = torch.cumsum(dA, dim=-1)
    causal = torch.ones(q, q, dtype=torch.bool, device=x.device).tril()
    diff = cum[..., :, None] - cum[..., None, :]
    decay = torch.exp(torch.where(causal, diff, torch.full_like(diff, float("-inf"))))
    v = Bc.transpose(2, 3)[:, :, None, :, :] * x[:, :, :, None, :]
    w = (decay @ v[..., None])[..., 0]
    return cum, w


def _old_chunk_scan(delta, x, A, Bc, Cc):
    b, nc, d, q = x.shape
    cum, w = _qxq_local(delta, x, A, Bc)
    chunk_decay = torch.exp(cum[..., -1])
    local_state = w[..., -1]
    h = x.new_zeros(b, d, A.shape[1])
    entering = []
    for c in range(nc):
        entering.append(h)
        h = chunk_decay[:, c] * h + local_state[:, c]
    h_in = torch.stack(entering, dim=1)
    states = w + torch.exp(cum) * h_in[..., None]
    y = torch.einsum("bcdnt,bctn->bcdt", states, Cc)
    return y, h


def old_selective_scan_chunked(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                               chunk_size=4, chunk_fn=_old_chunk_scan):
    cdt = torch.float64 if u.dtype == torch.float64 else torch.float32
    b, d, l = u.shape
    n = A.shape[1]
    q = chunk_size
    nc = max(1, -(-l // q))
    pad = nc * q - l
    delta = ss._prepare_delta(delta, delta_bias, delta_softplus, cdt)
    x = delta * u.to(cdt)
    Bc, Cc = B.to(cdt), C.to(cdt)
    if pad:
        delta, x, Bc, Cc = (F.pad(t, (0, pad)) for t in (delta, x, Bc, Cc))
    delta = delta.view(b, d, nc, q).transpose(1, 2)
    x = x.view(b, d, nc, q).transpose(1, 2)
    Bc = Bc.view(b, n, nc, q).permute(0, 2, 3, 1)
    Cc = Cc.view(b, n, nc, q).permute(0, 2, 3, 1)
    args = (delta, x, A.to(cdt), Bc, Cc)
    if torch.is_grad_enabled() and any(t.requires_grad for t in args):
        y, _ = checkpoint(chunk_fn, *args, use_reentrant=False)
    else:
        y, _ = chunk_fn(*args)
    y = y.transpose(1, 2).reshape(b, d, nc * q)[:, :, :l]
    return ss._finish(y, u, D, z, cdt).to(u.dtype)


# --- the QxQ segment-sum form inside chunks with the new prefix scan over chunks (design check) ---

def _qxq_chunk_scan(delta, x, A, Bc, Cc):
    cum, w = _qxq_local(delta, x, A, Bc)
    h_out = ss._linear_scan(torch.exp(cum[..., -1]), w[..., -1])  # the scan takes decays, not logs
    h_in = torch.cat([torch.zeros_like(h_out[:, :1]), h_out[:, :-1]], dim=1)
    states = w + torch.exp(cum) * h_in[..., None]
    return torch.einsum("bcdnt,bctn->bcdt", states, Cc), h_out[:, -1]


def qxq_selective_scan_chunked(*args, chunk_size=4, **kw):
    """``old_selective_scan_chunked`` with the QxQ form + parallel prefix scan over chunks."""
    return old_selective_scan_chunked(*args, chunk_size=chunk_size, chunk_fn=_qxq_chunk_scan, **kw)


# --- the per-step loop in the compute dtype --------------------------------------------------

def step_selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    cdt = torch.float32
    delta = ss._prepare_delta(delta, delta_bias, delta_softplus, cdt)
    b, d, l = u.shape
    h = u.new_zeros(b, d, A.shape[1], dtype=cdt)
    ys = []
    for t in range(l):
        h = torch.exp(delta[:, :, t, None] * A) * h + (delta[:, :, t] * u[:, :, t])[:, :, None] * B[:, None, :, t]
        ys.append((h * C[:, None, :, t]).sum(-1))
    return ss._finish(torch.stack(ys, dim=-1), u, D, z, cdt)


# --- one point, in this process -----------------------------------------------------------------

def _inputs(l, seed=0):
    g = torch.Generator().manual_seed(seed)
    d, n = D_INNER, D_STATE
    u = torch.randn(1, d, l, generator=g)
    delta = torch.randn(1, d, l, generator=g) - 2.0
    A = -torch.exp(torch.rand(d, n, generator=g) * 2.0)
    B = torch.randn(1, n, l, generator=g)
    C = torch.randn(1, n, l, generator=g)
    D = torch.randn(d, generator=g)
    z = torch.randn(1, d, l, generator=g)
    db = torch.randn(d, generator=g) * 0.1
    return [u, delta, A, B, C, D, z, db]


def _fn(impl, chunk):
    if impl == "new":
        return lambda *a: ss.selective_scan_chunked(*a, True, chunk_size=chunk)
    if impl == "old":
        return lambda *a: old_selective_scan_chunked(*a, True, chunk_size=chunk)
    if impl == "qxq":
        return lambda *a: qxq_selective_scan_chunked(*a, True, chunk_size=chunk)
    if impl == "step":
        return lambda *a: step_selective_scan(*a, True)
    raise ValueError(impl)


def _maxrss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _call(fn, inputs, mode):
    """One measured call: the forward without autograd ("fwd"), or forward + backward."""
    if mode == "fwd":
        with torch.no_grad():
            fn(*inputs)
    else:
        args = [t.detach().requires_grad_() for t in inputs]
        fn(*args).square().mean().backward()


def run_point(impl, l, chunk, mode, repeats):
    inputs = _inputs(l)
    fn = _fn(impl, chunk)
    rss0 = _maxrss_mib()
    times = []
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        _call(fn, inputs, mode)
        if i:  # the first run is the warm-up
            times.append(time.perf_counter() - t0)
    return {"impl": impl, "L": l, "chunk": chunk, "mode": mode, "median_s": statistics.median(times),
            "times_s": times, "rss0_mib": rss0, "peak_mib": _maxrss_mib(), "threads": torch.get_num_threads()}


def interleaved(args) -> int:
    """All points of one length in this process; round r times every point once, r = 0 is warm-up."""
    print(f"selective scan, b=1 d={D_INNER} n={D_STATE} float32, threads={args.threads}, median of "
          f"{args.repeats} interleaved rounds (one process per length; no memory figures)")
    points = []
    for l in args.lengths:
        configs = [(impl, chunk, mode) for impl in args.impls
                   for chunk in (args.chunks if impl in ("new", "qxq") else [args.old_chunk if impl == "old" else 1])
                   for mode in args.modes]
        inputs = _inputs(l)
        times = {c: [] for c in configs}
        for r in range(args.repeats + 1):
            for impl, chunk, mode in configs:
                fn = _fn(impl, chunk)
                t0 = time.perf_counter()
                _call(fn, inputs, mode)
                if r:
                    times[(impl, chunk, mode)].append(time.perf_counter() - t0)
        for (impl, chunk, mode), ts in times.items():
            points.append({"impl": impl, "L": l, "chunk": chunk, "mode": mode, "median_s": statistics.median(ts),
                           "times_s": ts})
            print(f"{impl:>5} {chunk:>3} {l:>6} {mode:>7} {statistics.median(ts):9.3f}  "
                  f"[{' '.join(f'{t:.2f}' for t in ts)}]", flush=True)
    if args.json:
        atomic_write_json(args.json, {"points": points, "d_inner": D_INNER, "d_state": D_STATE, "interleaved": True}, indent=1)
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--lengths", type=int, nargs="+", default=[2048, 8192, 16384])
    p.add_argument("--chunks", type=int, nargs="+", default=[4, 8, 16, 32, 64])
    p.add_argument("--impls", nargs="+", default=["step", "old", "new"], choices=["step", "old", "new", "qxq"])
    p.add_argument("--old-chunk", type=int, default=4, help="chunk size of the old loop version")
    p.add_argument("--modes", nargs="+", default=["fwd", "fwdbwd"], choices=["fwd", "fwdbwd"])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--point-timeout", type=float, default=600.0)
    p.add_argument("--no-malloc-tuning", action="store_true")
    p.add_argument("--interleave", action="store_true",
                   help="one process per length, the points' repeats interleaved round-robin (fairer "
                        "relative timings on a shared machine; no peak memory)")
    p.add_argument("--json", default=None, help="write all points to this JSON file")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)  # child: impl,L,chunk,mode
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    if args.one:
        impl, l, chunk, mode = args.one.split(",")
        print(json.dumps(run_point(impl, int(l), int(chunk), mode, args.repeats)))
        return 0

    if args.interleave:
        return interleaved(args)

    env = dict(os.environ)
    if not args.no_malloc_tuning:
        env.update(MALLOC_MMAP_MAX_="0", MALLOC_TRIM_THRESHOLD_="17179869184")
    points = []
    print(f"selective scan, b=1 d={D_INNER} n={D_STATE} float32, threads={args.threads}, "
          f"median of {args.repeats} (fresh process per point)")
    print(f"{'impl':>5} {'Q':>3} {'L':>6} {'mode':>7} {'median s':>9} {'peak MiB':>9} {'inputs MiB':>10}")
    for l in args.lengths:
        for impl in args.impls:
            chunks = args.chunks if impl in ("new", "qxq") else [args.old_chunk if impl == "old" else 1]
            for chunk in chunks:
                for mode in args.modes:
                    cmd = [sys.executable, "-m", "hieramamba.bench.selective_scan_bench", "--one",
                           f"{impl},{l},{chunk},{mode}", "--repeats", str(args.repeats), "--threads",
                           str(args.threads)]
                    try:
                        r = subprocess.run(cmd, capture_output=True, text=True, env=env,
                                           timeout=args.point_timeout)
                        if r.returncode:
                            point = {"impl": impl, "L": l, "chunk": chunk, "mode": mode,
                                     "error": f"rc={r.returncode}: {r.stderr.strip().splitlines()[-1:]}"}
                        else:
                            point = json.loads(r.stdout.strip().splitlines()[-1])
                    except subprocess.TimeoutExpired:
                        point = {"impl": impl, "L": l, "chunk": chunk, "mode": mode,
                                 "error": f"timeout {args.point_timeout:.0f}s"}
                    points.append(point)
                    if "error" in point:
                        print(f"{impl:>5} {chunk:>3} {l:>6} {mode:>7}  {point['error']}", flush=True)
                    else:
                        print(f"{impl:>5} {chunk:>3} {l:>6} {mode:>7} {point['median_s']:9.3f} "
                              f"{point['peak_mib']:9.0f} {point['rss0_mib']:10.0f}", flush=True)
    if args.json:
        atomic_write_json(args.json, {"points": points, "d_inner": D_INNER, "d_state": D_STATE}, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
