"""Guard rails of the DDAD loop: models that fit together before training, and a rollback when a
loss turns non-finite.

The finiteness check costs no host sync per step: the loop writes each iteration's losses into a
device tensor, and every ``check_every`` iterations reads the new rows once (one small copy to the
host). After a check that finds them finite, the guard snapshots the models and optimisers on the
device (a copy of their weights and state, no host transfer). A non-finite row rolls everything
back to that snapshot; the noise generator is *not* rolled back, so the retry sees new noise.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .errors import ConfigError, DDADError


class NonFiniteLossError(DDADError):
    """A loss stayed non-finite after the allowed number of rollbacks."""


def _clone(obj: Any) -> Any:
    """A deep copy of a (nested) state dict whose tensors are cloned on their own device."""
    if isinstance(obj, Tensor):
        return obj.detach().clone()
    if isinstance(obj, dict):
        return {k: _clone(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_clone(v) for v in obj)
    return obj


def first_non_finite(rows: Tensor) -> int | None:
    """Index of the first row of ``rows`` (n, k) holding a NaN or an infinity, or None."""
    bad = (~torch.isfinite(rows)).any(dim=1).nonzero()
    return int(bad[0, 0]) if len(bad) else None


class LossGuard:
    """Keeps the last verified state of some modules and optimisers; rolls back to it on demand.

    ``save(iteration)`` after a check that passed; ``restore()`` after one that failed returns the
    iteration the snapshot was taken at, or raises NonFiniteLossError once ``max_retries``
    rollbacks in a row did not get past a check.
    """

    def __init__(
        self,
        modules: Sequence[nn.Module],
        optimizers: Sequence[torch.optim.Optimizer],
        max_retries: int,
    ):
        self.modules = list(modules)
        self.optimizers = list(optimizers)
        self.max_retries = max_retries
        self.retries = 0  # rollbacks since the last check that passed
        self.rollbacks = 0  # over the whole run
        self._snapshot: tuple[int, list[dict], list[dict]] | None = None

    def save(self, iteration: int) -> None:
        """Record the current state as good; a passed check also ends a run of retries."""
        self.retries = 0
        self._snapshot = (
            iteration,
            [_clone(m.state_dict()) for m in self.modules],
            [_clone(o.state_dict()) for o in self.optimizers],
        )

    def restore(self, what: str) -> int:
        """Roll back to the last ``save``; ``what`` (the failure and its step) goes in the error."""
        if self._snapshot is None:
            raise RuntimeError("LossGuard.restore() before any save()")
        if self.retries >= self.max_retries:
            raise NonFiniteLossError(
                f"{what}; gave up after {self.retries} rollback(s) to the last good state "
                "(nan_retries). Lower the learning rates, or check the teacher and the data"
            )
        self.retries += 1
        self.rollbacks += 1
        iteration, module_states, optimizer_states = self._snapshot
        for module, state in zip(self.modules, module_states, strict=True):
            module.load_state_dict(state)  # copies into the live tensors
        for opt, state in zip(self.optimizers, optimizer_states, strict=True):
            opt.load_state_dict(_clone(state))  # the optimiser keeps the tensors it is given
        return iteration


@torch.no_grad()
def check_models_fit(
    teacher: nn.Module,
    student: nn.Module,
    generator: nn.Module,
    num_classes: int,
    in_channels: int,
    image_size: int,
    nz: int,
    device: torch.device,
    dense: bool = False,
) -> None:
    """One forward of two generated images through teacher and student, before any training.

    Refuses with a ConfigError naming the mismatch: generated images of another shape than the
    dataset's, a teacher or student that cannot take them (wrong input channels or size), or
    logits whose class count differs from the dataset's or between teacher and student.
    ``dense``: the models must give logit maps (2, classes, image_size, image_size) (segmentation)
    rather than logits (2, classes).
    Runs in eval mode on zero noise: no RNG draw, no BN statistics update.
    """
    modes = [(m, m.training) for m in (teacher, student, generator)]
    for m, _ in modes:
        m.eval()
    try:
        images = generator(torch.zeros(2, nz, device=device))
        want = (in_channels, image_size, image_size)
        if tuple(images.shape[1:]) != want:
            raise ConfigError(
                f"the generator makes {tuple(images.shape[1:])} images but the dataset's are {want}"
            )
        logits = {}
        for role, model in (("teacher", teacher), ("student", student)):
            try:
                out = model(images)
            except RuntimeError as e:
                raise ConfigError(
                    f"the {role} ({type(model).__name__}) cannot take {in_channels}x{image_size}x"
                    f"{image_size} images: {str(e).splitlines()[0]}"
                ) from None
            want_maps = (image_size, image_size) if dense else ()
            if tuple(out.shape[2:]) != want_maps or out.dim() < 2 or out.shape[0] != 2:
                need = (
                    f"logit maps (2, classes, {image_size}, {image_size})"
                    if dense
                    else "logits (2, classes)"
                )
                raise ConfigError(
                    f"the {role} ({type(model).__name__}) gives outputs of shape "
                    f"{tuple(out.shape)} for 2 images; {need} are needed"
                )
            logits[role] = out.shape[1]
        if logits["teacher"] != logits["student"]:
            raise ConfigError(
                f"the teacher gives {logits['teacher']} classes but the student "
                f"{logits['student']}: teacher and student class counts differ"
            )
        if logits["teacher"] != num_classes:
            raise ConfigError(
                f"teacher and student give {logits['teacher']} classes but the dataset has "
                f"{num_classes}"
            )
    finally:
        for m, was_training in modes:
            m.train(was_training)
