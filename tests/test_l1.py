"""The fused L1 discrepancy (ddad_fast.ops.l1, torch.ops.ddad.l1_discrepancy) against the eager
reference ddad_fast.losses.l1_discrepancy: values, both gradients, dtypes, memory formats, the
log(1 + L1) variant, opcheck, torch.compile, determinism, errors, the fallback and the CUDA kernel.
"""

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from ddad_fast import losses
from ddad_fast.ops import l1 as l1_ops

needs_ext = pytest.mark.skipif(not l1_ops.AVAILABLE, reason="ddad_fast._C is not built")

ROOT = Path(__file__).resolve().parents[1]
DTYPES = [torch.float32, torch.bfloat16, torch.float16]
LOGITS = [(1, 1), (1, 10), (7, 3), (7, 63), (256, 1), (256, 10), (256, 100), (3, 1000), (256, 1000)]
MAPS = [
    (1, 1, 1, 1),
    (1, 10, 1, 1),
    (2, 3, 7, 7),
    (4, 11, 16, 20),
    (2, 13, 33, 17),
    (1, 1, 128, 160),
    (3, 13, 128, 160),
]
# The real segmentation maps: 17M elements, so only a couple of cases.
BIG_MAPS = [(64, 11, 128, 160)]
cuda_only = pytest.mark.skipif(
    not (torch.cuda.is_available() and l1_ops.AVAILABLE), reason="needs a CUDA GPU and ddad_fast._C"
)


def make_pair(shape, dtype, device="cpu", seed=0, ties=True):
    """(t, s, t_hi, s_hi): teacher/student outputs in dtype and the fp32 values they were rounded
    from. Some entries are equal (sign 0) when ties."""
    g = torch.Generator().manual_seed(seed)
    t_hi = 3 * torch.randn(shape, generator=g)
    s_hi = t_hi + torch.randn(shape, generator=g)
    if ties:
        s_hi.view(-1)[::5] = t_hi.view(-1)[::5]
    return t_hi.to(device, dtype), s_hi.to(device, dtype), t_hi.to(device), s_hi.to(device)


def run(fn, t, s, log1p=False, upstream=0.37):
    """Loss and both gradients of fn(t, s[, log1p]) scaled by upstream, on fresh leaves that keep
    t's and s's layouts (strides, storage offset: not dense, overlapping, unaligned)."""
    t, s = t.detach().requires_grad_(), s.detach().requires_grad_()
    loss = fn(t, s, log1p=log1p)
    (loss * upstream).backward()
    return loss.detach(), t.grad, s.grad


def eager(t, s, log1p=False):
    loss = losses.l1_discrepancy(t, s)
    return torch.log1p(loss) if log1p else loss


def assert_matches_eager(t, s, t_hi, s_hi, log1p=False):
    """Values no worse than 2x eager's error against fp64 (+ fp32 rounding); gradients equal to
    eager's, each in its input's dtype and memory format. Bitwise on CPU; to one ulp of the dtype
    on CUDA (eager's mean backward there multiplies by a rounded 1 / numel, the op divides), to four
    for log1p (g / (1 + L1) sees either loss)."""
    loss, gt, gs = run(l1_ops.l1_discrepancy, t, s, log1p)
    ref_loss, ref_gt, ref_gs = run(eager, t, s, log1p)
    ref = (t_hi.double() - s_hi.double()).abs().mean()
    if log1p:
        ref = torch.log1p(ref)
    assert loss.dtype == torch.float32 and loss.shape == ()
    err = (loss.double() - ref).abs().item()
    eager_err = (ref_loss.double() - ref).abs().item()
    assert err <= 2 * eager_err + 2e-6 * ref.abs().item() + 1e-12, (err, eager_err)
    for grad, ref_grad, x in ((gt, ref_gt, t), (gs, ref_gs, s)):
        assert grad.dtype == x.dtype
        assert grad.stride() == torch.empty_like(x).stride()  # x's own where x is dense
        if log1p or x.device.type != "cpu":
            # Under log1p each side divides by 1 + its own L1, summed in another order: the sum
            # can differ in its last bits, 1 + L1 round to the next float, the quotient round
            # again. Measured in fp32 over these shapes, seeds 0-11, AVX2 and scalar kernels
            # (ATEN_CPU_CAPABILITY): up to 1.9 eps; bf16 and fp16 equal.
            ulps = 4 if log1p else 1
            eps = torch.finfo(x.dtype).eps
            torch.testing.assert_close(grad, ref_grad, rtol=ulps * eps, atol=0)
        else:
            assert torch.equal(grad, ref_grad)


