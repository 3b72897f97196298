"""Atomic checkpoint writes, safe loads with clear errors, and RNG state capture."""

from __future__ import annotations

import dataclasses
import os
import pickle
import re
import secrets
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import CheckpointError


def save_atomic(obj: Any, path: str | Path) -> None:
    """torch.save ``obj`` to a temporary file beside ``path``, fsync it, then rename over ``path``.

    A crash or kill at any moment leaves either the previous file or the new one, never a torn one.
    The file gets the permissions of any other new file (0666 less the umask: 0644 with the usual
    umask), not the owner-only ones of ``tempfile.mkstemp``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete the temporary files ``save_atomic`` leaves in ``folder`` when killed mid-write.

    Call it where no other process is saving into ``folder``; returns what it removed.
    """
    stale = sorted(Path(folder).glob(".*.pt.*.tmp")) if Path(folder).is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` onto the CPU.

    Missing, truncated or corrupt files, and pickles that would run code, raise CheckpointError
    naming the file.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a directory, not a checkpoint file")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with warnings.catch_warnings():  # a foreign pickle's protocol warning precedes our error
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        imported = re.search(r"GLOBAL ([\w.]+)", str(e))
        if imported:
            raise CheckpointError(
                f"checkpoint {path} holds objects that are not plain tensors and containers; "
                f"it was refused because unpickling it would import {imported[1]}, which could "
                "run code"
            ) from None
        stopped = re.search(r"WeightsUnpickler error:\s*(.+)", str(e))
        raise CheckpointError(
            f"checkpoint {path} is truncated or corrupt, or was not written by torch.save: the "
            f"safe loader stopped at '{stopped[1].strip() if stopped else type(e).__name__}' and "
            "refused it without running any of it"
        ) from None
    except Exception as e:  # bytes that are no checkpoint fail in many ways: KeyError, EOFError...
        raise CheckpointError(
            f"checkpoint {path} is truncated or corrupt and cannot be read "
            f"({type(e).__name__}: {str(e).strip() or 'no detail'})"
        ) from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(obj).__name__}, not a dict")
    return obj


def load_state_strict(model: nn.Module, state: dict[str, Any], source: str | Path) -> None:
    """Load ``state`` into ``model`` exactly; a mismatch raises CheckpointError saying how.

    The message names ``source`` (the file) and lists missing keys, unexpected keys and shape
    mismatches (at most five of each). A model whose submodules were renamed may define
    ``upgrade_state_dict(state) -> state``, which maps a state_dict in its older names to its
    current ones; it is applied first (the Generator does, so checkpoints from before it took
    DFAD's names resume).
    """
    upgrade = getattr(model, "upgrade_state_dict", None)
    if callable(upgrade):
        state = upgrade(state)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and hasattr(state[k], "shape") and state[k].shape != own[k].shape
    ]
    if missing or unexpected or shapes:
        parts = []
        for label, items in (("missing", missing), ("unexpected", unexpected), ("shape", shapes)):
            if items:
                more = f" (+{len(items) - 5} more)" if len(items) > 5 else ""
                parts.append(f"{label}: {', '.join(items[:5])}{more}")
        raise CheckpointError(
            f"checkpoint {source} does not match the {type(model).__name__} architecture: "
            + "; ".join(parts)
        )
    model.load_state_dict(state)


def rng_state() -> dict[str, Any]:
    """The torch RNG states (CPU and, where present, CUDA): the only RNGs the trainers draw from."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what ``rng_state()`` captured."""
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def changed_settings(
    saved: dict[str, Any],
    now: dict[str, Any],
    may_change: frozenset[str],
    defaults: dict[str, Any],
) -> dict[str, tuple[Any, Any]]:
    """``{setting: (saved value, value now)}`` for the settings outside ``may_change`` that differ.

    A setting the saved config lacks (added in a later version) counts as its value in
    ``defaults``, so a run written before it existed matches while it keeps its default.
    """
    before = {k: saved.get(k, defaults.get(k)) for k in now}
    return {k: (before[k], v) for k, v in now.items() if k not in may_change and before[k] != v}


def run_of(last: Path, kind: str, cfg: Any, may_change: frozenset[str]) -> dict[str, Any] | None:
    """The checkpoint ``last`` (a run's last.pt) if it is a ``kind`` run with the settings of the
    dataclass ``cfg`` but for ``may_change``; None if it is missing, unreadable, or another run."""
    try:
        ckpt = load_checkpoint(last)
    except CheckpointError:
        return None
    defaults = dataclasses.asdict(type(cfg)())
    saved = ckpt.get("config", {})
    if ckpt.get("kind") != kind or changed_settings(
        saved, dataclasses.asdict(cfg), may_change, defaults
    ):
        return None
    return ckpt


def resume_may_change(
    may_change: frozenset[str], saved: dict[str, Any], done: int, epochs: int
) -> frozenset[str]:
    """The settings a resumption may change: ``may_change``, and ``epochs`` when the saved run
    (config ``saved``, ``done`` epochs finished) ended and ``epochs`` asks for more, which extends
    it. Its schedules then go on as saved: a step schedule stays at its last rate, a cosine one
    rises again as torch's CosineAnnealingLR does past its end."""
    extends = done >= saved.get("epochs", done + 1) and epochs > done
    return may_change | {"epochs"} if extends else may_change


def check_same_settings(
    saved: dict[str, Any],
    now: dict[str, Any],
    may_change: frozenset[str],
    path: str | Path,
    defaults: dict[str, Any],
) -> None:
    """Refuse to resume from ``path`` when ``changed_settings`` finds a difference."""
    differ = changed_settings(saved, now, may_change, defaults)
    if differ:
        changes = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in differ.items())
        raise CheckpointError(f"cannot resume from {path}: settings changed ({changes})")
