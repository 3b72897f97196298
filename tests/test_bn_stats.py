"""ddad::bn_stats_loss against the eager reference: values and every gradient over a sweep of
shapes, memory formats and dtypes; opcheck; torch.compile; the BN hooks; the fallbacks; CUDA
when present.

The Triton kernels under TRITON_INTERPRET=1 are tested in test_bn_stats_interpret.py.
"""

import subprocess
import sys

import pytest
import torch
from torch import nn

from ddad_fast import losses
from ddad_fast.bn_hooks import BNStatsHooks
from ddad_fast.ops import bn_stats as bn_ops
from ddad_fast.ops.bn_stats import bn_stats_loss, fused_available

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
CPU_KERNELS = pytest.mark.skipif(
    not fused_available("cpu"), reason="ddad_fast._C (the CPU kernels) is not built"
)

# (N, C, H, W): C = 3, 63, 64, 512; maps 1x1, 7x7, 32x32; batch 1 and 256 (256 only with small
# maps or few channels, to keep the file fast on 2 CPU cores).
SHAPES = [(1, c, s, s) for c in (3, 63, 64, 512) for s in (1, 7, 32)] + [
    (256, 3, 1, 1),
    (256, 63, 1, 1),
    (256, 512, 1, 1),
    (256, 3, 7, 7),
    (256, 64, 7, 7),
    (256, 3, 32, 32),
]
LAYOUTS = ["nchw", "channels_last", "strided"]


def make_input(shape, layout, dtype=torch.float32, device="cpu", seed=0):
    """x of `shape` in `layout` (strided: a non-contiguous view, every other element along W of a
    bigger buffer), mean far from 0 so that a naive E[x^2] - E[x]^2 would cancel; running_mean,
    running_var (C,)."""
    g = torch.Generator().manual_seed(seed)
    n, c, h, w = shape
    x = torch.randn(shape, generator=g) * (1 + torch.rand(1, c, 1, 1, generator=g))
    x = (x + 4 * torch.randn(1, c, 1, 1, generator=g)).to(device=device, dtype=dtype)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    elif layout == "strided":
        buffer = torch.zeros(n, c, h, 2 * w, device=device, dtype=dtype)
        buffer[..., ::2] = x
        x = buffer[..., ::2]
    running_mean = torch.randn(c, generator=g).to(device)
    running_var = (torch.rand(c, generator=g) + 0.5).to(device)
    return x, running_mean, running_var


def fp64_reference(x, running_mean, running_var):
    """The loss in fp64 of x's (already rounded) values: the oracle for low-precision inputs."""
    x = x.double()
    var, mean = torch.var_mean(x, dim=(0, 2, 3), correction=0)
    return torch.linalg.vector_norm(mean - running_mean.double()) + torch.linalg.vector_norm(
        var - running_var.double()
    )


def value_and_grads(fn, x, running_mean, running_var, grad_scale=1.7):
    """fn's loss and the gradients of grad_scale * loss for x, running_mean and running_var."""
    x = x.detach().requires_grad_()
    rm = running_mean.detach().requires_grad_()
    rv = running_var.detach().requires_grad_()
    loss = fn(x, rm, rv)
    grads = torch.autograd.grad(grad_scale * loss, (x, rm, rv))
    return loss.detach(), grads


def assert_close_scaled(actual, expected, rtol):
    """Every element within rtol of the largest magnitude of `expected` (gradients of a norm are
    spread over many small elements; a relative check per element would test rounding noise)."""
    scale = expected.abs().max().item() + 1e-30
    err = (actual.double() - expected.double()).abs().max().item()
    assert err <= rtol * scale, f"max error {err:.3g} > {rtol:.1g} * {scale:.3g}"


@CPU_KERNELS
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_fp32_matches_eager(shape, layout):
    x, rm, rv = make_input(shape, layout)
    loss, grads = value_and_grads(bn_stats_loss, x, rm, rv)
    ref_loss, ref_grads = value_and_grads(losses.bn_stats_loss, x, rm, rv)
    assert loss.dtype == torch.float32 and loss.shape == ()
    torch.testing.assert_close(loss, ref_loss, rtol=2e-5, atol=1e-5)
    for g, ref_g in zip(grads, ref_grads, strict=True):
        assert g.dtype == ref_g.dtype
        assert_close_scaled(g, ref_g, rtol=2e-5)
    if layout != "strided":  # dx keeps x's memory format
        assert grads[0].stride() == x.stride()


