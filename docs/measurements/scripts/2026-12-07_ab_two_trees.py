# A/B of two source trees (e.g. a git worktree of an older commit and this checkout), HieraMamba backbone at TACoS width: one fresh bench child per point (PYTHONPATH=tree), alternating order. usage: ab.py L mode n tree1 tree2 ...
import sys, subprocess, json, os
L, mode, n = sys.argv[1], sys.argv[2], int(sys.argv[3]); trees = sys.argv[4:]
ENV = dict(os.environ, MALLOC_MMAP_MAX_="0", MALLOC_TRIM_THRESHOLD_="17179869184")
spec = dict(kind="backbone", name=os.environ.get("BB", "hieramamba"), L=int(L), d_model=256, modes=[mode], repeats=3, device="cpu", threads=2, fresh=True, max_memory_gb=20)
if spec["name"] == "hieramamba": spec.update(global_mixer="hydra", local_mixer="window_attention")
res = {t: [] for t in trees}
for i in range(n):
    for t in (trees if i % 2 == 0 else trees[::-1]):
        env = dict(ENV, PYTHONPATH=t)
        p = subprocess.run([sys.executable, "-m", "hieramamba.bench.scaling", "--point", json.dumps(spec)], capture_output=True, text=True, env=env, cwd=t)
        r = json.loads([l for l in p.stdout.splitlines() if l.startswith("{")][-1])
        res[t].append((r[f"{mode}_s"], r[f"{mode}_peak_mb"]))
        print(t, round(r[f"{mode}_s"], 3), r[f"{mode}_peak_mb"], flush=True)
for t in trees:
    ts = sorted(x[0] for x in res[t]); ms = sorted(x[1] for x in res[t])
    print("MEDIAN", t, round(ts[len(ts)//2], 3), ms[len(ms)//2])
