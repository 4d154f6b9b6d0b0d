"""`sparsessp predict`: TL stacks in, one OME-TIFF per input and structure out (z-scores on the 0.29 um grid).

Everything that can be checked is checked before the first file is written: the model and structure
names, every output path (refused if it exists, unless ``--overwrite``), and every input (readable, a
stack, one channel and timepoint chosen, no NaN/Inf, not constant, a z-step the model can use). Each
output is written atomically, so an error never leaves a partial file.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

HELP = "predict fluorescence of chosen structures from TL stacks (files or folders) into OME-TIFF files"

IMAGE_SUFFIXES: tuple[str, ...] = (".tif", ".tiff", ".btf", ".czi", ".zarr")
XY_TOLERANCE = 0.05
"""Relative difference between the input's pixel size and the 0.29 um grid above which we warn."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="TL image files or folders of them")
    parser.add_argument("--model", type=Path, required=True, metavar="CKPT", help="sparsessp checkpoint")
    parser.add_argument("--structures", required=True, metavar="A,B", help="comma-separated structure names")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    parser.add_argument("--z-step", type=float, metavar="UM",
                        help="z-step of the inputs in micrometres (default: from the file's metadata)")
    parser.add_argument("--channel", metavar="C", help="TL channel (index or name) of multi-channel files")
    parser.add_argument("--timepoint", type=int, metavar="T", help="timepoint of time series")
    parser.add_argument("--preview", action="store_true", help="also write <stem>_preview.png (MIPs XY and XZ)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.add_argument("--dtype", choices=["float32", "uint16"], default="float32",
                        help="uint16 rescales each channel by its 0.1 and 99.9 percentiles")
    parser.add_argument("--with-input", action="store_true", help="write the TL as a second channel (overlay)")
    parser.add_argument("--keep-input-grid", action="store_true",
                        help="resample the prediction back to the input's z-step instead of the 0.29 um grid")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")


@dataclass
class _Job:
    """One input file and the outputs it will produce."""

    path: Path
    stem: str
    outputs: dict[str, Path]
    preview: Path | None


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


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".ome.tiff", ".ome.tif", ".ome.zarr", *IMAGE_SUFFIXES):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _is_image(path: Path) -> bool:
    return path.name.lower().endswith(IMAGE_SUFFIXES) and not path.name.startswith(".")


