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
from .models.published_names import in_our_names
from .tasks import check_task

MODEL_KIND = "ddad_fast.model"


def class_path(model: nn.Module) -> str:
    """``module:qualname`` of ``model``'s class: what a record names for a model of the user's own
    class, which the registry cannot build."""
    cls = type(model)
    return f"{cls.__module__}:{cls.__qualname__}"


def _refuse_user_class(path: Path, name: str) -> None:
    """A record naming a class path (``class_path``) holds weights only that class can take."""
    if ":" in name:
        raise ConfigError(
            f"{path} holds a {name} (a model class of your own, not in the registry): load its "
            f"'state_dict' into that class in Python (torch.load({str(path)!r})['state_dict'])"
        )


def model_record(
    name: str, model: nn.Module, num_classes: int, in_channels: int, image_size: int, **extra: Any
) -> dict[str, Any]:
    """A self-describing checkpoint dict: architecture name (a registry name, or the
    ``class_path`` of a model of the user's own class), shape facts, weights, extras."""
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


def _check_matches(path: Path, record: dict[str, Any], expected: dict[str, Any]) -> None:
    """Refuse a model whose recorded facts differ from what the run needs."""
    for key, want in expected.items():
        have = record.get(key)
        if want is not None and have != want:
            raise ConfigError(
                f"model checkpoint {path} has {key}={have!r} but this run needs {key}={want!r}"
                + (" (teacher and dataset class counts differ)" if key == "num_classes" else "")
            )


def check_record(path: str | Path, obj: dict) -> None:
    """CheckpointError unless the model record ``obj`` has its entries, of their types."""
    kinds = {"model": str, "num_classes": int, "in_channels": int, "image_size": int}
    for key, kind in kinds.items():
        if not isinstance(obj.get(key), kind) or isinstance(obj.get(key), bool):
            raise CheckpointError(
                f"{path}: its model record's {key!r} is missing or not {kind.__name__}"
            )
    if not isinstance(obj.get("state_dict"), dict):
        raise CheckpointError(f"{path}: its model record has no state_dict")


def load_model(
    path: str | Path,
    name: str | None = None,
    num_classes: int | None = None,
    in_channels: int | None = None,
    image_size: int | None = None,
    task: str | None = None,
    name_flag: str = "--teacher",
    shape_flags: str = "the dataset",
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a classifier from ``path`` and check it against what the caller needs.

    Accepts our model records (``teacher.pt``, ``best.pt``), our training checkpoints (their
    ``model`` entry) and published raw state_dicts (bare, or under ``state_dict``/``model``, with or
    without a ``module.`` prefix, torchvision's auxiliary head set aside: ``in_our_names``), for
    which ``name`` and the three shape facts must be given.
    A record of a model of the user's own class (``class_path``) is refused in one line.
    ``task`` (cls or seg), when given, refuses a model made for the other task first.
    ``name_flag``, ``shape_flags``: what the caller's user gives for ``name`` and for the shape
    facts, which the errors for a bare state_dict name.
    Returns (model in eval mode, the record without its weights).
    """
    path = Path(path)
    obj = load_checkpoint(path)
    if obj.get("kind") not in (None, MODEL_KIND) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    if obj.get("kind") == MODEL_KIND:
        record = {k: v for k, v in obj.items() if k != "state_dict"}
        check_record(path, obj)
        _refuse_user_class(path, str(record.get("model")))
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
        if name is None:
            raise ConfigError(
                f"{path} is a bare state_dict: name its architecture (e.g. {name_flag} resnet34) "
                f"and give {shape_flags} so the model can be built"
            )
        if None in (num_classes, in_channels, image_size):
            raise ConfigError(
                f"{path} is a bare state_dict, which records no class count, channels or image "
                f"size: give {shape_flags}"
            )
        if task is not None:
            check_task(task, {"model": name})
        record = {
            "kind": MODEL_KIND,
            "model": name,
            "num_classes": num_classes,
            "in_channels": in_channels,
            "image_size": image_size,
        }
        state = in_our_names(state)
    model = build_model(
        record["model"], record["num_classes"], record["in_channels"], record["image_size"]
    )
    load_state_strict(model, state, path)
    return model.eval(), record
