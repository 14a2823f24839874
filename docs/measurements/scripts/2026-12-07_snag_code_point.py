"""One measurement point of SnAG's own VideoTransformer (fmu2/snag_release @44dd90e, unmodified,
imported from the checkout at $SNAG_RELEASE), with the suite bench's own timing and peak-RSS code,
so both sides are measured the same way. argv: JSON spec {L, mode, threads, repeats}.
Run it from a scratch folder; SnAG's code is never copied into this repository."""
import json, sys, os
SNAG = os.environ.get("SNAG_RELEASE", "snag_release")
import torch
from hieramamba.bench.scaling_point import _median_time, _maxrss_mb, _loss
import types
_libs = types.ModuleType("libs")  # skip libs/__init__.py (its trainer needs tensorboard); the model code is untouched
_libs.__path__ = [os.path.join(SNAG, "libs")]
sys.modules["libs"] = _libs
from libs.modeling.video_net import VideoTransformer

spec = json.loads(sys.argv[1])
torch.set_num_threads(int(spec["threads"]))
L = int(spec["L"])
chunk = 2304  # SnAG's min_chunk_size at 8 levels, window 19: its eval pads every window to a multiple
Lp = (L + chunk - 1) // chunk * chunk
torch.manual_seed(0)
model = VideoTransformer(in_dim=256, embd_dim=256, max_seq_len=max(Lp, 2304), n_heads=4, mha_win_size=19,
                         arch=(2, 0, 8), attn_pdrop=0.0, proj_pdrop=0.1, path_pdrop=0.1, use_abs_pe=True)
x = torch.randn(1, 256, Lp, generator=torch.Generator().manual_seed(0))
x[..., L:] = 0  # SnAG's eval zero-pads the window
mask = torch.arange(Lp).view(1, 1, -1) < L  # (1, 1, Lp), True on the L real clips
repeats = int(spec.get("repeats", 3))
sync = lambda: None
res = {"spec": spec, "padded_L": Lp, "n_params": sum(p.numel() for p in model.parameters())}
base = _maxrss_mb()
if spec["mode"] == "fwd":
    def fwd():
        model.eval()
        return model(x, mask)
    with torch.no_grad():
        fwd()
        res["fwd_peak_mb"] = _maxrss_mb() - base
        res["fwd_s"] = _median_time(fwd, repeats, sync)
        res["fwd_peak_all_mb"] = _maxrss_mb() - base
else:
    def fwd_bwd():
        model.train()
        model.zero_grad(set_to_none=True)
        _loss(model(x, mask)).backward()
    fwd_bwd()
    res["fwd_bwd_peak_mb"] = _maxrss_mb() - base
    res["fwd_bwd_s"] = _median_time(fwd_bwd, repeats, sync)
    res["fwd_bwd_peak_all_mb"] = _maxrss_mb() - base
print(json.dumps(res))