def expand_inputs(inputs: list[Path]) -> list[Path]:
    """Files as given; folders replaced by their image files (sorted, not recursive; ``.zarr`` folders kept)."""
    from sparsessp.errors import InputError

    files: list[Path] = []
    for item in inputs:
        if not item.exists():
            raise InputError(f"input not found: {item}")
        if item.is_dir() and not item.name.lower().endswith(".zarr"):
            found = sorted(p for p in item.iterdir() if _is_image(p))
            if not found:
                raise InputError(f"folder {item} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
            files.extend(found)
        else:
            files.append(item)
    return files


def _parse_structures(text: str) -> list[str]:
    from sparsessp.errors import InputError

    names = [s.strip() for s in text.split(",") if s.strip()]
    if not names:
        raise InputError("--structures: give at least one structure name")
    if len(set(names)) != len(names):
        raise InputError(f"--structures lists a name twice: {text}")
    return names


def _plan(args: argparse.Namespace, files: list[Path], structures: list[str]) -> list[_Job]:
    from sparsessp.errors import InputError, UserError

    if args.out.exists() and not args.out.is_dir():
        raise UserError(f"--out {args.out} exists and is not a folder")
    jobs: list[_Job] = []
    seen: dict[Path, Path] = {}
    for path in files:
        stem = _stem(path)
        outputs = {s: args.out / f"{stem}_{s}.ome.tif" for s in structures}
        preview = args.out / f"{stem}_preview.png" if args.preview else None
        for out in [*outputs.values(), *([preview] if preview else [])]:
            if out in seen:
                raise InputError(f"{path} and {seen[out]} would both write {out}; rename one of them")
            seen[out] = path
            if out.exists() and not args.overwrite:
                raise UserError(f"{out} exists; refusing to overwrite it (use --overwrite)")
        jobs.append(_Job(path, stem, outputs, preview))
    return jobs


def _channel(text: str | None) -> int | str | None:
    if text is None:
        return None
    return int(text) if text.lstrip("-").isdigit() else text


def _read(args: argparse.Namespace, path: Path) -> tuple[np.ndarray, tuple[Any, Any, Any]]:
    from sparsessp.data.io import read_volume

    image = read_volume(path, channel=_channel(args.channel), timepoint=args.timepoint)
    return image.volume(), image.physical_sizes


def _z_step(args: argparse.Namespace, path: Path, sizes: tuple[Any, Any, Any], model_step: float) -> float:
    from sparsessp.errors import InputError

    if args.z_step is not None:
        if not args.z_step > 0:
            raise InputError(f"--z-step must be a positive number of micrometres, got {args.z_step}")
        return float(args.z_step)
    if sizes[0] is None or not sizes[0] > 0:
        logging.getLogger("sparsessp").warning(
            "%s has no z-step in its metadata; assuming the model's %g um (give --z-step)", path, model_step
        )
        return model_step
    return float(sizes[0])


def _check_xy(path: Path, sizes: tuple[Any, Any, Any]) -> None:
    from sparsessp.structures import TARGET_VOXEL_UM

    for axis, size in zip("YX", sizes[1:]):
        if size is not None and abs(size / TARGET_VOXEL_UM - 1) > XY_TOLERANCE:
            logging.getLogger("sparsessp").warning(
                "%s: pixel size %s = %g um differs from the model's %g um grid; predictions may suffer "
                "(resample it in xy first, e.g. with `sparsessp prepare`)", path, axis, size, TARGET_VOXEL_UM
            )
            return


def _to_uint16(channel: np.ndarray) -> tuple[np.ndarray, float, float]:
    import numpy as np

    lo, hi = (float(v) for v in np.percentile(channel, [0.1, 99.9]))
    span = hi - lo if hi > lo else 1.0
    scaled = np.clip((channel - lo) / span, 0.0, 1.0) * 65535.0
    return np.rint(scaled).astype(np.uint16), lo, hi


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from sparsessp.errors import UserError
    from sparsessp.evaluation import load_checkpoint_model
    from sparsessp.inference import (
        interpolate_z,
        model_sparse_ratio,
        predict_volume,
        task_id_of,
        to_model_grid,
        zscore,
    )
    from sparsessp.structures import DESCRIPTIONS, TARGET_VOXEL_UM

    handler = _WarningPrinter()
    logger = logging.getLogger("sparsessp")
    logger.addHandler(handler)
    try:
        structures = _parse_structures(args.structures)
        device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise UserError("--device cuda: no CUDA device is available here")
        files = expand_inputs(list(args.inputs))
        model = load_checkpoint_model(args.model)
        for name in structures:
            task_id_of(model, name)
        ratio = model_sparse_ratio(model)
        model_step = ratio * TARGET_VOXEL_UM
        jobs = _plan(args, files, structures)
        for job in jobs:  # validate every input before writing anything
            volume, sizes = _read(args, job.path)
            to_model_grid(zscore(volume), _z_step(args, job.path, sizes, model_step), ratio)
            del volume
        model.to(device)
        for job in jobs:
            volume, sizes = _read(args, job.path)
            _check_xy(job.path, sizes)
            step = _z_step(args, job.path, sizes, model_step)
            depth = volume.shape[0]
            previews = []
            for name in structures:
                pred = predict_volume(model, volume, name, z_step_um=step)
                if args.keep_input_grid:
                    pred = interpolate_z(pred, np.arange(depth) * step / TARGET_VOXEL_UM)
                    tl, z_size = volume.astype(np.float32), step
                else:
                    tl = interpolate_z(volume.astype(np.float32), np.arange(pred.shape[0]) * TARGET_VOXEL_UM / step)
                    z_size = TARGET_VOXEL_UM
                channels = [pred, tl] if args.with_input else [pred]
                names = [name, "TL"] if args.with_input else [name]
                units = (f"sparsessp prediction of {name} ({DESCRIPTIONS.get(name, name)}): z-scores of the "
                         f"structure's fluorescence intensity (per-volume standardised, as in training); "
                         f"model {args.model.name}, sparse ratio {ratio}; input {job.path.name}, z-step {step:g} um; "
                         f"written on a {z_size:g} um z grid")
                if args.with_input:
                    units += "; channel 'TL' is the input transmitted light (its own units)"
                data: np.ndarray = np.stack(channels)
                if args.dtype == "uint16":
                    scaled = [_to_uint16(c) for c in channels]
                    data = np.stack([s[0] for s in scaled])
                    units += "; stored as uint16 = 65535 * (value - lo) / (hi - lo) clipped, per channel (lo, hi) = " \
                             + ", ".join(f"({lo:.6g}, {hi:.6g})" for _, lo, hi in scaled) + " (0.1/99.9 percentiles)"
                _write(job.outputs[name], data, (z_size, sizes[1], sizes[2]), names, units)
                if job.preview is not None:
                    previews.append((name, pred, zscore(tl)))
                print(f"wrote {job.outputs[name]}")
            if job.preview is not None:
                _write_preview(job.preview, job.stem, previews)
                print(f"wrote {job.preview}")
    except OSError as exc:
        if exc.filename:
            raise UserError(f"{exc.filename}: {exc.strerror or exc}") from None
        raise
    finally:
        logger.removeHandler(handler)
    return 0


def _write(path: Path, data: np.ndarray, sizes: tuple[Any, Any, Any], names: list[str], description: str) -> None:
    from sparsessp.data.io import write_ome_tiff

    write_ome_tiff(path, data, sizes, names, description=description, overwrite=True)


def _write_preview(path: Path, stem: str, items: list[tuple[str, np.ndarray, np.ndarray]]) -> None:
    from sparsessp.evaluation import projections
    from sparsessp.report.figures import save_mip_panel

    rows = []
    for name, pred, tl in items:
        rows.append((name, [("TL", *projections(tl)), ("prediction", *projections(pred))]))
    save_mip_panel(path, rows, title=f"{stem}: max-intensity projections (z-scores)")