LOW_PRECISION_SHAPES = [(1, 3, 32, 32), (1, 63, 7, 7), (1, 512, 1, 1), (256, 64, 7, 7)]


@CPU_KERNELS
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", LOW_PRECISION_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_low_precision_no_worse_than_twice_eager(shape, layout, dtype):
    x, rm, rv = make_input(shape, layout, dtype)
    loss, grads = value_and_grads(bn_stats_loss, x, rm, rv)
    eager_loss, eager_grads = value_and_grads(losses.bn_stats_loss, x, rm, rv)
    exact_loss, exact_grads = value_and_grads(fp64_reference, x.double(), rm.double(), rv.double())
    assert loss.dtype == torch.float32 and grads[0].dtype == dtype
    # Floors: an fp32 rounding of the loss; a rounding of the gradient in x's dtype.
    floor = 4e-7 * exact_loss.abs().item()
    assert (loss - exact_loss).abs().item() <= 2 * (eager_loss - exact_loss).abs().item() + floor
    for g, eager_g, exact_g in zip(grads, eager_grads, exact_grads, strict=True):
        floor = torch.finfo(g.dtype).eps * exact_g.abs().max().item()
        err = (g.double() - exact_g).abs().max().item()
        assert err <= 2 * (eager_g.double() - exact_g).abs().max().item() + floor


@CPU_KERNELS
def test_permuted_and_sliced_channels():
    """Layouts neither NCHW nor channels_last: N innermost, every other channel, and one sample
    expanded over the batch (stride 0 along N; dx is dense, so x and dx walk with other steps)."""
    x, rm, rv = make_input((5, 6, 4, 3), "nchw")
    permuted = x.permute(1, 2, 3, 0).contiguous().permute(3, 0, 1, 2)  # strides (1, 60, 15, 5)
    every_other = torch.cat([x, x + 1], dim=1)[:, ::2]
    expanded_1x1 = x[:1, :, :1, :1].expand(8, 6, 1, 1)  # strides (0, 12, 3, 1)
    expanded = x[:1].expand(8, 6, 4, 3)
    for xs in (permuted, every_other, expanded_1x1, expanded):
        loss, grads = value_and_grads(bn_stats_loss, xs, rm, rv)
        ref_loss, ref_grads = value_and_grads(losses.bn_stats_loss, xs, rm, rv)
        torch.testing.assert_close(loss, ref_loss, rtol=2e-5, atol=1e-5)
        assert_close_scaled(grads[0], ref_grads[0], rtol=2e-5)


@CPU_KERNELS
def test_matches_at_zero_distance_without_nans():
    """Constant channels at their running statistics: loss 0 and zero (not NaN) gradients, as
    torch's norm backward gives."""
    x = torch.arange(4.0).view(1, 4, 1, 1).expand(3, 4, 5, 5).contiguous()
    rm, rv = torch.arange(4.0), torch.zeros(4)
    loss, grads = value_and_grads(bn_stats_loss, x, rm, rv)
    ref_loss, ref_grads = value_and_grads(losses.bn_stats_loss, x, rm, rv)
    assert loss.item() == ref_loss.item() == 0.0
    for g, ref_g in zip(grads, ref_grads, strict=True):
        assert torch.equal(g, ref_g) and not g.isnan().any()


@CPU_KERNELS
def test_runs_the_cpu_kernel_and_is_deterministic():
    x, rm, rv = make_input((64, 64, 7, 7), "nchw")
    loss = bn_stats_loss(x, rm, rv)
    assert torch.equal(loss, torch.ops.ddad.bn_stats_forward_cpu(x, rm, rv)[0])
    assert torch.equal(loss, bn_stats_loss(x, rm, rv))


