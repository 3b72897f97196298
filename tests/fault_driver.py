"""``ddad`` with a fault injected at an exact point: run as a subprocess by test_resilience.py.

    python fault_driver.py FAULT N ddad-argv...

FAULT is one of
  kill-at-step       SIGKILL this process right after its N-th generator step
  kill-in-save       SIGKILL it in the middle of its N-th checkpoint write (half the bytes written)
  term-at-step       send it SIGTERM right after its N-th generator step, as a scheduler would
  int-at-step        send it SIGINT (Ctrl-C) right after its N-th generator step
  int-twice-at-step  send it SIGINT twice right after its N-th generator step (Ctrl-C, Ctrl-C)
  int-at-batch       send it SIGINT right after its N-th teacher-training batch (``ddad teacher``)
Before a signal it prints ``fault: S steps done`` to stderr. Exits with the command's own status
(or dies by the signal).
"""

import io
import os
import signal
import sys

import torch

from ddad_fast import teacher, trainer
from ddad_fast.cli import main

steps_done = 0


def _signal(sig: signal.Signals, times: int = 1) -> None:
    print(f"fault: {steps_done} steps done", file=sys.stderr, flush=True)
    for _ in range(times):
        os.kill(os.getpid(), sig)


def _count_steps(n: int | None, sig: signal.Signals | None, times: int = 1) -> None:
    step = trainer.DDADTrainer.generator_step

    def counted(self):
        global steps_done
        out = step(self)
        steps_done += 1
        if steps_done == n:
            _signal(sig, times)
        return out

    trainer.DDADTrainer.generator_step = counted


def _count_batches(n: int, sig: signal.Signals) -> None:
    """Signal after the teacher's N-th batch: when the loop asks for the batch after it."""
    batches = teacher.iterate_batches

    def counted(*args, **kwargs):
        global steps_done
        for batch in batches(*args, **kwargs):
            yield batch
            steps_done += 1
            if steps_done == n:
                _signal(sig)

    teacher.iterate_batches = counted


def _tear_save(n: int) -> None:
    save = torch.save
    calls = 0

    def torn(obj, f, *args, **kwargs):
        nonlocal calls
        calls += 1
        if calls < n:
            return save(obj, f, *args, **kwargs)
        buf = io.BytesIO()
        save(obj, buf, *args, **kwargs)
        data = buf.getvalue()
        f.write(data[: len(data) // 2])
        f.flush()
        os.fsync(f.fileno())
        _signal(signal.SIGKILL)

    torch.save = torn


if __name__ == "__main__":
    fault, n, argv = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    if fault == "kill-at-step":
        _count_steps(n, signal.SIGKILL)
    elif fault == "term-at-step":
        _count_steps(n, signal.SIGTERM)
    elif fault == "int-at-step":
        _count_steps(n, signal.SIGINT)
    elif fault == "int-twice-at-step":
        _count_steps(n, signal.SIGINT, times=2)
    elif fault == "int-at-batch":
        _count_batches(n, signal.SIGINT)
    elif fault == "kill-in-save":
        _count_steps(None, None)
        _tear_save(n)
    else:
        raise SystemExit(f"unknown fault {fault!r}")
    sys.exit(main(argv))
