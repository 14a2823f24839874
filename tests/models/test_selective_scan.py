"""Mamba-1 selective scan: chunked pure-PyTorch scan against the per-step float64 recurrence."""

from __future__ import annotations

import pytest
import torch

from hieramamba.models import selective_scan as ss


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One intra-op thread: the 2 shared CPU cores are oversubscribed, and OpenMP barriers then
    cost more than the small ops they split."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _inputs(b, d, n, l, dtype=torch.float64, seed=0, delta_scale=1.0):
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(b, d, l, generator=g, dtype=dtype)
    delta = delta_scale * torch.randn(b, d, l, generator=g, dtype=dtype)
    A = -torch.rand(d, n, generator=g, dtype=dtype) * 4 - 0.1
    B = torch.randn(b, n, l, generator=g, dtype=dtype)
    C = torch.randn(b, n, l, generator=g, dtype=dtype)
    D = torch.randn(d, generator=g, dtype=dtype)
    z = torch.randn(b, d, l, generator=g, dtype=dtype)
    delta_bias = torch.randn(d, generator=g, dtype=dtype)
    return u, delta, A, B, C, D, z, delta_bias


@pytest.mark.parametrize(
    "l,chunk", [(1, 8), (5, 8), (8, 8), (13, 4), (37, 8), (64, 16), (50, 64), (23, 1)]
)
def test_chunked_matches_recurrence_float64(l, chunk):
    u, delta, A, B, C, D, z, db = _inputs(2, 3, 4, l)
    ref, h_ref = ss.selective_scan_reference(u, delta, A, B, C, D, z, db, True, return_last_state=True)
    out, h = ss.selective_scan_chunked(u, delta, A, B, C, D, z, db, True, return_last_state=True,
                                       chunk_size=chunk)
    assert out.dtype == torch.float64
    assert (out - ref).abs().max().item() <= 1e-10
    assert (h - h_ref).abs().max().item() <= 1e-10


def test_chunked_without_optional_terms_and_no_softplus():
    u, delta, A, B, C, _, _, _ = _inputs(1, 2, 3, 11, seed=1)
    delta = delta.abs()
    ref = ss.selective_scan_reference(u, delta, A, B, C)
    out = ss.selective_scan_chunked(u, delta, A, B, C, chunk_size=4)
    assert (out - ref).abs().max().item() <= 1e-10


def test_reference_is_the_recurrence_on_a_hand_case():
    # d = n = 1, delta = 1, A = -log 2 (decay 1/2), B = C = 1: h_t = h_{t-1}/2 + u_t.
    u = torch.tensor([[[1.0, 2.0, 4.0]]], dtype=torch.float64)
    delta = torch.ones_like(u)
    A = torch.tensor([[-torch.log(torch.tensor(2.0)).item()]], dtype=torch.float64)
    B = torch.ones(1, 1, 3, dtype=torch.float64)
    out = ss.selective_scan_reference(u, delta, A, B, B.clone())
    assert torch.allclose(out, torch.tensor([[[1.0, 2.5, 5.25]]], dtype=torch.float64))


def test_float32_accumulation_close_to_float64():
    u, delta, A, B, C, D, z, db = _inputs(2, 4, 16, 45, seed=2)
    ref = ss.selective_scan_reference(u, delta, A, B, C, D, z, db, True)
    f32 = [t.float() for t in (u, delta, A, B, C, D, z, db)]
    out = ss.selective_scan_chunked(*f32, True, chunk_size=8)
    assert out.dtype == torch.float32
    assert torch.allclose(out.double(), ref, rtol=1e-4, atol=1e-4)
    # bf16 inputs are accumulated in float32 and returned as bf16.
    bf = ss.selective_scan_chunked(*[t.bfloat16() for t in (u, delta)], A.float(), B.bfloat16(),
                                   C.bfloat16(), chunk_size=8)
    assert bf.dtype == torch.bfloat16