@CPU_KERNELS
@pytest.mark.parametrize("layout", LAYOUTS)
def test_two_threads_match_eager(layout, two_threads):
    # the suite runs single-threaded; this runs the kernels' parallel splits
    x, rm, rv = make_input((256, 63, 7, 7), layout)
    loss, grads = value_and_grads(bn_stats_loss, x, rm, rv)
    ref_loss, ref_grads = value_and_grads(losses.bn_stats_loss, x, rm, rv)
    torch.testing.assert_close(loss, ref_loss, rtol=2e-5, atol=1e-5)
    for g, ref_g in zip(grads, ref_grads, strict=True):
        assert_close_scaled(g, ref_g, rtol=2e-5)


def test_op_outputs_and_which_are_differentiable():
    x, rm, rv = make_input((4, 5, 3, 3), "nchw")
    loss, mean, var, dist = torch.ops.ddad.bn_stats_loss(x.requires_grad_(), rm, rv)
    ref_var, ref_mean = torch.var_mean(x.detach(), dim=(0, 2, 3), correction=0)
    torch.testing.assert_close(mean, ref_mean)
    torch.testing.assert_close(var, ref_var)
    torch.testing.assert_close(dist.sum(), loss)
    assert loss.requires_grad
    assert not (mean.requires_grad or var.requires_grad or dist.requires_grad)


@pytest.mark.parametrize(
    "bad, match",
    [
        ((torch.randn(2, 3, 4), torch.zeros(3), torch.ones(3)), "N, C, H, W"),
        ((torch.randn(2, 3, 4, 4), torch.zeros(4), torch.ones(3)), "shape \\(C,\\)"),
        ((torch.ones(2, 3, 4, 4, dtype=torch.int32), torch.zeros(3), torch.ones(3)), "floating"),
        ((torch.randn(2, 3, 4, 4), torch.zeros(3, dtype=torch.int64), torch.ones(3)), "floating"),
        ((torch.randn(2, 3, 4, 4), torch.zeros(3, device="meta"), torch.ones(3)), "device"),
    ],
)
def test_bad_inputs_are_explained(bad, match):
    with pytest.raises(RuntimeError, match=match):
        torch.ops.ddad.bn_stats_loss(*bad)


OPCHECK_CASES = [
    ((3, 5, 4, 4), "nchw", torch.float32),
    ((3, 5, 4, 4), "channels_last", torch.float32),
    ((2, 4, 3, 3), "strided", torch.float32),
    ((2, 4, 1, 1), "nchw", torch.bfloat16),
]


@pytest.mark.parametrize("shape, layout, dtype", OPCHECK_CASES)
def test_opcheck(shape, layout, dtype):
    x, rm, rv = make_input(shape, layout, dtype)
    torch.library.opcheck(torch.ops.ddad.bn_stats_loss.default, (x.requires_grad_(), rm, rv))
    torch.library.opcheck(
        torch.ops.ddad.bn_stats_loss.default,
        (x.detach(), rm.requires_grad_(), rv.requires_grad_()),
    )
    _, mean, var, dist = torch.ops.ddad.bn_stats_loss(x.detach(), rm.detach(), rv.detach())
    torch.library.opcheck(
        torch.ops.ddad.bn_stats_loss_backward.default,
        (torch.tensor(0.7), x.detach(), mean, var, dist, rm.detach(), rv.detach()),
    )


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_torch_compile_fullgraph(layout):
    torch._dynamo.reset()
    x, rm, rv = make_input((4, 6, 5, 5), layout)
    compiled = torch.compile(bn_stats_loss, fullgraph=True)
    loss, grads = value_and_grads(compiled, x, rm, rv)
    ref_loss, ref_grads = value_and_grads(losses.bn_stats_loss, x, rm, rv)
    torch.testing.assert_close(loss, ref_loss, rtol=2e-5, atol=1e-5)
    for g, ref_g in zip(grads, ref_grads, strict=True):
        assert_close_scaled(g, ref_g, rtol=2e-5)


