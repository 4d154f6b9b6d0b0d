"""A training run's folder (product.md stable names) and its console progress.

``config.yaml`` (resolved), ``log.txt``, ``metrics.csv`` (one row per epoch) and ``checkpoints/``.
Every file is rewritten through :func:`sparsessp.fileio.atomic_path`, so a killed run never leaves a torn
line. Only rank 0 writes or prints: on other ranks every method is a no-op, so logs are never duplicated.
"""

from __future__ import annotations

import csv
import io
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from sparsessp.errors import UserError
from sparsessp.fileio import atomic_write_text

if TYPE_CHECKING:
    from sparsessp.config import Config

METRICS_COLUMNS: tuple[str, ...] = ("epoch", "step", "train_loss", "val_mse", "lr", "seconds")
"""``epoch`` counts from 1; ``val_mse`` is blank when not validated; ``seconds`` is the training time so far.
Floats are written exactly (shortest round-trip form)."""


class RunFolder:
    """Paths and writers of one run folder; writes only when ``active`` (rank 0)."""

    def __init__(self, root: Path, active: bool = True) -> None:
        self.root = Path(root)
        self.active = active
        self.config_path = self.root / "config.yaml"
        self.log_path = self.root / "log.txt"
        self.metrics_path = self.root / "metrics.csv"
        self.checkpoints = self.root / "checkpoints"
        self.last = self.checkpoints / "last.ckpt"
        self.best = self.checkpoints / "best.ckpt"
        self._log_lines: list[str] = []
        self._rows: list[dict[str, str]] = []

    def check(self, resume: bool) -> None:
        """Refuse to train over an existing run without ``resume``, and to resume a run that has no checkpoint."""
        if self.root.exists() and not self.root.is_dir():
            raise UserError(f"--out {self.root} exists and is not a folder")
        has_ckpt = self.last.is_file() or self.best.is_file()
        if resume and not self.last.is_file():
            raise UserError(f"nothing to resume: {self.last} does not exist")
        if not resume and has_ckpt:
            raise UserError(f"{self.root} already holds a run with checkpoints; pass --resume or choose another --out")

    def open(self, cfg: Config, completed_epochs: int | None) -> None:
        """Write the resolved config and load (resume) or start (new run) the log and metrics.

        On resume, metrics rows of epochs the checkpoint has not completed are dropped: the resumed
        run writes them again, so the table never holds an epoch twice. Temp files a killed run left
        behind (atomic writes that never finished) are removed.
        """
        if not self.active:
            return
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        for stale in [*self.root.glob(".*.tmp"), *self.checkpoints.glob(".*.tmp")]:
            stale.unlink(missing_ok=True)
        cfg.save(self.config_path)
        if completed_epochs is None:
            self._log_lines, self._rows = [], []
        else:
            if self.log_path.is_file():
                self._log_lines = self.log_path.read_text(encoding="utf-8").splitlines()
            self._rows = [
                r for r in self.read_metrics() if r.get("epoch", "").isdigit() and int(r["epoch"]) <= completed_epochs
            ]
        self._write_metrics()

    def read_metrics(self) -> list[dict[str, str]]:
        """The rows of metrics.csv as written (text values; empty when the file does not exist)."""
        if not self.metrics_path.is_file():
            return []
        return list(csv.DictReader(io.StringIO(self.metrics_path.read_text(encoding="utf-8"))))

    def log_line(self, message: str) -> None:
        """Append a timestamped line to log.txt."""
        if not self.active:
            return
        self._log_lines.append(f"{datetime.now().strftime('%Y-%m-%d %H:%M:%S')} {message}")
        atomic_write_text(self.log_path, "\n".join(self._log_lines) + "\n")

    def add_metrics(self, row: dict[str, Any]) -> None:
        """Append one epoch's row to metrics.csv (columns :data:`METRICS_COLUMNS`)."""
        if not self.active:
            return
        self._rows.append({k: _fmt(row.get(k)) for k in METRICS_COLUMNS})
        self._write_metrics()

    def _write_metrics(self) -> None:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(METRICS_COLUMNS), lineterminator="\n")
        writer.writeheader()
        writer.writerows(self._rows)
        atomic_write_text(self.metrics_path, out.getvalue())


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    return repr(value) if isinstance(value, float) else str(value)


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class Progress:
    """Training progress on stderr, rank 0 only.

    On a terminal: a rich progress bar (epoch, steps, loss, it/s, ETA). Otherwise (CI, files): a plain
    line at most every ``interval`` seconds, so logs stay readable. Messages (epoch summaries) are printed
    above the bar either way.
    """

    def __init__(
        self, active: bool, total_steps: int, done_steps: int, stream: TextIO | None = None, interval: float = 30.0
    ) -> None:
        self.active = active
        self.stream = stream if stream is not None else sys.stderr
        self.total = max(total_steps, done_steps)
        self.start_steps = done_steps
        self.interval = interval
        self.t0 = time.monotonic()
        self._last_print = self.t0
        self._bar: Any = None
        self._task: Any = None
        if active and self.stream.isatty():
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeRemainingColumn,
            )
            from rich.progress import (
                Progress as RichProgress,
            )

            self._bar = RichProgress(
                TextColumn("epoch {task.fields[epoch]}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}"),
                TextColumn("{task.fields[rate]} it/s"),
                TextColumn("eta"),
                TimeRemainingColumn(),
                console=Console(file=self.stream),
                transient=False,
            )
            self._task = self._bar.add_task(
                "train", total=self.total, completed=done_steps, epoch="-", loss="-", rate="-"
            )
            self._bar.start()

    def rate(self, step: int) -> float:
        elapsed = time.monotonic() - self.t0
        return (step - self.start_steps) / elapsed if elapsed > 0 else 0.0

    def due(self) -> bool:
        """Whether an update would show anything now (so callers read the loss, a device sync, only then)."""
        if not self.active:
            return False
        wait = 0.5 if self._bar is not None else self.interval
        return time.monotonic() - self._last_print >= wait

    def update(self, step: int, epoch: int, loss: float) -> None:
        if not self.active:
            return
        self._last_print = time.monotonic()
        rate = self.rate(step)
        if self._bar is not None:
            self._bar.update(self._task, completed=step, epoch=epoch, loss=f"{loss:.4g}", rate=f"{rate:.2f}")
            return
        eta = (self.total - step) / rate if rate > 0 else 0.0
        print(
            f"epoch {epoch} step {step}/{self.total} loss {loss:.4g} {rate:.2f} it/s eta {_duration(eta)}",
            file=self.stream,
            flush=True,
        )

    def message(self, text: str) -> None:
        if not self.active:
            return
        if self._bar is not None:
            self._bar.console.print(text, markup=False, highlight=False)
        else:
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
