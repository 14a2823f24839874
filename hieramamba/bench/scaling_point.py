"""One point of `hieramamba bench scaling`, measured in the current process (``measure_point``).

A point is a dict (``spec``) with ``kind`` = matmul | scan | backbone and its parameters; the
result is the spec plus the median times (``fwd_s``, ``fwd_bwd_s``), the peak-memory growth
(``fwd_peak_mb``, ``fwd_bwd_peak_mb``) and, where known, flops. ``hieramamba.bench.scaling``
describes the method and runs one fresh process per point through ``main`` below.

Backbone points build ``hieramamba.models.backbones.build_backbone``'s classes, or, for
``name="transformer"``, the global-attention reference: ``nn.TransformerEncoder`` with 8 layers of
``nn.TransformerEncoderLayer(d, 4 heads, feed-forward 4 d)`` (torch's own, so that its attention is
torch's fastest, not a slow re-implementation), run on the (1, L, d) sequence.
"""

from __future__ import annotations

import json
import resource
import statistics
import sys
import time
from typing import Any

# global-attention reference (name "transformer"): layers and heads
TRANSFORMER_LAYERS = 8
TRANSFORMER_HEADS = 4

# scan section: Ego4D width (d_model 384, expand 2, headdim 64, d_state 64), Hydra's 2B with B = 1
SCAN_SHAPE = dict(b=2, h=12, p=64, g=1, n=64)

# --------------------------------------------------------------------------------------------
# measuring one point (runs in the current process)
# --------------------------------------------------------------------------------------------


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _median_time(fn, repeats: int, sync, cuda: bool = False) -> float:
    """Median seconds of `repeats` calls; on CUDA timed by CUDA events (device time of the
    queued work, not host time around a synchronize)."""
    import torch

    times = []
    for _ in range(repeats):
        sync()
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
            continue
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _build_scan_inputs(L: int, device, seed: int = 0):
    import torch

    s = SCAN_SHAPE
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(s["b"], L, s["h"], s["p"], generator=gen)
    dt = torch.rand(s["b"], L, s["h"], generator=gen) * 0.1 + 1e-3
    A = -torch.rand(s["h"], generator=gen) - 0.1
    B = torch.randn(s["b"], L, s["g"], s["n"], generator=gen)
    C = torch.randn(s["b"], L, s["g"], s["n"], generator=gen)
    return [t.to(device) for t in (x, dt, A, B, C)]


def _build_transformer(spec: dict, device):
    """The global-attention reference: (1, L, d) through ``TRANSFORMER_LAYERS`` torch encoder layers."""
    import torch
    import torch.nn as nn

    L, d = spec["L"], spec["d_model"]
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(d, TRANSFORMER_HEADS, dim_feedforward=4 * d, batch_first=True)
    model = nn.TransformerEncoder(layer, TRANSFORMER_LAYERS, enable_nested_tensor=False).to(device)
    x = torch.randn(1, L, d, generator=torch.Generator().manual_seed(0)).to(device)  # (B, L, d)
    return model, (x,)


def _build_backbone(spec: dict, device):
    import inspect

    import torch

    if spec.get("name") == "transformer":
        return _build_transformer(spec, device)

    from hieramamba.models.backbones import backbone_class

    cls = backbone_class(spec.get("name", "hieramamba"))
    L, d = spec["L"], spec["d_model"]
    wanted = dict(
        in_dim=d,
        embd_dim=d,
        max_seq_len=L,
        global_mixer=spec.get("global_mixer"),
        local_mixer=spec.get("local_mixer"),
    )
    if spec.get("ssm_backend"):
        wanted["ssm_backend"] = spec["ssm_backend"]  # torch chunked scan or mamba_ssm's Triton kernel
    wanted.update(spec.get("backbone_kwargs", {}))
    params = inspect.signature(cls.__init__).parameters
    kwargs = {k: v for k, v in wanted.items() if k in params}
    torch.manual_seed(0)
    model = cls(**kwargs).to(device)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, d, L, generator=gen).to(device)  # (B, C_in, T)
    mask = torch.ones(1, 1, L, dtype=torch.bool, device=device)  # (B, 1, T)
    return model, (x, mask)


def _loss(out) -> Any:
    """A scalar touching every output tensor (BackboneOutput, tensor or list)."""
    import torch

    if isinstance(out, torch.Tensor):
        return out.float().square().mean()
    tensors = []
    for value in vars(out).values() if hasattr(out, "__dict__") else out:
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            tensors.append(value)
        elif isinstance(value, (list, tuple)):
            tensors += [t for t in value if isinstance(t, torch.Tensor) and t.is_floating_point()]
    return sum(t.float().square().mean() for t in tensors)