@needs_ext
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", LOGITS + MAPS, ids=str)
def test_matches_eager(shape, dtype):
    assert_matches_eager(*make_pair(shape, dtype))


@needs_ext
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("shape", BIG_MAPS, ids=str)
def test_matches_eager_on_the_real_maps(shape, dtype):
    t, s, t_hi, s_hi = make_pair(shape, dtype)
    assert_matches_eager(
        t.contiguous(memory_format=torch.channels_last),
        s.contiguous(memory_format=torch.channels_last),
        t_hi,
        s_hi,
    )


@needs_ext
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", [(256, 10), (256, 1000), (2, 13, 33, 17), (1, 1, 1, 1)], ids=str)
def test_log1p_variant(shape, dtype):
    assert_matches_eager(*make_pair(shape, dtype), log1p=True)


@needs_ext
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 3, 7, 7), (4, 11, 16, 20), (1, 13, 128, 160)])
def test_channels_last(shape, dtype):
    t, s, t_hi, s_hi = make_pair(shape, dtype)
    cl = torch.channels_last
    assert_matches_eager(t.contiguous(memory_format=cl), s.contiguous(memory_format=cl), t_hi, s_hi)


@needs_ext
def test_channels_last_is_never_copied():
    t, s, _, _ = make_pair((4, 11, 16, 20), torch.bfloat16)
    t = t.contiguous(memory_format=torch.channels_last).requires_grad_()
    s = s.contiguous(memory_format=torch.channels_last).requires_grad_()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        l1_ops.l1_discrepancy(t, s).backward()
    names = {e.key for e in prof.key_averages()}
    assert "ddad::l1_discrepancy" in names and "ddad::l1_discrepancy_backward" in names
    assert not names & {"aten::copy_", "aten::clone", "aten::contiguous"}, names
    assert t.grad.is_contiguous(memory_format=torch.channels_last)


@needs_ext
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(
    "layouts",
    [
        ("contiguous", "channels_last"),
        ("channels_last", "contiguous"),
        ("sliced", "contiguous"),
        ("channels_last", "sliced"),
        ("sliced", "sliced"),
        ("expanded", "channels_last"),
        ("offset", "contiguous"),
    ],
    ids="-".join,
)
@needs_ext
def test_mixed_and_non_contiguous_maps(layouts, dtype):
    shape = (3, 5, 9, 7)
    t, s, t_hi, s_hi = make_pair(shape, dtype)

    def layout(x, kind):
        if kind == "channels_last":
            return x.contiguous(memory_format=torch.channels_last)
        if kind == "sliced":  # every other column of a wider map: not dense
            wide = torch.zeros(*shape[:3], 2 * shape[3], dtype=x.dtype)
            wide[..., ::2] = x
            return wide[..., ::2]
        if kind == "expanded":  # one sample broadcast over the batch: overlapping
            return x[:1].expand(shape)
        if kind == "offset":  # dense, storage offset of one element (unaligned)
            flat = torch.zeros(x.numel() + 1, dtype=x.dtype)
            flat[1:] = x.reshape(-1)
            return flat[1:].view(shape)
        return x.contiguous()

    t, s = layout(t, layouts[0]), layout(s, layouts[1])
    t_hi = t.float() if layouts[0] == "expanded" else t_hi
    assert_matches_eager(t, s, t_hi, s_hi)


@needs_ext
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_non_contiguous_logits(dtype):
    t, s, t_hi, s_hi = make_pair((100, 256), dtype)
    assert_matches_eager(t.t(), s.t(), t_hi.t(), s_hi.t())  # both transposed: same layout
    assert_matches_eager(t.t(), s.t().contiguous(), t_hi.t(), s_hi.t())  # layouts differ
    assert_matches_eager(t[::2], s[::2], t_hi[::2], s_hi[::2])  # strided rows