@CPU_KERNELS
def test_a_bn_layer_in_train_mode_run_twice_before_backward():
    """Its second forward updates the running statistics in place (no version bump): the first
    term's gradient is still that of the statistics it saw, as in the eager reference."""
    grads = []
    for layer_loss in (losses.bn_stats_loss, bn_stats_loss):
        torch.manual_seed(0)
        bn = nn.BatchNorm2d(4).train()
        x = torch.randn(8, 4, 5, 5, requires_grad=True)
        with BNStatsHooks(bn, layer_loss=layer_loss) as hooks:
            hooks.start()
            bn(x)
            bn(2 * x + 1)
            total = hooks.collect()
        grads.append(torch.autograd.grad(total, x)[0])
    assert_close_scaled(grads[1], grads[0], rtol=1e-4)


def test_drop_in_for_the_teacher_hooks():
    """BNStatsHooks with the fused layer loss: same total and same generator gradients."""
    torch.manual_seed(0)
    teacher = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 5, 3),
        nn.BatchNorm2d(5),
    )  # fmt: skip
    for bn in (teacher[1], teacher[4]):
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
    teacher.eval()
    images = torch.randn(6, 3, 8, 8, requires_grad=True)
    results = []
    for layer_loss in (losses.bn_stats_loss, bn_stats_loss):
        with BNStatsHooks(teacher, layer_loss=layer_loss) as hooks:
            hooks.start()
            teacher(images)
            total = hooks.collect()
        results.append((total.detach(), torch.autograd.grad(total, images)[0]))
    (fused_total, fused_grad), (ref_total, ref_grad) = results[1], results[0]
    torch.testing.assert_close(fused_total, ref_total, rtol=2e-5, atol=1e-5)
    assert_close_scaled(fused_grad, ref_grad, rtol=1e-4)


def test_falls_back_to_the_eager_reference(monkeypatch):
    monkeypatch.setattr(bn_ops, "_CPU_KERNELS", False)
    assert not fused_available("cpu")
    x, rm, rv = make_input((2, 3, 4, 4), "nchw")
    assert torch.equal(bn_stats_loss(x, rm, rv), losses.bn_stats_loss(x, rm, rv))
    # The op itself stays correct through its composite implementation.
    torch.testing.assert_close(
        torch.ops.ddad.bn_stats_loss(x, rm, rv)[0], losses.bn_stats_loss(x, rm, rv)
    )
    loss, grads = value_and_grads(lambda *a: torch.ops.ddad.bn_stats_loss(*a)[0], x, rm, rv)
    _, ref_grads = value_and_grads(losses.bn_stats_loss, x, rm, rv)
    for g, ref_g in zip(grads, ref_grads, strict=True):
        assert_close_scaled(g, ref_g, rtol=2e-5)


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-W", "always", "-c", code], capture_output=True, text=True, timeout=300
    )


CHECK = """
import torch
from ddad_fast import losses
from ddad_fast.ops import bn_stats as ops
x = torch.randn(3, 4, 5, 5, requires_grad=True)
rm, rv = torch.randn(4), torch.rand(4)
loss = ops.bn_stats_loss(x, rm, rv)
ref = losses.bn_stats_loss(x, rm, rv)
assert torch.allclose(loss, ref, rtol=1e-5), (loss, ref)
gx, = torch.autograd.grad(loss, x)
rx, = torch.autograd.grad(ref, x)
assert torch.allclose(gx, rx, rtol=1e-4, atol=1e-7)
print("fused", ops.fused_available("cpu"), "triton", ops._triton_kernels is not None)
"""


@CPU_KERNELS
def test_works_without_triton():
    result = run_python("import sys; sys.modules['triton'] = None\n" + CHECK)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "fused True triton False" in result.stdout


def test_works_without_the_extension_and_says_so_once():
    result = run_python("import sys; sys.modules['ddad_fast._C'] = None\n" + CHECK)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "fused False" in result.stdout
    assert result.stderr.count("ddad_fast._C is not built") == 1


# ---- CUDA (Triton kernels) ------------------------------------------------------------------

CUDA_SHAPES = [(256, 64, 32, 32), (256, 512, 4, 4), (1, 3, 32, 32), (256, 3, 32, 32), (2, 63, 7, 7)]