def measure_point(spec: dict) -> dict:
    """Measure one point described by ``spec`` (kind: matmul | scan | backbone) in this process."""
    import torch

    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    device = torch.device(spec.get("device", "cpu"))
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    repeats = int(spec.get("repeats", 3))
    fresh = bool(spec.get("fresh", False))
    result: dict[str, Any] = {"spec": spec}

    if spec["kind"] == "matmul":  # (n x n) @ (n x n); with a batch, that many at once (the scan's Q^3 blocks)
        n, batch = int(spec.get("size", 2048)), spec.get("batch")
        shape = (n, n) if batch is None else (int(batch), n, n)
        a = torch.randn(*shape, device=device)
        b = torch.randn(*shape, device=device)
        a @ b
        t = _median_time(lambda: a @ b, repeats, sync, cuda)
        result.update(time_s=t, gflops=2.0 * int(batch or 1) * n**3 / t / 1e9)
        return result

    from hieramamba.models.ssd import recurrence_flops, ssd_flops, ssd_scan_chunked, ssd_scan_reference

    L = int(spec["L"])
    if spec["kind"] == "scan":
        inputs = _build_scan_inputs(L, device)
        chunk = int(spec.get("chunk_size", 64))
        impl = spec.get("impl", "chunked")

        def fwd(args=inputs):
            if impl == "loop":
                return ssd_scan_reference(*args)
            return ssd_scan_chunked(*args, chunk_size=chunk)

        grads = [t.clone().requires_grad_(True) for t in inputs] if impl == "chunked" else None

        def fwd_bwd():
            for t in grads:
                t.grad = None
            _loss(fwd(grads)).backward()

        s = SCAN_SHAPE
        result["flops"] = ssd_flops(s["b"], L, s["h"], s["p"], s["g"], s["n"], chunk) if impl == "chunked" else None
        result["recurrence_flops"] = recurrence_flops(s["b"], L, s["h"], s["p"], s["n"])
    elif spec["kind"] == "backbone":
        model, args = _build_backbone(spec, device)
        result["n_params"] = sum(p.numel() for p in model.parameters())

        def fwd():  # inference: eval mode (no dropout), as a grounding model is evaluated
            model.eval()
            return model(*args)

        def fwd_bwd():  # a training step: train mode (dropout on)
            model.train()
            model.zero_grad(set_to_none=True)
            _loss(model(*args)).backward()

        grads = True
    else:
        raise ValueError(f"unknown point kind {spec['kind']!r}")

    modes = spec.get("modes", ["fwd", "fwd_bwd"])
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    base = _maxrss_mb()

    def peak_mb():  # high-water mark so far: allocated CUDA memory, or RSS growth in a fresh process
        if cuda:
            return torch.cuda.max_memory_allocated(device) / 2**20
        return (_maxrss_mb() - base) if fresh else None

    if "fwd" in modes:
        with torch.no_grad():
            fwd()  # warm-up, and the forward's memory high-water mark
            sync()
            result["fwd_peak_mb"] = peak_mb()
            result["fwd_s"] = _median_time(fwd, repeats, sync, cuda)
            # the heap can still grow in the timed runs (fragmentation): the high-water mark of them all
            result["fwd_peak_all_mb"] = peak_mb()
    if "fwd_bwd" in modes and grads:
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        fwd_bwd()
        sync()
        result["fwd_bwd_peak_mb"] = peak_mb()
        result["fwd_bwd_s"] = _median_time(fwd_bwd, repeats, sync, cuda)
        result["fwd_bwd_peak_all_mb"] = peak_mb()
    if result.get("flops") and result.get("fwd_s"):
        result["gflops"] = result["flops"] / result["fwd_s"] / 1e9
    return result


def limit_memory(max_gb: float | None) -> None:
    """Cap this process's data segment (heap and anonymous mappings) at ``max_gb`` GiB, so that a
    point past the memory wall fails with torch's allocation error instead of pushing the shared
    machine into swap or the OOM killer."""
    if max_gb:
        limit = int(max_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))


def main(argv: list[str]) -> int:
    """Child entry point of a fresh-process run: measure the point ``argv[0]`` (JSON), print one JSON line."""
    spec = json.loads(argv[0])
    try:
        limit_memory(spec.get("max_memory_gb"))
        result = measure_point(spec)
    except Exception as err:  # noqa: BLE001 - reported to the parent as the point's error
        result = {"spec": spec, "error": f"{type(err).__name__}: {err}"}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
