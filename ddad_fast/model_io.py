"""Classifier checkpoints that carry what is needed to rebuild them, and published state_dicts."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .checkpoint import load_checkpoint, load_state_strict
from .errors import CheckpointError, ConfigError
from .models import build_model
from .tasks import check_task

MODEL_KIND = "ddad_fast.model"


def model_record(
    name: str, model: nn.Module, num_classes: int, in_channels: int, image_size: int, **extra: Any
) -> dict[str, Any]:
    """A self-describing checkpoint dict: architecture name, shape facts, weights, extras."""
    return {
        "kind": MODEL_KIND,
        "model": name,
        "num_classes": num_classes,
        "in_channels": in_channels,
        "image_size": image_size,
        "state_dict": model.state_dict(),
        **extra,
    }


def weights_sha256(model: nn.Module) -> str:
    """A hash of ``model``'s state_dict: names, dtypes, shapes and values, whatever the device
    and memory layout, so the same weights hash the same from any file and on any device."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        values = tensor.detach().cpu().contiguous()
        digest.update(f"{name} {values.dtype} {tuple(values.shape)}\n".encode())
        digest.update(values.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _strip_module_prefix(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Drop the ``module.`` prefix DataParallel/DDP checkpoints carry."""
    if state and all(k.startswith("module.") for k in state):
        return {k[len("module.") :]: v for k, v in state.items()}
    return state


def _check_matches(path: Path, record: dict[str, Any], expected: dict[str, Any]) -> None:
    """Refuse a model whose recorded facts differ from what the run needs."""
    for key, want in expected.items():
        have = record.get(key)
        if want is not None and have != want:
            raise ConfigError(
                f"model checkpoint {path} has {key}={have!r} but this run needs {key}={want!r}"
                + (" (teacher and dataset class counts differ)" if key == "num_classes" else "")
            )


def load_model(
    path: str | Path,
    name: str | None = None,
    num_classes: int | None = None,
    in_channels: int | None = None,
    image_size: int | None = None,
    task: str | None = None,
    name_flag: str = "--teacher",
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a classifier from ``path`` and check it against what the caller needs.

    Accepts our model records (``teacher.pt``, ``best.pt``), our training checkpoints (their
    ``model`` entry) and published raw state_dicts (bare, or under ``state_dict``/``model``, with or
    without a ``module.`` prefix), for which ``name`` and the shape facts must be given.
    ``task`` (cls or seg), when given, refuses a model made for the other task first.
    ``name_flag``: the caller's flag for ``name``, which the error for a bare state_dict names.
    Returns (model in eval mode, the record without its weights).
    """
    path = Path(path)
    obj = load_checkpoint(path)
    if obj.get("kind") not in (None, MODEL_KIND) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    if obj.get("kind") == MODEL_KIND:
        record = {k: v for k, v in obj.items() if k != "state_dict"}
        if task is not None:
            check_task(task, {f"model in {path}": record.get("model")})
        _check_matches(
            path,
            record,
            {
                "model": name,
                "num_classes": num_classes,
                "in_channels": in_channels,
                "image_size": image_size,
            },
        )
        state = obj["state_dict"]
    else:
        state = obj.get("state_dict", obj.get("model", obj))
        if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
            raise CheckpointError(f"{path} is neither a ddad_fast checkpoint nor a state_dict")
        if name is None or num_classes is None:
            raise ConfigError(
                f"{path} is a bare state_dict: name its architecture (e.g. {name_flag} resnet34) "
                "and the dataset so the model can be built"
            )
        if task is not None:
            check_task(task, {"model": name})
        record = {
            "kind": MODEL_KIND,
            "model": name,
            "num_classes": num_classes,
            "in_channels": in_channels or 3,
            "image_size": image_size or 32,
        }
        state = _strip_module_prefix(state)
    model = build_model(
        record["model"], record["num_classes"], record["in_channels"], record["image_size"]
    )
    load_state_strict(model, state, path)
    return model.eval(), record
