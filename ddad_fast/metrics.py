"""A per-epoch metrics CSV that survives resume: one row per epoch, readable and plottable."""

from __future__ import annotations

import csv
import os
from pathlib import Path


class MetricsLog:
    """Appends one dict per epoch to ``path`` as CSV.

    Opening with ``resume_epoch`` keeps only rows with ``epoch <= resume_epoch`` (rows written after
    the checkpoint being resumed would otherwise appear twice); without it the file starts empty.
    """

    def __init__(self, path: str | Path, resume_epoch: int | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept: list[dict[str, str]] = []
        if resume_epoch is not None and self.path.exists():
            with self.path.open(newline="") as f:
                kept = [r for r in csv.DictReader(f) if int(r["epoch"]) <= resume_epoch]
        self._fields: list[str] | None = list(kept[0]) if kept else None
        # Rewritten beside and renamed over: a kill here leaves the old rows, never half of them.
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with tmp.open("w", newline="") as f:
            if kept:
                writer = csv.DictWriter(f, fieldnames=self._fields)
                writer.writeheader()
                writer.writerows(kept)
        os.replace(tmp, self.path)

    def append(self, row: dict[str, float | int | str]) -> None:
        if self._fields is None:
            self._fields = list(row)
            with self.path.open("a", newline="") as f:
                csv.DictWriter(f, fieldnames=self._fields).writeheader()
        elif not set(row) <= set(self._fields):  # a column the resumed run's rows lack
            self._widen([*self._fields, *(k for k in row if k not in self._fields)])
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, fieldnames=self._fields).writerow(row)

    def _widen(self, fields: list[str]) -> None:
        """Rewrite the file under the header ``fields``, earlier rows empty in the new columns."""
        with self.path.open(newline="") as f:
            rows = list(csv.DictReader(f))
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, self.path)
        self._fields = fields


def read_metrics(path: str | Path) -> list[dict[str, float]]:
    """The rows of a metrics CSV with every value parsed as float (empty cells become NaN)."""
    with Path(path).open(newline="") as f:
        return [
            {k: float(v) if v != "" else float("nan") for k, v in r.items()}
            for r in csv.DictReader(f)
        ]


def epoch_line(row: dict[str, float | int | str], epochs: int) -> str:
    """One plain line for a metrics row, for logs where no progress bar can redraw: the epoch,
    its losses, the student's score where evaluated, and the run's seconds."""
    parts = [f"epoch {row['epoch']}/{epochs}"]
    parts += [f"{k} {v:.4g}" for k, v in row.items() if k.startswith(("loss_", "l1_", "bn_"))]
    parts += [f"{k} {v:.2f}" for k, v in row.items() if k.startswith("student_")]
    return ", ".join(parts) + f" ({row['seconds']:.0f} s)"