def test_extreme_decay_is_finite_with_finite_gradients():
    u, delta, A, B, C, D, z, db = _inputs(1, 3, 4, 30, dtype=torch.float32, seed=3, delta_scale=50.0)
    A = (A * 20).requires_grad_()
    delta.requires_grad_()
    out = ss.selective_scan_chunked(u, delta, A, B, C, D, z, db, True, chunk_size=16)
    out.sum().backward()
    assert torch.isfinite(out).all()
    assert torch.isfinite(A.grad).all() and torch.isfinite(delta.grad).all()


@pytest.mark.parametrize("l, seed", [(9, 4), (203, 11)], ids=["few-chunks", "many-chunks"])
def test_gradients_match_reference(l, seed):
    inputs = [t.requires_grad_() for t in _inputs(1, 2, 3, l, seed=seed)]
    ref = ss.selective_scan_reference(*inputs, True)
    g_ref = torch.autograd.grad(ref.pow(2).sum(), inputs)
    out = ss.selective_scan_chunked(*inputs, True, chunk_size=4)
    g = torch.autograd.grad(out.pow(2).sum(), inputs)
    for a, b in zip(g, g_ref):
        assert (a - b).abs().max().item() <= 1e-10


def test_gradcheck_small():
    u, delta, A, B, C, D, z, db = [t.requires_grad_() for t in _inputs(1, 2, 2, 5, seed=5)]
    assert torch.autograd.gradcheck(
        lambda *a: ss.selective_scan_chunked(*a, True, chunk_size=2), (u, delta, A, B, C, D, z, db)
    )


def test_auto_backend_is_torch_on_cpu_and_bad_requests_raise():
    assert ss.resolve_backend("auto", torch.device("cpu")) == "torch"
    assert ss.resolve_backend("torch", torch.device("cpu")) == "torch"
    with pytest.raises(RuntimeError, match="needs CUDA"):
        ss.resolve_backend("mamba_ssm", torch.device("cpu"))
    with pytest.raises(ValueError, match="unknown selective-scan backend"):
        ss.resolve_backend("triton", torch.device("cpu"))
    u, delta, A, B, C, *_ = _inputs(1, 2, 3, 6)
    with pytest.raises(ValueError, match="B must be"):
        ss.selective_scan(u, delta, A, B[:, :2], C)
    out = ss.selective_scan(u, delta, A, B, C, backend="auto")
    assert torch.allclose(out, ss.selective_scan_reference(u, delta, A, B, C), atol=1e-10)


