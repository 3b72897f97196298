"""An optimiser state saved by one backend (fused, channels_last) resumes under another (plain,
NCHW) as if the run had never stopped."""

import pytest
import torch
from torch import nn

from ddad_fast.optimizers import load_optimizer_state, make_optimizer


def conv(memory_format):
    torch.manual_seed(0)
    return nn.Conv2d(3, 8, 3).to(memory_format=memory_format)


def step(model, opt, seed):
    torch.manual_seed(seed)
    opt.zero_grad()
    model(torch.randn(4, 3, 9, 9).to(memory_format=torch.channels_last)).square().mean().backward()
    opt.step()


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_a_fused_channels_last_state_resumes_in_a_plain_nchw_optimizer(name):
    settings = {"lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4}
    saver = conv(torch.channels_last)
    opt = make_optimizer(name, saver.parameters(), fused=True, **settings)
    for seed in (1, 2):
        step(saver, opt, seed)
    state = opt.state_dict()

    resumed = conv(torch.contiguous_format)
    resumed.load_state_dict(saver.state_dict())
    resumed_opt = make_optimizer(name, resumed.parameters(), fused=None, **settings)
    load_optimizer_state(resumed_opt, state)
    assert resumed_opt.param_groups[0]["fused"] is None  # its own implementation, not the saver's
    for param in resumed.parameters():
        for value in resumed_opt.state[param].values():
            if value.shape == param.shape:
                assert value.stride() == param.stride()

    # the next step equals the one an unbroken run takes (itself in NCHW, not fused)
    reference = conv(torch.contiguous_format)
    reference_opt = make_optimizer(name, reference.parameters(), **settings)
    for seed in (1, 2, 3):
        step(reference, reference_opt, seed)
    step(resumed, resumed_opt, 3)
    for got, want in zip(resumed.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
