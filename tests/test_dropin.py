"""Drop-ins for existing scripts: same inputs and values as the eager code they replace."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import ddad_fast
from ddad_fast.cli import build_parser


def test_l1_discrepancy_equals_dfad_l1_loss():
    t, s = torch.randn(16, 10), torch.randn(16, 10)
    assert ddad_fast.l1_discrepancy(t, s).item() == pytest.approx(F.l1_loss(s, t).item(), rel=1e-6)


@pytest.mark.parametrize(
    ("t_shape", "s_shape", "t_dtype", "s_dtype"),
    [
        ((16, 10), (16, 10), torch.float64, torch.float64),
        ((2, 3, 7, 7), (2, 3, 7, 7), torch.float32, torch.float64),
        ((16, 10), (10,), torch.float32, torch.float32),
        ((16, 1), (16, 10), torch.float64, torch.float32),
        ((5, 10), (5, 10), torch.float32, torch.bfloat16),
        ((5, 10), (5, 10), torch.float16, torch.float32),
    ],
)
@pytest.mark.filterwarnings("ignore:Using a target size:UserWarning")
def test_l1_discrepancy_is_l1_loss_for_float64_broadcasting_and_mixed_dtypes(
    t_shape, s_shape, t_dtype, s_dtype
):
    t = torch.randn(t_shape, dtype=t_dtype, requires_grad=True)
    s = torch.randn(s_shape, dtype=s_dtype, requires_grad=True)
    ours = ddad_fast.l1_discrepancy(t, s)
    ours_t, ours_s = torch.autograd.grad(ours, (t, s))
    ref = F.l1_loss(s, t)
    ref_t, ref_s = torch.autograd.grad(ref, (t, s))
    low = torch.bfloat16 in (t_dtype, s_dtype) or torch.float16 in (t_dtype, s_dtype)
    tol = {"rtol": 1e-2, "atol": 1e-3} if low else {"rtol": 1e-12, "atol": 1e-15}
    if not low:  # F.l1_loss itself: the same dtype and value
        assert ours.dtype == ref.dtype
    torch.testing.assert_close(ours.to(ref.dtype), ref, **tol)
    for mine, theirs in ((ours_t, ref_t), (ours_s, ref_s)):
        assert mine.dtype == theirs.dtype and mine.shape == theirs.shape
        torch.testing.assert_close(mine, theirs, **tol)


def test_deepinversion_hook_equals_the_original_formula():
    bn = nn.BatchNorm2d(5).eval()
    bn.running_mean.uniform_(-1, 1)
    bn.running_var.uniform_(0.5, 2)
    x = torch.randn(8, 5, 6, 6)
    hook = ddad_fast.DeepInversionFeatureHook(bn)
    bn(x)
    # DeepInversion's hook_fn, written out
    mean = x.mean([0, 2, 3])
    var = x.permute(1, 0, 2, 3).contiguous().view(5, -1).var(1, unbiased=False)
    expected = torch.norm(bn.running_var - var, 2) + torch.norm(bn.running_mean - mean, 2)
    assert hook.r_feature.item() == pytest.approx(expected.item(), rel=1e-5)
    hook.close()
    assert len(bn._forward_hooks) == 0


def test_distill_accepts_the_dfad_flag_names():
    args = build_parser().parse_args(
        ["distill", "--batch_size", "64", "--lr_S", "0.2", "--lr_G", "1e-4", "--epoch_itrs", "7"]
    )
    assert (args.batch_size, args.lr_student, args.lr_generator, args.epoch_iters) == (
        64,
        0.2,
        1e-4,
        7,
    )
