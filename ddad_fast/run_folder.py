"""A run's output folder: one run at a time (a lock file naming its holder), and the checks made
before a run writes there (a folder it can write, no running run, no previous run to destroy).

The lock is a ``flock`` on ``out_dir/.ddad.lock``, which names the holder (pid, host, start). The
kernel releases it when the process ends however it ends, so the lock of a process that is gone is
stale: it is taken over without asking.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from .distributed import DistContext, any_rank
from .errors import ConfigError

LOCK_NAME = ".ddad.lock"
# What teacher and distill runs write: a folder holding one of them holds a run.
RUN_FILES = ("last.pt", "best.pt", "teacher.pt", "metrics.csv")
# What a run leaves beside last.pt and metrics.csv (which it writes anew): a fresh run removes a
# previous run's at its first checkpoint, so that none of them passes for its own.
OUTPUT_FILES = (
    "best.pt",
    "student.pt",
    "teacher.pt",
    "samples.png",
    "seg_samples.png",
    "curves.png",
)


def remove_previous_outputs(folder: Path, keep: tuple[str, ...] = ()) -> None:
    """Remove from ``folder`` every ``OUTPUT_FILES`` name a previous run left there but ``keep``."""
    for name in OUTPUT_FILES:
        if name not in keep:
            (folder / name).unlink(missing_ok=True)


def _holder(fd: int) -> str:
    """The holder a lock file names, as written by ``RunLock``."""
    os.lseek(fd, 0, os.SEEK_SET)
    return os.read(fd, 1000).decode(errors="replace").strip() or "a process that wrote no name"


def _in_use(folder: Path, holder: str) -> ConfigError:
    return ConfigError(
        f"{folder} is in use by another run ({holder}; lock {folder / LOCK_NAME}): wait for it "
        "to end, or give another --out-dir"
    )


def _still_named(path: Path, fd: int) -> bool:
    """Whether ``path`` still names the file open as ``fd``."""
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


class RunLock:
    """While entered, this process alone runs into ``folder`` (created if missing).

    Entering raises ConfigError naming the holder when a live process holds the lock, or when
    the folder cannot be created or written. Leaving removes the lock file, and the folders
    entering created where the run left nothing (a run that failed at once leaves no trace).
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self._fd: int | None = None
        self._created: list[Path] = []  # the folders entering made, the deepest first

    def __enter__(self) -> RunLock:
        check_writable(self.folder)
        self._created = [p for p in (self.folder, *self.folder.parents) if not p.exists()]
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            while True:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    holder = _holder(fd)
                    os.close(fd)
                    raise _in_use(self.folder, holder) from None
                # The previous holder removes the file as it leaves: lock the one now there.
                if _still_named(self.path, fd):
                    break
                os.close(fd)
        except OSError as e:
            raise ConfigError(f"cannot lock {self.path}: {e.strerror}") from None
        holder = f"pid {os.getpid()} on host {socket.gethostname()}"
        os.ftruncate(fd, 0)
        os.write(fd, f"{holder}, since {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            self.path.unlink(missing_ok=True)  # before the unlock: a waiter then retries
            os.close(self._fd)
            self._fd = None
        for folder in self._created:
            try:
                folder.rmdir()
            except OSError:  # not empty: the run wrote there
                break


@contextlib.contextmanager
def lock_on_main(folder: str | Path, dist: DistContext) -> Iterator[None]:
    """``RunLock`` taken by rank 0 (the rank that writes); every rank raises when it is refused."""
    refusal = None
    with contextlib.ExitStack() as stack:
        if dist.is_main:
            try:
                stack.enter_context(RunLock(folder))
            except ConfigError as e:
                refusal = e
        if any_rank(dist, refusal is not None)[0]:
            raise refusal or ConfigError(f"rank 0 could not lock {folder}")
        yield


def running_holder(folder: Path) -> str | None:
    """The run holding ``folder``'s lock now, or None (no lock file, or a stale one)."""
    try:
        fd = os.open(folder / LOCK_NAME, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _holder(fd)
    finally:
        os.close(fd)  # also releases the probe's shared lock
    return None


def check_writable(folder: Path) -> None:
    """Refuse an out_dir that is a file, or that this process cannot create or write into:
    probed with a nameless temporary file in it, or in its nearest existing parent."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        what = "is a file" if existing == folder else f"cannot be created: {existing} is a file"
        raise ConfigError(f"out_dir {folder} {what}, not a folder")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        verb = "write into" if existing == folder else "create"
        raise ConfigError(f"cannot {verb} out_dir {folder}: {e.strerror} ({existing})") from None


def check_out_dir(folder: str | Path, resume: bool, overwrite: bool) -> None:
    """What ``ddad teacher`` and ``ddad distill`` check before loading anything: ``folder`` can be
    written, no run holds it, and it holds no previous run unless ``resume`` (continue it) or
    ``overwrite`` (replace it) is given. Raises ConfigError saying which flag fixes it."""
    if resume and overwrite:
        raise ConfigError(
            "--resume continues the run in out_dir and --overwrite replaces it: give one"
        )
    if str(folder) == "":  # Path("") would be the working directory
        raise ConfigError("out_dir is empty: give a folder (--out-dir)")
    folder = Path(folder)
    check_writable(folder)
    # The folder the run will write into: "a/new/.." is a once "new" exists, though the kernel
    # finds no "a/new/../last.pt" before the run creates "new".
    target = Path(os.path.realpath(folder))
    holder = running_holder(target)
    if holder is not None:
        raise _in_use(folder, holder)
    previous = [name for name in RUN_FILES if (target / name).exists()]
    if previous and not (resume or overwrite):
        raise ConfigError(
            f"{folder} already holds a run ({', '.join(previous)}): continue it with --resume, "
            "replace it with --overwrite, or give another --out-dir"
        )