@CUDA
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", CUDA_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_cuda_fp32_matches_eager(shape, layout):
    x, rm, rv = make_input(shape, layout, device="cuda")
    loss, grads = value_and_grads(bn_stats_loss, x, rm, rv)
    ref_loss, ref_grads = value_and_grads(losses.bn_stats_loss, x, rm, rv)
    exact = fp64_reference(x, rm, rv)
    # fp32 accumulation on both sides: within a few fp32 roundings of the fp64 value.
    assert (loss.double() - exact).abs().item() <= 2 * (ref_loss.double() - exact).abs().item() + (
        1e-5 * exact.abs().item()
    )
    for g, ref_g in zip(grads, ref_grads, strict=True):
        assert_close_scaled(g, ref_g, rtol=1e-4)
    assert grads[0].stride() == x.stride() or layout == "strided"


@CUDA
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_cuda_low_precision_no_worse_than_twice_eager(layout, dtype):
    x, rm, rv = make_input((256, 64, 16, 16), layout, dtype, device="cuda")
    loss, grads = value_and_grads(bn_stats_loss, x, rm, rv)
    eager_loss, eager_grads = value_and_grads(losses.bn_stats_loss, x, rm, rv)
    exact_loss, exact_grads = value_and_grads(fp64_reference, x.double(), rm.double(), rv.double())
    floor = 1e-5 * exact_loss.abs().item()
    assert (loss - exact_loss).abs().item() <= 2 * (eager_loss - exact_loss).abs().item() + floor
    # x's gradient (the one training uses) within twice eager's error plus one ulp of its largest
    # element. The fp32 gradients for the running statistics (buffers in training) come from a
    # mean and variance summed over 65536 values per channel in another order than eager's:
    # measured on an H200, 4.3-5.9 fp32 ulps of the largest element where eager is 1.1-1.8, so
    # those are allowed 8 ulps.
    for g, eager_g, exact_g, ulps in zip(grads, eager_grads, exact_grads, (1, 8, 8), strict=True):
        floor = ulps * torch.finfo(g.dtype).eps * exact_g.abs().max().item()
        err = (g.double() - exact_g).abs().max().item()
        assert err <= 2 * (eager_g.double() - exact_g).abs().max().item() + floor


@CUDA
def test_cuda_opcheck_and_compile():
    x, rm, rv = make_input((8, 16, 8, 8), "channels_last", device="cuda")
    torch.library.opcheck(torch.ops.ddad.bn_stats_loss.default, (x.requires_grad_(), rm, rv))
    torch._dynamo.reset()
    compiled = torch.compile(bn_stats_loss, fullgraph=True)
    loss, grads = value_and_grads(compiled, x, rm, rv)
    ref_loss, ref_grads = value_and_grads(losses.bn_stats_loss, x, rm, rv)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-4, atol=1e-5)
    assert_close_scaled(grads[0], ref_grads[0], rtol=1e-4)


def test_cuda_path_traces_into_the_triton_kernels(monkeypatch):
    """Without a GPU: the graph torch.compile's AOT stage makes of the op on (fake) CUDA tensors
    holds the Triton kernels themselves, two for the forward and one for the backward."""
    kernels = pytest.importorskip("ddad_fast.kernels.bn_stats")
    from functorch.compile import aot_function
    from torch._subclasses.fake_tensor import FakeTensorMode

    monkeypatch.setattr(kernels, "_num_sms", lambda index: 132)
    graphs = []

    class Captured(Exception):
        pass

    def capture(gm, example_inputs):
        graphs.append(gm.code)
        raise Captured  # the graph is all we want; fake CUDA tensors cannot run here

    def forward_and_backward(x, rm, rv, grad):
        _, mean, var, dist = torch.ops.ddad.bn_stats_loss(x, rm, rv)
        return torch.ops.ddad.bn_stats_loss_backward(grad, x, mean, var, dist, rm, rv)

    with FakeTensorMode():
        x = torch.empty_strided((8, 16, 8, 8), (1024, 1, 128, 16), device="cuda")  # NHWC
        rm, rv = torch.empty(16, device="cuda"), torch.empty(16, device="cuda")
        with pytest.raises(Captured):
            grad = torch.empty((), device="cuda")
            aot_function(forward_and_backward, fw_compiler=capture)(x, rm, rv, grad)
    (code,) = graphs
    assert code.count("triton_kernel_wrapper_functional(") == 3
    assert "ddad.bn_stats" not in code  # decomposed into the kernels, not an opaque op
