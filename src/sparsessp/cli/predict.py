"""`sparsessp predict`: TL stacks and time-lapses in, OME-TIFF or OME-Zarr predictions out.

Parses the options, calls :func:`sparsessp.predict.predict_files` (every check before any work,
block-wise prediction in bounded memory, atomic outputs) and draws its progress bar.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

HELP = "predict fluorescence of chosen structures from TL stacks or time-lapses into OME-TIFF or OME-Zarr"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="TL image files or folders of them")
    parser.add_argument("--model", type=Path, required=True, metavar="CKPT", help="sparsessp checkpoint")
    parser.add_argument("--structures", required=True, metavar="A,B", help="comma-separated structure names")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    parser.add_argument("--format", choices=["ome-tiff", "ome-zarr"], default="ome-tiff",
                        help="output format (OME-Zarr: a multiscale pyramid napari and Fiji can browse)")
    parser.add_argument("--z-step", type=float, metavar="UM",
                        help="z-step of the inputs in micrometres (default: from the file's metadata)")
    parser.add_argument("--pixel-size", type=float, metavar="UM",
                        help="x-y pixel size in micrometres (default: from the file's metadata)")
    parser.add_argument("--channel", metavar="C", help="TL channel (index or name) of multi-channel files")
    parser.add_argument("--timepoints", metavar="LIST", help="timepoints to predict, e.g. 0-9,15 (default: all)")
    parser.add_argument("--merge", action="store_true",
                        help="one multi-channel output per input (channels = structures) instead of one per structure")
    parser.add_argument("--preview", action="store_true", help="also write <stem>_preview.png (MIPs XY and XZ)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted run: keep finished outputs and timepoints, do the rest")
    parser.add_argument("--dtype", choices=["float32", "uint16"], default="float32",
                        help="uint16 (OME-TIFF) rescales each channel by its 0.1 and 99.9 percentiles")
    parser.add_argument("--with-input", action="store_true", help="write the TL as an extra channel (overlay)")
    parser.add_argument("--keep-input-grid", action="store_true",
                        help="resample the prediction back to the input's z-step instead of the 0.29 um grid")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--devices", type=int, default=1, metavar="N",
                        help="share files x timepoints over N processes (cuda:0..N-1, or CPU threads split)")
    parser.add_argument("--max-memory", type=float, default=0.5, metavar="GB",
                        help="memory for the block buffers; picks the y-x block size (default 0.5 GB)")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default="auto",
                        help="numeric precision of the network: auto (default) is bf16 where the device runs it "
                        "natively, else fp32; bf16/fp16 where the device supports it")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


class _WarningPrinter(logging.Handler):
    """Print the package's logged warnings (documented fallbacks) once each as ``warning: ...`` on stderr."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.seen: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message not in self.seen:
            self.seen.add(message)
            print(f"warning: {message}", file=sys.stderr)


class _Bar:
    """A rich progress bar over every window of every file and timepoint, with the time left."""

    def __init__(self, quiet: bool) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.console = Console(stderr=True, quiet=quiet)
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("windows"),
                            TimeRemainingColumn(), console=self.console, transient=True)
        self.task: Any = None
        self.units = 0
        self.seen = 0

    def start(self, total_windows: int, units: int) -> None:
        self.units = units
        self.bar.start()
        self.task = self.bar.add_task("predicting", total=total_windows)

    def unit(self, label: str) -> None:
        self.seen += 1
        self.bar.update(self.task, description=f"[{min(self.seen, self.units)}/{self.units}] {label}")

    def advance(self, windows: int) -> None:
        self.bar.advance(self.task, windows)

    def wrote(self, path: Path) -> None:
        print(f"wrote {path}")

    def stop(self) -> None:
        self.bar.stop()


def _channel(text: str | None) -> int | str | None:
    if text is None:
        return None
    return int(text) if text.lstrip("-").isdigit() else text


def run(args: argparse.Namespace) -> int:
    from sparsessp.errors import UserError
    from sparsessp.predict import PredictOptions, predict_files

    options = PredictOptions(
        model=args.model, structures=args.structures.split(","), out=args.out, z_step=args.z_step,
        pixel_size=args.pixel_size, channel=_channel(args.channel), timepoints=args.timepoints, merge=args.merge,
        format=args.format, dtype=args.dtype, with_input=args.with_input, keep_input_grid=args.keep_input_grid,
        preview=args.preview, overwrite=args.overwrite, resume=args.resume, device=args.device,
        devices=args.devices, max_memory_gb=args.max_memory, precision=args.precision,
    )
    handler = _WarningPrinter()
    logger = logging.getLogger("sparsessp")
    logger.addHandler(handler)
    bar = _Bar(args.quiet or not sys.stderr.isatty())
    try:
        result = predict_files(list(args.inputs), options, progress=bar)
    except OSError as exc:
        if exc.filename:
            raise UserError(f"{exc.filename}: {exc.strerror or exc}") from None
        raise
    finally:
        bar.stop()
        logger.removeHandler(handler)
    for path in result.skipped:
        print(f"skipped {path} (finished by an earlier run)")
    return 0
