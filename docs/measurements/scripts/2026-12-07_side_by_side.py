"""Side by side, interleaved, one fresh process per point: SnAG's own VideoTransformer (2026-12-07_snag_code_point.py, $SNAG_RELEASE)
against the suite's `snag` and HieraMamba backbones (python -m hieramamba.bench.scaling --point, the
bench's own child). TACoS width d 256, batch 1, 2 threads, heap-only allocator. Writes JSONL."""
import json, os, subprocess, sys, time
ENV = dict(os.environ, MALLOC_MMAP_MAX_="0", MALLOC_TRIM_THRESHOLD_="17179869184")
HERE = os.path.dirname(os.path.abspath(__file__))
out = open(sys.argv[1], "a")
invocations = int(sys.argv[2]) if len(sys.argv) > 2 else 3
plan = [("fwd", 16384), ("fwd", 65536), ("fwd_bwd", 8192), ("fwd_bwd", 16384)]
SIDES = {"fwd": ["snag_code", "hieramamba", "suite_snag"], "fwd_bwd": ["snag_code", "hieramamba", "hieramamba_ckpt", "suite_snag"]}

def point(side, mode, L):
    if side == "snag_code":
        cmd = [sys.executable, os.path.join(HERE, "2026-12-07_snag_code_point.py"),
               json.dumps({"L": L, "mode": mode, "threads": 2, "repeats": 3})]
    else:
        name = {"suite_snag": "snag", "hieramamba_ckpt": "hieramamba"}.get(side, side)
        spec = dict(kind="backbone", name=name, L=L, d_model=256,
                    modes=[mode], repeats=3, device="cpu", threads=2, fresh=True, max_memory_gb=20)
        if name == "hieramamba":
            spec.update(global_mixer="hydra", local_mixer="window_attention")
        if side == "hieramamba_ckpt":
            spec["backbone_kwargs"] = {"activation_checkpointing": True}
        cmd = [sys.executable, "-m", "hieramamba.bench.scaling", "--point", json.dumps(spec)]
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=600)
    line = [l for l in p.stdout.splitlines() if l.startswith("{")]
    r = json.loads(line[-1]) if line else {"error": p.stderr[-500:]}
    return {"side": side, "mode": mode, "L": L, "wall_s": time.time() - t0, "load": os.getloadavg(),
            "time_s": r.get(f"{mode}_s"), "peak_mb": r.get(f"{mode}_peak_mb"), "peak_all_mb": r.get(f"{mode}_peak_all_mb"), "padded_L": r.get("padded_L", L),
            "n_params": r.get("n_params"), "error": r.get("error")}

for inv in range(invocations):
    for mode, L in plan:
        sides = SIDES[mode] + (["transformer"] if (mode, L) == ("fwd", 16384) else [])
        k = inv % len(sides)
        order = sides[k:] + sides[:k]
        for side in order:
            rec = dict(point(side, mode, L), invocation=inv)
            out.write(json.dumps(rec) + "\n"); out.flush()
            print(json.dumps(rec), flush=True)
