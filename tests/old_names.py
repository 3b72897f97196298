"""The check shared by models that took a reference's state_dict names: a state_dict in the names
they had before still loads and gives the same outputs."""

import torch
from torch import Tensor, nn

from ddad_fast.checkpoint import load_state_strict


def assert_old_names_load(old: nn.Module, make_new, loader: str, x: Tensor) -> nn.Module:
    """``old``: the model as it was before the rename; ``make_new()``: the model now. ``old``'s
    state (running statistics and weights moved away from their initial values) loads by
    ``loader`` ("load_state_dict" or "load_state_strict") into ``make_new()``, and into a wrapper
    (a prefix on every key), leaving the caller's dict as it was; both give ``old``'s outputs on
    the input ``x`` in train and eval mode. Returns the loaded model, in eval mode."""
    old.train()(x)
    for p in old.parameters():
        p.data.add_(0.1 * torch.randn_like(p))
    old_state = old.state_dict()
    new = make_new()
    if loader == "load_state_dict":
        new.load_state_dict(old_state)
    else:
        load_state_strict(new, old_state, "old.pt")
    assert set(old_state) == set(old.state_dict())
    for mode in ("train", "eval"):
        getattr(old, mode)(), getattr(new, mode)()
        assert torch.equal(_seeded(new, x), _seeded(old, x))
    wrapper = nn.Sequential(make_new()).eval()
    wrapper.load_state_dict({f"0.{k}": v for k, v in old_state.items()})
    assert torch.equal(wrapper(x), old(x))
    return new


def _seeded(model: nn.Module, x: Tensor) -> Tensor:
    """model(x) after the same seed each time: the same dropout masks in train mode."""
    torch.manual_seed(1)
    return model(x)


def assert_same_initialisation(make_old, make_new) -> None:
    """From one seed, ``make_new()`` draws the weights ``make_old()`` drew, under the new names,
    and ``upgrade_state_dict`` gives a state_dict already in the new names back as it is."""
    torch.manual_seed(3)
    old = make_old().state_dict()
    torch.manual_seed(3)
    new = make_new()
    renamed = new.upgrade_state_dict(old)
    assert list(renamed) != list(old) and set(renamed) == set(new.state_dict())
    assert all(torch.equal(new.state_dict()[k], v) for k, v in renamed.items())
    assert list(new.upgrade_state_dict(new.state_dict())) == list(new.state_dict())


def assert_state_dict_layout(model: nn.Module, expected: dict[str, tuple[int, ...]]) -> None:
    """``model``'s state_dict has exactly ``expected``'s keys, in its order, with its shapes."""
    state = model.state_dict()
    assert list(state) == list(expected)
    assert {k: tuple(v.shape) for k, v in state.items()} == expected