@needs_ext
def test_gradient_bits_when_numel_is_no_fp32():
    # 2^24 + 1 rounds to 2^24 in fp32, where eager's mean backward divides by it: the op divides
    # by the same rounded numel (a double division by the exact one was an ulp off here).
    t, s, t_hi, s_hi = make_pair((2**24 + 1,), torch.float32, ties=False)
    assert_matches_eager(t, s, t_hi, s_hi)


@needs_ext
def test_student_step_skips_the_teacher_gradient():
    t, s, _, _ = make_pair((64, 10), torch.float32)
    s = s.requires_grad_()
    l1_ops.l1_discrepancy(t, s).backward()
    ref = s.detach().clone().requires_grad_()
    losses.l1_discrepancy(t, ref).backward()
    assert t.grad is None and torch.equal(s.grad, ref.grad)
    empty_t, grad_s = torch.ops.ddad.l1_discrepancy_backward(torch.tensor(1.0), t, s, False, True)
    assert empty_t.numel() == 0 and torch.equal(grad_s, ref.grad)


@needs_ext
def test_mixed_dtypes_are_promoted_like_eager():
    t, _, _, _ = make_pair((2, 13, 33, 17), torch.float32)
    _, s, _, _ = make_pair((2, 13, 33, 17), torch.bfloat16, seed=1)
    loss, gt, gs = run(l1_ops.l1_discrepancy, t, s)
    ref_loss, ref_gt, ref_gs = run(eager, t, s)
    torch.testing.assert_close(loss, ref_loss, rtol=2e-6, atol=0)
    assert gs.dtype == torch.bfloat16 and torch.equal(gt, ref_gt) and torch.equal(gs, ref_gs)


@needs_ext
def test_empty_input_is_nan_like_eager():
    t = torch.zeros(0, 10, requires_grad=True)
    s = torch.zeros(0, 10, requires_grad=True)
    loss = l1_ops.l1_discrepancy(t, s)
    assert torch.isnan(loss) and torch.isnan(losses.l1_discrepancy(t, s))
    loss.backward()
    assert t.grad.shape == (0, 10)


@needs_ext
def test_nan_and_inf_follow_torch_sign():
    t = torch.tensor([[float("nan"), 1.0, float("inf"), 2.0]])
    s = torch.tensor([[0.0, 1.0, float("inf"), 3.0]])
    loss, gt, gs = run(l1_ops.l1_discrepancy, t, s)
    ref_loss, ref_gt, ref_gs = run(eager, t, s)
    assert torch.isnan(loss) and torch.isnan(ref_loss)
    assert torch.equal(gt, ref_gt) and torch.equal(gs, ref_gs)


@needs_ext
@pytest.mark.parametrize(
    ("shape", "dtype", "memory_format"),
    [
        ((256, 10), torch.float32, torch.contiguous_format),
        ((2, 13, 33, 17), torch.bfloat16, torch.channels_last),
        ((1, 1, 1, 1), torch.float16, torch.channels_last),
    ],
    ids=str,
)
@needs_ext
def test_opcheck(shape, dtype, memory_format):
    t, s, _, _ = make_pair(shape, dtype)
    if len(shape) == 4:
        t = t.contiguous(memory_format=memory_format)
        s = s.contiguous(memory_format=memory_format)
    torch.library.opcheck(torch.ops.ddad.l1_discrepancy.default, (t.requires_grad_(), s))
    torch.library.opcheck(torch.ops.ddad.l1_discrepancy.default, (t, s.contiguous()))
    grad = torch.tensor(0.5)
    for flags in [(True, True), (False, True), (True, False)]:
        torch.library.opcheck(
            torch.ops.ddad.l1_discrepancy_backward.default, (grad, t.detach(), s, *flags)
        )