@pytest.mark.cuda
def test_cuda_mamba_ssm_parity():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU (mamba_ssm's selective_scan_fn is a CUDA kernel)")
    if ss._mamba_ssm_scan_fn() is None:
        pytest.skip("mamba_ssm with its selective_scan_cuda extension is not installed")
    dev = torch.device("cuda")
    u, delta, A, B, C, D, z, db = [t.float().to(dev) for t in _inputs(2, 64, 16, 301, seed=6)]
    assert ss.resolve_backend("auto", dev) == "mamba_ssm"
    fast = ss.selective_scan(u, delta, A, B, C, D, z, db, True, backend="mamba_ssm")
    ours = ss.selective_scan(u, delta, A, B, C, D, z, db, True, backend="torch")
    ref = ss.selective_scan_reference(u.cpu(), delta.cpu(), A.cpu(), B.cpu(), C.cpu(), D.cpu(), z.cpu(),
                                      db.cpu(), True)
    assert torch.allclose(fast.double().cpu(), ref, rtol=1e-3, atol=1e-3)
    assert torch.allclose(ours.double().cpu(), ref, rtol=1e-4, atol=1e-4)


def test_training_path_equals_inference_path():
    # With gradients the scan also keeps the states entering the chunks for its backward pass;
    # outputs and the final state must not depend on whether it did.
    u, delta, A, B, C, D, z, db = _inputs(2, 3, 4, 29, seed=7)
    with torch.no_grad():
        plain, h_plain = ss.selective_scan_chunked(u, delta, A, B, C, D, z, db, True, True, chunk_size=4)
    u.requires_grad_()
    train, h_train = ss.selective_scan_chunked(u, delta, A, B, C, D, z, db, True, True, chunk_size=4)
    assert train.requires_grad
    assert torch.equal(plain, train.detach()) and torch.equal(h_plain, h_train.detach())


def test_long_sequence_float32_against_float64_recurrence():
    u, delta, A, B, C, D, z, db = _inputs(1, 8, 16, 301, seed=8)
    ref = ss.selective_scan_reference(u, delta, A, B, C, D, z, db, True)
    out = ss.selective_scan_chunked(*[t.float() for t in (u, delta, A, B, C, D, z, db)], True)
    assert torch.allclose(out.double(), ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("l,chunk", [(1000, 4), (1001, 4), (999, 16), (257, 2), (300, 7)])
def test_many_chunks_match_recurrence_float64(l, chunk):
    # hundreds of chunks (odd and even counts, L not a multiple of Q): the prefix scan over chunks
    u, delta, A, B, C, D, z, db = _inputs(1, 3, 4, l, seed=9)
    ref, h_ref = ss.selective_scan_reference(u, delta, A, B, C, D, z, db, True, return_last_state=True)
    out, h = ss.selective_scan_chunked(u, delta, A, B, C, D, z, db, True, return_last_state=True,
                                       chunk_size=chunk)
    assert (out - ref).abs().max().item() <= 1e-10
    assert (h - h_ref).abs().max().item() <= 1e-10


@pytest.mark.parametrize("nc", [1, 2, 3, 5, 8, 13, 32, 33])
def test_linear_scan_is_the_sequential_recurrence(nc):
    g = torch.Generator().manual_seed(nc)
    log_a = -3 * torch.rand(2, nc, 3, 4, generator=g, dtype=torch.float64)
    s = torch.randn(2, nc, 3, 4, generator=g, dtype=torch.float64)
    h, expected = torch.zeros(2, 3, 4, dtype=torch.float64), []
    for c in range(nc):
        h = torch.exp(log_a[:, c]) * h + s[:, c]
        expected.append(h)
    assert (ss._linear_scan(torch.exp(log_a), s) - torch.stack(expected, 1)).abs().max().item() <= 1e-13


def test_memory_blocks_do_not_change_results(monkeypatch):
    # blocks of one chunk each (the smallest budget) against one block for everything
    inputs = [t.requires_grad_() for t in _inputs(2, 3, 4, 53, seed=10)]
    out = ss.selective_scan_chunked(*inputs, True, chunk_size=4)
    grads = torch.autograd.grad(out.pow(2).sum(), inputs)
    monkeypatch.setattr(ss, "_BLOCK_ELEMENTS", 1)
    out1 = ss.selective_scan_chunked(*inputs, True, chunk_size=4)
    grads1 = torch.autograd.grad(out1.pow(2).sum(), inputs)
    assert (out - out1).abs().max().item() <= 1e-12
    for a, b in zip(grads, grads1):
        assert (a - b).abs().max().item() <= 1e-12


def _op_count(l, chunk, backward):
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            Count.n += 1
            return func(*args, **(kwargs or {}))

    inputs = [t.requires_grad_(backward) for t in _inputs(1, 2, 2, l, dtype=torch.float32)]
    with Count():
        out = ss.selective_scan_chunked(*inputs, True, chunk_size=chunk)
        if backward:
            out.sum().backward()  # CPU autograd runs the backward pass on this thread, in the mode
    return Count.n


@pytest.mark.parametrize("backward,bound", [(False, 200), (True, 400)])
def test_no_python_loop_over_chunks(backward, bound):
    # 16 -> 1024 chunks of 4 steps, all in one memory block at this size: a loop over chunks, in
    # the forward or the hand-written backward pass, would add >= 1000 ops per loop; the prefix
    # scans (one per pass) add a few ops per level (6 more levels).
    few, many = _op_count(64, 4, backward), _op_count(4096, 4, backward)
    assert many - few < bound, (few, many)


def _grads(fn, inputs, seed):
    """All input gradients of fn(*inputs) = (out, final state) against fixed random cotangents."""
    out, h = fn(*inputs)
    g = torch.Generator().manual_seed(seed)
    w_out = torch.randn(out.shape, generator=g, dtype=out.dtype)
    w_h = torch.randn(h.shape, generator=g, dtype=h.dtype)
    return out, h, torch.autograd.grad((out * w_out).sum() + (h * w_h).sum(), inputs)


@pytest.mark.parametrize("l,chunk", [(37, 8), (50, 3), (16, 16), (7, 1)])
def test_every_input_gradient_matches_reference_float64(l, chunk):
    # u, delta, A, B, C, D, z, delta_bias, through the output and the final state, with softplus
    names = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")
    inputs = [t.requires_grad_() for t in _inputs(2, 5, 6, l, seed=12)]
    _, _, g_ref = _grads(lambda *a: ss.selective_scan_reference(*a, True, return_last_state=True), inputs, 0)
    _, _, g = _grads(lambda *a: ss.selective_scan_chunked(*a, True, return_last_state=True, chunk_size=chunk),
                     inputs, 0)
    for name, a, b in zip(names, g, g_ref):
        assert (a - b).abs().max().item() <= 1e-8, name


@pytest.mark.parametrize("blocks_of", [None, 1, 2])
def test_gradcheck_chunked_function(monkeypatch, blocks_of):
    # several chunks (11 steps in chunks of 3: the last one padded), every optional term on, the
    # final state as a second output; one memory block, or blocks of 1 or 2 chunks
    if blocks_of is not None:
        monkeypatch.setattr(ss, "_BLOCK_ELEMENTS", blocks_of * 2 * 3 * 2 * 3)  # chunks * (b q n d)
    inputs = [t.requires_grad_() for t in _inputs(2, 3, 2, 11, seed=13)]
    assert torch.autograd.gradcheck(
        lambda *a: ss.selective_scan_chunked(*a, True, return_last_state=True, chunk_size=3), inputs
    )


@pytest.mark.parametrize("blocks_of", [3, 4])
def test_odd_chunk_count_over_many_blocks(monkeypatch, blocks_of):
    # 57 steps in chunks of 4: 15 chunks, in 5 blocks of 3 or in blocks of 4, 4, 4, 3; the state
    # and the adjoint cross every block boundary
    b, d, n, q = 2, 3, 4, 4
    monkeypatch.setattr(ss, "_BLOCK_ELEMENTS", blocks_of * b * q * n * d)
    assert len(ss._blocks(15, b * q * n * d)) == -(-15 // blocks_of) > 2
    inputs = [t.requires_grad_() for t in _inputs(b, d, n, 57, seed=14)]
    out_ref, h_ref, g_ref = _grads(lambda *a: ss.selective_scan_reference(*a, True, return_last_state=True),
                                   inputs, 1)
    out, h, g = _grads(lambda *a: ss.selective_scan_chunked(*a, True, return_last_state=True, chunk_size=q),
                       inputs, 1)
    assert (out - out_ref).abs().max().item() <= 1e-10
    assert (h - h_ref).abs().max().item() <= 1e-10
    for a, b_ in zip(g, g_ref):
        assert (a - b_).abs().max().item() <= 1e-8


def test_backward_saves_no_per_step_states():
    # What autograd keeps for the backward pass: the inputs, (b, d, l)-sized tensors of the
    # prologue/epilogue and the states entering the chunks, (b, l/q, n, d); never a (b, l, d, n)
    # tensor of per-step states or decays.
    b, d, n, l, q = 2, 8, 16, 256, 8
    sizes = []

    def pack(t):
        sizes.append(t.numel())
        return t

    inputs = [t.requires_grad_() for t in _inputs(b, d, n, l, dtype=torch.float32, seed=15)]
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        ss.selective_scan_chunked(*inputs, True, chunk_size=q).sum().backward()
    assert max(sizes) <= b * d * n * l // q, max(sizes)
    assert b * d * n * l // q in sizes  # the entering states are what it keeps
