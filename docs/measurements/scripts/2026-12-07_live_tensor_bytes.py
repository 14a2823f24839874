"""Peak live tensor bytes (allocator- and layout-free) of one training step (fwd + bwd) or one
inference forward: argv L, side (0 / 1 = HieraMamba without / with activation checkpointing, snag =
the suite's SnAG, code = SnAG's own code at $SNAG_RELEASE), [train | infer]. Prints the peak and the
largest groups of tensors alive at it (phase:module::op)."""
import collections, sys, weakref
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from hieramamba.bench.scaling_point import _build_backbone, _loss
L = int(sys.argv[1]); ck = sys.argv[2]; mode = sys.argv[3] if len(sys.argv) > 3 else "train"
torch.set_num_threads(2)
if ck == "code":  # SnAG's own VideoTransformer, as snag_point.py builds it
    import os, types
    _libs = types.ModuleType("libs"); _libs.__path__ = [os.path.join(os.environ.get("SNAG_RELEASE", "snag_release"), "libs")]; sys.modules["libs"] = _libs
    from libs.modeling.video_net import VideoTransformer
    Lp = (L + 2303) // 2304 * 2304
    torch.manual_seed(0)
    model = VideoTransformer(in_dim=256, embd_dim=256, max_seq_len=Lp, n_heads=4, mha_win_size=19, arch=(2, 0, 8),
                             proj_pdrop=0.1, path_pdrop=0.1, use_abs_pe=True)
    args = (torch.randn(1, 256, Lp), torch.arange(Lp).view(1, 1, -1) < L)
else:
    name = "snag" if ck == "snag" else "hieramamba"
    spec = dict(name=name, L=L, d_model=256, global_mixer="hydra", local_mixer="window_attention",
                backbone_kwargs={"activation_checkpointing": ck == "1"} if name == "hieramamba" else {})
    model, args = _build_backbone(spec, torch.device("cpu"))
model.train()
skip = {p.untyped_storage().data_ptr() for p in model.parameters()} | {a.untyped_storage().data_ptr() for a in args}
stack = ["<top>"]
for n, m in model.named_modules():
    m.register_forward_pre_hook(lambda m, a, n=n: stack.append(n))
    m.register_forward_hook(lambda m, a, o: (stack.pop(), None)[1])
class LB(TorchDispatchMode):
    def __init__(s): super().__init__(); s.live = {}; s.now = 0; s.peak = 0; s.at = None; s.snap = None; s.phase = "fwd"
    def _f(s, k): s.now -= s.live.pop(k)[0]
    def __torch_dispatch__(s, func, types, a=(), kw=None):
        out = func(*a, **(kw or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                st = t.untyped_storage(); k = st.data_ptr()
                if st.nbytes() and k not in s.live and k not in skip:
                    s.live[k] = (st.nbytes(), f"{s.phase}:{'.'.join(p for p in stack[-1].split('.') if not p.isdigit())}::{func.__name__}")
                    s.now += st.nbytes(); weakref.finalize(st, s._f, k)
        if s.now > s.peak:
            s.peak = s.now; s.at = f"{s.phase} {stack[-1]} {func.__name__}"
            c = collections.Counter()
            for nb, w in s.live.values(): c[w] += nb
            s.snap = c.most_common(14)
        return out
if mode == "train":
    with LB() as m:
        loss = _loss(model(*args))
        m.phase = "bwd"
        loss.backward()
else:
    model.eval()
    with torch.no_grad(), LB() as m:
        model(*args)
print(f"L={L} {mode} side={ck}: peak live {m.peak/2**20:.0f} MiB at {m.at}")
for w, nb in m.snap:
    print(f"  {nb/2**20:8.1f} MiB  {w}")