@needs_ext
def test_torch_compile_fullgraph():
    torch._dynamo.reset()
    compiled = torch.compile(l1_ops.l1_discrepancy, fullgraph=True)
    t, s, _, _ = make_pair((2, 13, 33, 17), torch.bfloat16)
    t = t.contiguous(memory_format=torch.channels_last)
    s = s.contiguous(memory_format=torch.channels_last)
    for log1p in (False, True):
        got = run(compiled, t, s, log1p)
        want = run(l1_ops.l1_discrepancy, t, s, log1p)
        # inductor's log1p may differ from aten's in the last bit; the op's outputs may not
        torch.testing.assert_close(got[0], want[0], rtol=2e-7, atol=0)
        assert torch.equal(got[1], want[1]) and torch.equal(got[2], want[2])
        assert got[1].stride() == t.stride()


@needs_ext
def test_bitwise_deterministic_and_independent_of_threads(two_threads):
    t, s, _, _ = make_pair((16, 13, 64, 80), torch.float32)  # 34 chunks of partial sums
    first = run(l1_ops.l1_discrepancy, t, s)
    for _ in range(3):
        for a, b in zip(run(l1_ops.l1_discrepancy, t, s), first, strict=True):
            assert torch.equal(a, b)
    torch.set_num_threads(1)  # two_threads restores the count afterwards
    assert torch.equal(torch.ops.ddad.l1_discrepancy(t, s), first[0])


_PORTABLE_SCRIPT = textwrap.dedent(
    """
    import sys, torch
    import ddad_fast._C
    torch.manual_seed(0)
    out = []
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        for n in (1, 31, 33, 1025, 40000, 100003):
            t = (3 * torch.randn(n)).to(dtype)
            s = (3 * torch.randn(n)).to(dtype)
            s[::7] = t[::7]
            out.append(torch.ops.ddad.l1_discrepancy(t, s))
            out += torch.ops.ddad.l1_discrepancy_backward(torch.tensor(-0.3), t, s)
    torch.save(out, sys.argv[1])
    """
)


@needs_ext
def test_portable_cpu_loop_is_bitwise_equal_to_the_avx2_one(tmp_path):
    results = []
    for name, generic in (("dispatched", "0"), ("portable", "1")):
        path = tmp_path / f"{name}.pt"
        env = {**os.environ, "DDAD_CPU_GENERIC": generic}
        subprocess.run([sys.executable, "-c", _PORTABLE_SCRIPT, str(path)], env=env, check=True)
        results.append(torch.load(path))
    for a, b in zip(*results, strict=True):
        assert a.dtype == b.dtype and torch.equal(
            a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8)
        )


@needs_ext
def test_errors_are_clear():
    t = torch.randn(4, 10)
    with pytest.raises(RuntimeError, match="same shape, got \\[4, 10\\] and \\[4, 11\\]"):
        torch.ops.ddad.l1_discrepancy(t, torch.randn(4, 11))
    with pytest.raises(RuntimeError, match="same dtype, got Float and BFloat16"):
        torch.ops.ddad.l1_discrepancy(t, t.bfloat16())
    with pytest.raises(RuntimeError, match="float32, bfloat16 or float16, got Double"):
        torch.ops.ddad.l1_discrepancy(t.double(), t.double())
    with pytest.raises(RuntimeError, match="float32, bfloat16 or float16, got Long"):
        torch.ops.ddad.l1_discrepancy(t.long(), t.long())
    with pytest.raises(RuntimeError, match="grad must be the gradient of the scalar loss"):
        torch.ops.ddad.l1_discrepancy_backward(torch.ones(2), t, t)
    with pytest.raises(RuntimeError, match="same device"):
        torch.ops.ddad.l1_discrepancy(t, t.to("meta"))
    # the public function (and so torch.compile) reports the same
    with pytest.raises(RuntimeError, match="same shape"):
        l1_ops.l1_discrepancy(t, torch.randn(10, 4))


