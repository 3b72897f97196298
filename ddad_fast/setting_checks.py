"""Checks the settings dataclasses (``DistillConfig``, ``TeacherConfig``) share: ranges, finite
floats, image sizes and the device, each refused with a ConfigError naming the setting."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch

from .distributed import resolve_device
from .errors import ConfigError


def check_at_least(cfg: Any, minimum: int, *names: str) -> None:
    """Refuse any of the settings ``names`` of ``cfg`` below ``minimum``."""
    for name in names:
        if getattr(cfg, name) < minimum:
            raise ConfigError(f"{name} must be at least {minimum}, got {getattr(cfg, name)}")


def check_non_negative(cfg: Any, *names: str) -> None:
    """Refuse any of the settings ``names`` of ``cfg`` below 0."""
    for name in names:
        if getattr(cfg, name) < 0:
            raise ConfigError(f"{name} must be non-negative, got {getattr(cfg, name)}")


def check_finite(cfg: Any) -> None:
    """Refuse a float setting of the dataclass ``cfg`` that is nan or infinite (``--lr inf``
    parses as a float, and a nan passes every comparison), and an integer one beyond 64 bits
    (torch takes none: ``--seed 10**23`` would end in an overflow deep inside it)."""
    for field in dataclasses.fields(cfg):
        value = getattr(cfg, field.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{field.name} must be a finite number, got {value}")
        if isinstance(value, int) and not -(2**63) <= value < 2**63:
            raise ConfigError(f"{field.name} must fit in 64 bits, got {value}")


def check_momentum(momentum: float) -> None:
    """SGD's momentum must lie in [0, 1): at 1 or above the velocity never decays."""
    if not 0 <= momentum < 1:
        raise ConfigError(f"momentum must be in [0, 1), got {momentum}")


def check_image_size(image_size: int | None, multiple: int = 1) -> None:
    """``image_size`` must be None (the dataset's own size) or a positive multiple of
    ``multiple`` (what the generator can make)."""
    if image_size is None:
        return
    if image_size < 1:
        raise ConfigError(f"image_size must be positive, got {image_size}")
    if image_size % multiple:
        raise ConfigError(
            f"image_size must be a multiple of {multiple} for the generator to make it, "
            f"got {image_size}"
        )


def check_device(name: str) -> None:
    """Refuse a device this machine cannot run on: an unknown name (``gpu``), CUDA without a GPU,
    a GPU index past the last one, a device type other than cpu and cuda."""
    device = resolve_device(name)
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"unknown device {name!r}: give auto, cpu, cuda or cuda:N")
    count = torch.cuda.device_count() if device.type == "cuda" else 0
    if device.index is not None and device.type == "cuda" and device.index >= count:
        raise ConfigError(f"device {name!r} asked for, but this machine has {count} CUDA GPU(s)")
