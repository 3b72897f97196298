"""A polite stop: SIGTERM (what schedulers and torchrun send before a kill) becomes a flag.

The handler only records the signal; the training loop reads the flag at a step boundary, writes
``last.pt`` and returns, and the command exits 0. SIGUSR1 is treated the same way, for schedulers
configured to warn ahead of the time limit (Slurm's ``--signal=USR1@120``).
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


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
