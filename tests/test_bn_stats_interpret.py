"""The Triton kernels of ddad::bn_stats_loss on CPU tensors, under TRITON_INTERPRET=1.

Triton decides at ``import triton`` / ``@triton.jit`` time whether to interpret, and pytest imports
every test module (test_bn_stats.py imports the kernels) before running any test. So the only test
that runs in the normal session, ``test_kernels_under_the_interpreter``, runs this file again in a
fresh interpreter with TRITON_INTERPRET=1 set; there, the kernel tests below run (and that one is
skipped). Shapes are small: the interpreter is slow.
"""

import os
import subprocess
import sys

import pytest
import torch

INTERPRETING = os.environ.get("TRITON_INTERPRET") == "1"
interpreted = pytest.mark.skipif(
    not INTERPRETING, reason="run by test_kernels_under_the_interpreter (TRITON_INTERPRET=1)"
)


@pytest.mark.skipif(INTERPRETING, reason="this is the interpreter run")
def test_kernels_under_the_interpreter():
    pytest.importorskip("triton")
    pytest_args = ["-o", "addopts=", "-q", "-p", "no:cacheprovider", __file__]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", *pytest_args],
        env={**os.environ, "TRITON_INTERPRET": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    # Everything ran there but this test (nothing skipped for want of triton or the interpreter).
    assert " passed, 1 skipped in " in result.stdout, result.stdout[-2000:]


@pytest.fixture(scope="module")
def kernels():
    interpreter = pytest.importorskip("triton.runtime.interpreter")
    from ddad_fast.kernels import bn_stats

    assert isinstance(bn_stats._bn_stats_partial_kernel, interpreter.InterpretedFunction), (
        "triton was imported before TRITON_INTERPRET=1 was set"
    )
    return bn_stats


def make_input(shape, layout, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    n, c, h, w = shape
    x = torch.randn(shape, generator=g) * (1 + torch.rand(1, c, 1, 1, generator=g))
    x = (x + 3 * torch.randn(1, c, 1, 1, generator=g)).to(dtype)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    elif layout == "strided_h":  # rows every other H: H and W cannot fold into one dimension
        buffer = torch.zeros(n, c, 2 * h, w, dtype=dtype)
        buffer[:, :, ::2] = x
        x = buffer[:, :, ::2]
    return x, torch.randn(c, generator=g), torch.rand(c, generator=g) + 0.5


def exact(x, running_mean, running_var, grad):
    """fp64 loss, mean, var and dx (for a gradient `grad` of the loss) of x's values."""
    x64 = x.double().requires_grad_()
    var, mean = torch.var_mean(x64, dim=(0, 2, 3), correction=0)
    loss = torch.linalg.vector_norm(mean - running_mean.double()) + torch.linalg.vector_norm(
        var - running_var.double()
    )
    (dx,) = torch.autograd.grad(grad * loss, x64)
    return loss.detach(), mean.detach(), var.detach(), dx


# (N, C, H, W): C 3, 63, 64; 1x1, 7x7, 32x32 and 64x64 maps; batch 1 to 16.
SHAPES = [(2, 3, 5, 5), (4, 63, 7, 7), (3, 64, 1, 1), (1, 3, 32, 32), (16, 5, 3, 3), (1, 2, 64, 64)]


@interpreted
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("layout", ["nchw", "channels_last", "strided_h"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_forward_and_backward_kernels(kernels, shape, layout, dtype):
    x, rm, rv = make_input(shape, layout, dtype)
    loss, mean, var, dist = kernels.bn_stats_forward(x, rm, rv)
    grad = torch.tensor(1.3)
    dx = kernels.bn_stats_backward(grad, x, mean, var, dist, rm, rv)
    ref_loss, ref_mean, ref_var, ref_dx = exact(x, rm, rv, 1.3)
    # Statistics from fp32 sums of x's (rounded) values: fp32-tight whatever x's dtype.
    rtol = 2e-5
    assert abs(loss.item() - ref_loss.item()) <= rtol * ref_loss.item()
    torch.testing.assert_close(mean.double(), ref_mean, rtol=rtol, atol=rtol * ref_mean.abs().max())
    torch.testing.assert_close(var.double(), ref_var, rtol=rtol, atol=rtol * ref_var.abs().max())
    torch.testing.assert_close(dist.sum(), loss)
    # dx: fp32 arithmetic, then one rounding to x's dtype.
    assert dx.dtype == x.dtype and dx.shape == x.shape
    if layout != "strided_h":
        assert dx.stride() == x.stride()
    err = (dx.double() - ref_dx).abs().max().item()
    assert err <= (torch.finfo(dtype).eps + 1e-5) * ref_dx.abs().max().item()


@interpreted
def test_split_over_n_and_l_matches_one_program(kernels, monkeypatch):
    """Forward partial slices over N and over L, and backward slices, give the statistics and the
    dx of the fp64 reference within fp32 rounding, as one program does (each compared with the
    reference: the two sum in other orders). Small shapes: the splits are forced."""
    x, rm, rv = make_input((3, 4, 64, 64), "nchw", torch.float32)
    grad = torch.tensor(0.9)
    monkeypatch.setattr(kernels, "MIN_TILES_PER_SLICE", 1)
    monkeypatch.setattr(kernels, "TILES_PER_PROGRAM", 1)
    split_o, split_l, _, _ = kernels._split(3, 64 * 64, 1024, kernels._programs_wanted(x.device))
    assert split_o > 1 and split_l > 1
    split = kernels.bn_stats_forward(x, rm, rv)
    split_dx = kernels.bn_stats_backward(grad, x, *split[1:], rm, rv)
    monkeypatch.setattr(kernels, "_programs_wanted", lambda device: 1)
    monkeypatch.setattr(kernels, "TILES_PER_PROGRAM", 1 << 30)
    single = kernels.bn_stats_forward(x, rm, rv)
    single_dx = kernels.bn_stats_backward(grad, x, *single[1:], rm, rv)
    ref_loss, ref_mean, ref_var, ref_dx = exact(x, rm, rv, 0.9)
    for (loss, mean, var, _), dx in ((split, split_dx), (single, single_dx)):
        torch.testing.assert_close(loss.double(), ref_loss, rtol=2e-5, atol=0)
        torch.testing.assert_close(mean.double(), ref_mean, rtol=2e-5, atol=1e-5)
        torch.testing.assert_close(var.double(), ref_var, rtol=3e-5, atol=0)
        assert (dx.double() - ref_dx).abs().max() <= 1e-4 * ref_dx.abs().max()


@interpreted
def test_zero_distance_gives_zero_gradient(kernels):
    x = torch.arange(3.0).view(1, 3, 1, 1).expand(2, 3, 4, 4).contiguous()
    loss, mean, var, dist = kernels.bn_stats_forward(x, torch.arange(3.0), torch.zeros(3))
    assert loss.item() == 0.0 and dist.tolist() == [0.0, 0.0]
    dx = kernels.bn_stats_backward(torch.tensor(1.0), x, mean, var, dist, mean, var)
    assert torch.equal(dx, torch.zeros_like(x))