def test_falls_back_to_eager_with_one_warning():
    script = textwrap.dedent(
        """
        import sys, warnings
        sys.modules["ddad_fast._C"] = None  # as if the extension were not built
        import torch
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            from ddad_fast.ops.l1 import AVAILABLE, l1_discrepancy
            from ddad_fast.losses import l1_discrepancy as eager
            t, s = torch.randn(8, 10), torch.randn(8, 10, requires_grad=True)
            for _ in range(3):
                assert torch.equal(l1_discrepancy(t, s), eager(t, s))
            assert torch.equal(l1_discrepancy(t, s, log1p=True), torch.log1p(eager(t, s)))
        assert not AVAILABLE
        messages = [str(w.message) for w in caught]
        assert len(messages) == 1 and "fall back to the eager reference" in messages[0], messages
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=ROOT)


def _nvcc() -> str | None:
    cuda_home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH") or "/usr/local/cuda"
    candidate = Path(cuda_home) / "bin" / "nvcc"
    return shutil.which("nvcc") or (str(candidate) if candidate.exists() else None)


@pytest.mark.skipif(_nvcc() is None, reason="nvcc is not installed")
def test_cuda_kernel_compiles_with_nvcc(tmp_path):
    kernel = ROOT / "csrc" / "cuda" / "l1_discrepancy_kernel.cu"
    cmd = [_nvcc(), "-c", "-std=c++17", "-O3", "-arch=sm_90", str(kernel), "-o"]
    subprocess.run(cmd + [str(tmp_path / "kernel.o")], check=True, timeout=600)
    assert (tmp_path / "kernel.o").stat().st_size > 0


# CUDA: the same checks on the GPU, where there is one.


@cuda_only
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", LOGITS + MAPS + BIG_MAPS, ids=str)
def test_cuda_matches_eager(shape, dtype):
    assert_matches_eager(*make_pair(shape, dtype, device="cuda"))


@cuda_only
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_cuda_layouts_and_log1p(dtype):
    t, s, t_hi, s_hi = make_pair((8, 13, 33, 17), dtype, device="cuda")
    cl = torch.channels_last
    t_cl, s_cl = t.contiguous(memory_format=cl), s.contiguous(memory_format=cl)
    assert_matches_eager(t_cl, s_cl, t_hi, s_hi)
    assert_matches_eager(t_cl, s, t_hi, s_hi)
    assert_matches_eager(t[..., ::2], s[..., ::2], t_hi[..., ::2], s_hi[..., ::2])
    assert_matches_eager(t, s, t_hi, s_hi, log1p=True)
    flat_t = torch.zeros(t.numel() + 1, dtype=dtype, device="cuda")
    flat_t[1:] = t.reshape(-1)  # unaligned: the scalar (not 16-byte) path
    assert_matches_eager(flat_t[1:].view(t.shape), s, t_hi, s_hi)


@cuda_only
def test_cuda_opcheck_determinism_and_graph_capture():
    t, s, _, _ = make_pair((64, 13, 64, 80), torch.bfloat16, device="cuda")
    torch.library.opcheck(torch.ops.ddad.l1_discrepancy.default, (t.requires_grad_(), s))
    torch.library.opcheck(
        torch.ops.ddad.l1_discrepancy_backward.default,
        (torch.tensor(0.5, device="cuda"), t.detach(), s),
    )
    first = run(l1_ops.l1_discrepancy, t, s)
    for _ in range(3):
        for a, b in zip(run(l1_ops.l1_discrepancy, t, s), first, strict=True):
            assert torch.equal(a, b)
    t = t.detach()
    grad = torch.tensor(0.37, device="cuda")
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up outside the capture
        torch.ops.ddad.l1_discrepancy(t, s)
        torch.ops.ddad.l1_discrepancy_backward(grad, t, s)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        loss = torch.ops.ddad.l1_discrepancy(t, s)
        grad_t, grad_s = torch.ops.ddad.l1_discrepancy_backward(grad, t, s)
    t.copy_(torch.randn_like(t))
    graph.replay()
    ref_loss, ref_gt, ref_gs = run(eager, t, s)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=0)
    eps = torch.finfo(torch.bfloat16).eps
    torch.testing.assert_close(grad_t, ref_gt, rtol=eps, atol=0)
    torch.testing.assert_close(grad_s, ref_gs, rtol=eps, atol=0)


@cuda_only
def test_cuda_device_mismatch_is_an_error():
    with pytest.raises(RuntimeError, match="same device"):
        torch.ops.ddad.l1_discrepancy(torch.randn(4, 10), torch.randn(4, 10, device="cuda"))
