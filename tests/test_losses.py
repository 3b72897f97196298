"""The eager reference losses against hand computations, and the BN hooks' lifecycle."""

import pytest
import torch
from torch import nn

from ddad_fast.bn_hooks import BNStatsHooks
from ddad_fast.errors import ConfigError
from ddad_fast.losses import (
    bn_stats_loss,
    center_over_classes,
    l1_discrepancy,
    negative_entropy_loss,
    onehot_loss,
)


def test_bn_stats_loss_matches_hand_computation():
    # Two channels, N=2, 1x2 maps: channel 0 holds 1,3,5,7 and channel 1 holds 2,2,2,2.
    x = torch.tensor([[[[1.0, 3.0]], [[2.0, 2.0]]], [[[5.0, 7.0]], [[2.0, 2.0]]]])
    running_mean = torch.tensor([4.0, 0.0])
    running_var = torch.tensor([1.0, 1.0])
    # means (4, 2); biased variances (5, 0): ||(0, 2)|| + ||(4, -1)|| = 2 + sqrt(17)
    expected = 2.0 + 17.0**0.5
    assert bn_stats_loss(x, running_mean, running_var).item() == pytest.approx(expected, rel=1e-6)


def test_bn_stats_loss_is_zero_at_the_running_statistics():
    x = torch.randn(8, 3, 5, 5, dtype=torch.float64)
    loss = bn_stats_loss(x, x.mean(dim=(0, 2, 3)), x.var(dim=(0, 2, 3), unbiased=False))
    assert loss.item() == pytest.approx(0.0, abs=1e-6)


def test_l1_discrepancy_value_and_gradient():
    t = torch.tensor([[1.0, -2.0], [0.5, 4.0]], requires_grad=True)
    s = torch.tensor([[0.0, 0.0], [1.5, 4.5]], requires_grad=True)
    loss = l1_discrepancy(t, s)
    assert loss.item() == pytest.approx((1 + 2 + 1 + 0.5) / 4)
    loss.backward()
    # d/dt mean|t - s| = sign(t - s) / numel, and the negation for s.
    assert torch.equal(t.grad, torch.tensor([[1.0, -1.0], [-1.0, -1.0]]) / 4)
    assert torch.equal(s.grad, -t.grad)


def test_l1_discrepancy_on_maps_averages_every_pixel():
    t = torch.zeros(2, 3, 4, 5)
    s = torch.ones(2, 3, 4, 5)
    s[0, 0, 0, 0] = 121.0  # contributes 121 instead of 1
    assert l1_discrepancy(t, s).item() == pytest.approx((120 + 120) / 120)


def test_dafl_terms():
    confident = torch.tensor([[10.0, 0.0], [0.0, 10.0]])
    assert onehot_loss(confident).item() < 1e-3
    # a batch spread evenly over 2 classes has entropy log 2 -> negative entropy -log 2
    assert negative_entropy_loss(confident).item() == pytest.approx(-torch.log(torch.tensor(2.0)))
    collapsed = torch.tensor([[10.0, 0.0], [10.0, 0.0]])
    assert negative_entropy_loss(collapsed).item() > -0.01


def test_entropy_term_of_logit_maps_averages_over_pixels():
    # one image whose two pixels are confidently class 0 and class 1: spread evenly, -log 2
    maps = torch.tensor([[10.0, 0.0], [0.0, 10.0]]).reshape(1, 2, 1, 2)
    assert negative_entropy_loss(maps).item() == pytest.approx(-torch.log(torch.tensor(2.0)))
    # channels_last maps give the same value as the (N * H * W, C) logits they hold
    maps = torch.randn(3, 5, 4, 2).to(memory_format=torch.channels_last)
    flat = maps.permute(0, 2, 3, 1).reshape(-1, 5)
    assert negative_entropy_loss(maps).item() == pytest.approx(negative_entropy_loss(flat).item())


def test_centering_removes_each_pixels_mean_over_classes():
    maps = torch.tensor([[1.0, 3.0], [5.0, -1.0]]).reshape(1, 2, 1, 2)  # pixels (1, 5), (3, -1)
    expected = torch.tensor([[-2.0, 2.0], [2.0, -2.0]]).reshape(1, 2, 1, 2)
    torch.testing.assert_close(center_over_classes(maps), expected)
    # a constant per pixel (what softmax ignores) changes nothing, channels_last included
    t = torch.randn(2, 5, 3, 4).to(memory_format=torch.channels_last)
    s = torch.randn(2, 5, 3, 4)
    shifted = t + torch.randn(2, 1, 3, 4)
    torch.testing.assert_close(
        l1_discrepancy(center_over_classes(shifted), center_over_classes(s)),
        l1_discrepancy(center_over_classes(t), center_over_classes(s)),
    )
    assert l1_discrepancy(shifted, s) != l1_discrepancy(t, s)


def _net_with_two_bns():
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.BatchNorm2d(4)
    ).eval()


def test_hooks_sum_every_bn_layer_only_while_capturing():
    net = _net_with_two_bns()
    x = torch.randn(6, 1, 5, 5)
    with BNStatsHooks(net) as hooks:
        assert hooks.num_layers == 2
        net(x)  # before start(): nothing recorded
        with pytest.raises(RuntimeError, match="start"):
            hooks.collect()
        hooks.start()
        net(x)
        total = hooks.collect()
        net(x)  # after collect(): nothing recorded
        with pytest.raises(RuntimeError, match="start"):
            hooks.collect()
    a = net[0](x)
    expected = bn_stats_loss(a, net[1].running_mean, net[1].running_var) + bn_stats_loss(
        net[2](net[1](a)), net[3].running_mean, net[3].running_var
    )
    assert total.item() == pytest.approx(expected.item(), rel=1e-5)


def test_hooks_are_removed_after_use():
    net = _net_with_two_bns()
    with BNStatsHooks(net):
        assert all(len(m._forward_hooks) == 1 for m in net if isinstance(m, nn.BatchNorm2d))
    assert all(len(m._forward_hooks) == 0 for m in net)


def test_hooks_gradient_reaches_the_input():
    net = _net_with_two_bns()
    x = torch.randn(4, 1, 5, 5, requires_grad=True)
    with BNStatsHooks(net) as hooks:
        hooks.start()
        net(x)
        hooks.collect().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_teacher_without_batchnorm_is_refused():
    with pytest.raises(ConfigError, match="no BatchNorm2d"):
        BNStatsHooks(nn.Sequential(nn.Conv2d(3, 3, 1), nn.ReLU()))
