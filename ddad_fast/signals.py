"""A polite stop: SIGTERM (what schedulers and torchrun send before a kill) becomes a flag.

The handler only records the signal; the training loop reads the flag at a step boundary, writes
``last.pt`` and returns, and the command exits 0. SIGUSR1 is treated the same way, for schedulers
configured to warn ahead of the time limit (Slurm's ``--signal=USR1@120``), and so is Ctrl-C
(SIGINT), except that the command then exits 130 (128 + SIGINT, as shells expect of an interrupted
command, so ``ddad ... && next`` does not go on), and that a second Ctrl-C stops at once: it raises
KeyboardInterrupt, which the command reports in one line (the last checkpoint stays whole).
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)
INTERRUPTED_STATUS = 128 + signal.SIGINT  # a shell's status for a command stopped by Ctrl-C


class Stopped(Exception):
    """A run a stop signal ended at a step boundary after writing its checkpoint; the message is
    the line to print, which says how to continue."""

    def __init__(self, signal_name: str, message: str):
        super().__init__(message)
        self.signal_name = signal_name


def stop_line(command: str, signal_name: str, where: str, checkpoint: Path) -> str:
    """The line a stopped ``command`` prints: what stopped it, ``where``, how to continue."""
    return (
        f"{command}: stopped by {signal_name} {where}; {checkpoint} is written: run the same "
        "command with --resume to continue"
    )


def stop_status(signal_name: str | None) -> int:
    """The command's exit status after a stop by ``signal_name``: INTERRUPTED_STATUS after
    Ctrl-C, 0 after SIGTERM or SIGUSR1 (a scheduler's stop is no failure)."""
    return INTERRUPTED_STATUS if signal_name == "SIGINT" else 0


class StopRequest:
    """While entered, the stop signals set ``requested`` instead of ending the process.

    Handlers can only be installed from the main thread; elsewhere this is a flag nobody sets.
    The previous handlers come back on exit.
    """

    def __init__(self, signals: tuple[signal.Signals, ...] = STOP_SIGNALS):
        self.signals = signals
        self.signal_name: str | None = None
        self._previous: dict[signal.Signals, object] = {}

    @property
    def requested(self) -> bool:
        return self.signal_name is not None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGINT and self.requested:
            raise KeyboardInterrupt  # a second Ctrl-C: stop at once
        self.signal_name = signal.Signals(signum).name

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in self.signals:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
