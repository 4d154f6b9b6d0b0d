"""Everything checked before any work: inputs, choices, metadata, outputs, the output folder.

:func:`make_plan` opens every input lazily, works out what must be chosen (TL channel, z-step) and says
all of it in one message, refuses metadata that cannot be right, reads each selected timepoint once
plane by plane to normalise it (mean and standard deviation in float64; NaN/Inf and constant volumes
refused), and decides every output path. Nothing is written until the whole plan stands.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sparsessp.data.io import LazyImage, check_depth, is_zarr, open_image
from sparsessp.errors import InputError, UserError
from sparsessp.predict.options import DTYPES, FORMATS, SUFFIXES, PredictOptions, parse_timepoints
from sparsessp.structures import TARGET_VOXEL_UM

log = logging.getLogger("sparsessp")

IMAGE_SUFFIXES: tuple[str, ...] = (".tif", ".tiff", ".btf", ".czi", ".zarr")
XY_TOLERANCE = 0.05
"""Relative difference between the input's pixel size and the 0.29 um grid above which we warn."""
PLAUSIBLE_UM: tuple[float, float] = (0.005, 100.0)
"""Voxel sizes outside this range (um) cannot come from a light microscope: the metadata is wrong."""


@dataclass
class Output:
    """One output file or folder: its structures (channels) in order, and its hidden partial store."""

    path: Path
    structures: list[str]

    @property
    def partial(self) -> Path:
        return self.path.parent / f".{self.path.name}.partial"


@dataclass
class Job:
    """One input file, the choices made for it, and the outputs it produces."""

    path: Path
    stem: str
    channel: int
    channel_names: list[str]
    timepoints: list[int]
    shape: tuple[int, int, int]
    z_step: float
    xy: tuple[float | None, float | None]
    time_increment: float | None
    outputs: list[Output]
    preview: Path | None
    stats: dict[int, tuple[float, float]] = field(default_factory=dict)
    """Per timepoint: mean and standard deviation of the TL volume (the per-volume z-score)."""
    done: bool = False


@dataclass
class Plan:
    """The checked plan of a run: jobs, model facts, and the outputs skipped as finished."""

    jobs: list[Job]
    options: PredictOptions
    ratio: int
    window: tuple[int, int, int]
    skipped: list[Path] = field(default_factory=list)


def file_stem(path: Path) -> str:
    name = path.name
    for suffix in (".ome.tiff", ".ome.tif", ".ome.zarr", *IMAGE_SUFFIXES):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _is_image(path: Path) -> bool:
    return not path.name.startswith(".") and (path.name.lower().endswith(IMAGE_SUFFIXES) or is_zarr(path))


def expand_inputs(inputs: list[Path]) -> list[Path]:
    """Files as given; folders replaced by their images (sorted, not recursive; Zarr folders are images)."""
    files: list[Path] = []
    for item in inputs:
        if not item.exists():
            raise InputError(f"input not found: {item}")
        if item.is_dir() and not item.name.lower().endswith(".zarr") and not is_zarr(item):
            found = sorted(p for p in item.iterdir() if _is_image(p))
            if not found:
                raise InputError(f"folder {item} holds no image files ({', '.join(IMAGE_SUFFIXES)}, OME-Zarr)")
            files.extend(found)
        else:
            files.append(item)
    return files


def parse_structures(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    if not names:
        raise InputError("--structures: give at least one structure name")
    if len(set(names)) != len(names):
        raise InputError(f"--structures lists a name twice: {text}")
    return names


def check_out_folder(out: Path) -> None:
    """The output folder (or the folder it will be made in) must be a writable folder; checked before work."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder")
    existing = out
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"--out {out}: {existing} is a file, not a folder")
    probe = existing / f".sparsessp-write-test-{os.getpid()}"
    try:
        probe.touch()
        probe.unlink()
    except OSError:
        raise UserError(f"--out {out}: the folder {existing} is not writable; choose another --out") from None
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"--out {out}: the folder {existing} is not writable; choose another --out")


def _channel_choice(image: LazyImage, choice: int | str | None, names: list[str]) -> tuple[int | None, str]:
    """The TL channel's index, or None with the text that asks for it."""
    count = len(names)
    listed = ", ".join(f"{i}={n}" for i, n in enumerate(names))
    if choice is None:
        if count == 1:
            return 0, ""
        return None, f"{count} channels ({listed}): choose the TL channel with --channel (name or index)"
    if isinstance(choice, str) and not choice.lstrip("-").isdigit():
        if choice not in names:
            raise InputError(f"{image.path} has no channel named {choice!r} (channels: {listed})")
        return names.index(choice), ""
    index = int(choice)
    if not 0 <= index < count:
        raise InputError(f"{image.path} has {count} channel(s) ({listed}); --channel {index} is out of range")
    return index, ""


def _plausible(value: float | None) -> bool:
    return value is None or PLAUSIBLE_UM[0] <= value <= PLAUSIBLE_UM[1]


def _z_step(image: LazyImage, options: PredictOptions) -> tuple[float | None, str]:
    if options.z_step is not None:
        if not (math.isfinite(options.z_step) and options.z_step > 0):
            raise InputError(f"--z-step must be a positive number of micrometres, got {options.z_step}")
        return float(options.z_step), ""
    step = image.physical_sizes[0]
    if step is None or not step > 0:
        return None, "no z-step in its metadata: give the stack's z-step with --z-step UM (e.g. --z-step 1.16)"
    if not _plausible(step):
        raise InputError(
            f"{image.path}: its metadata gives a z-step of {step:g} um, which looks wrong (a unit mix-up?); "
            "give the real z-step with --z-step UM"
        )
    return float(step), ""


def _xy(image: LazyImage, options: PredictOptions) -> tuple[float | None, float | None]:
    if options.pixel_size is not None:
        if not (math.isfinite(options.pixel_size) and options.pixel_size > 0):
            raise InputError(f"--pixel-size must be a positive number of micrometres, got {options.pixel_size}")
        return float(options.pixel_size), float(options.pixel_size)
    y, x = image.physical_sizes[1:]
    for axis, size in zip("YX", (y, x)):
        if not _plausible(size):
            raise InputError(
                f"{image.path}: its metadata gives a pixel size {axis} of {size:g} um, which looks wrong "
                "(a unit mix-up?); give the real pixel size with --pixel-size UM"
            )
        if size is not None and abs(size / TARGET_VOXEL_UM - 1) > XY_TOLERANCE:
            log.warning(
                "%s: pixel size %s = %g um differs from the model's %g um grid; predictions may suffer "
                "(resample it in xy first, e.g. with `sparsessp prepare`)", image.path, axis, size, TARGET_VOXEL_UM
            )
            break
    return y, x


def volume_stats(image: LazyImage, t: int, channel: int, what: str) -> tuple[float, float]:
    """Mean and standard deviation of one TL volume, read plane by plane (float64, Chan's combination)."""
    count, mean, m2 = 0, 0.0, 0.0
    for z in range(image.shape[2]):
        plane = image.read((t, channel, z)).astype(np.float64)
        finite = np.isfinite(plane)
        if not finite.all():
            y, x = (int(v) for v in np.argwhere(~finite)[0])
            raise InputError(
                f"{what} has {int((~finite).sum())} NaN/Inf voxels in plane z={z}, the first at (y, x) = ({y}, {x})"
            )
        n = plane.size
        plane_mean = float(plane.mean())
        plane_m2 = float(((plane - plane_mean) ** 2).sum())
        delta = plane_mean - mean
        total = count + n
        mean += delta * n / total
        m2 += plane_m2 + delta * delta * count * n / total
        count = total
    std = math.sqrt(m2 / count) if count else 0.0
    if std == 0.0 or not math.isfinite(std):
        raise InputError(f"{what} is constant (every voxel = {mean:g}); it carries no signal")
    return mean, std


def _outputs(stem: str, structures: list[str], options: PredictOptions) -> list[Output]:
    suffix = SUFFIXES[options.format]
    if options.merge:
        return [Output(options.out / f"{stem}_prediction{suffix}", list(structures))]
    return [Output(options.out / f"{stem}_{s}{suffix}", [s]) for s in structures]


def _check_options(options: PredictOptions) -> None:
    if options.format not in FORMATS:
        raise UserError(f"--format {options.format!r}: choose {' or '.join(FORMATS)}")
    if options.dtype not in DTYPES:
        raise UserError(f"--dtype {options.dtype!r}: choose {' or '.join(DTYPES)}")
    if options.dtype == "uint16" and options.format == "ome-zarr":
        raise UserError("--dtype uint16 is for OME-TIFF output; OME-Zarr stores float32 (drop --dtype)")
    if not options.max_memory_gb > 0:
        raise UserError(f"--max-memory must be a positive number of GB, got {options.max_memory_gb}")
    if options.devices < 1:
        raise UserError(f"--devices must be at least 1, got {options.devices}")
    if options.resume and options.overwrite:
        raise UserError("--resume keeps finished outputs and --overwrite replaces them: give one of them")


def make_plan(files: list[Path], options: PredictOptions, ratio: int, window: tuple[int, int, int]) -> Plan:
    """Check every input and output before any work (see the module docstring); returns the :class:`Plan`."""
    from sparsessp.inference import to_model_grid

    _check_options(options)
    check_out_folder(options.out)
    jobs: list[Job] = []
    skipped: list[Path] = []
    seen: dict[Path, Path] = {}
    for path in files:
        with open_image(path) as image:
            for note in image.notes:
                log.warning("%s", note)
            check_depth(image)
            names = list(image.channel_names) if len(image.channel_names) == image.shape[1] else [
                f"C{i}" for i in range(image.shape[1])]
            channel, ask_channel = _channel_choice(image, options.channel, names)
            step, ask_step = _z_step(image, options)
            asks = [a for a in (ask_channel, ask_step) if a]
            if asks:
                count = image.shape[0]
                times = (f"; its {count} timepoints are all predicted unless --timepoints (e.g. 0-{count - 1}) "
                         "picks some" if count > 1 and options.timepoints is None else "")
                raise InputError(f"{path} needs choices: " + "; ".join(asks) + times)
            assert channel is not None and step is not None
            to_model_grid(np.zeros((image.shape[2], 1, 1), np.float32), step, ratio, source=str(path))
            xy = _xy(image, options)
            timepoints = parse_timepoints(options.timepoints, image.shape[0], path)
            stem = file_stem(path)
            outputs = _outputs(stem, options.structures, options)
            preview = options.out / f"{stem}_preview.png" if options.preview else None
            job = Job(path, stem, channel, names, timepoints, image.shape[2:], step, xy, image.time_increment,
                      outputs, preview)
            finals = [o.path for o in outputs] + ([preview] if preview else [])
            for out in finals:
                if out in seen:
                    raise InputError(f"{path} and {seen[out]} would both write {out}; rename one of them")
                seen[out] = path
            existing = [p for p in finals if p.exists()]
            if existing and options.resume and len(existing) == len(finals):
                job.done = True
                skipped.extend(existing)
                for output in outputs:  # a run killed between finishing an output and tidying up
                    shutil.rmtree(output.partial, ignore_errors=True)
            elif existing and not (options.overwrite or options.resume):
                raise UserError(f"{existing[0]} exists; refusing to overwrite it (use --overwrite, or --resume)")
            if not job.done:
                for t in timepoints:
                    when = f" at timepoint {t}" if image.shape[0] > 1 else ""
                    what = f"channel {names[channel]!r} of {path}{when}"
                    job.stats[t] = volume_stats(image, t, channel, what)
            jobs.append(job)
    return Plan(jobs, options, ratio, window, skipped)


def partial_key(job: Job, output: Output, plan: Plan) -> str:
    """What a partial store's contents depend on: a resumed run reuses it only when this matches."""
    options = plan.options
    model = options.model.resolve()
    source = job.path.resolve()
    facts: dict[str, Any] = {
        "model": [str(model), model.stat().st_size, model.stat().st_mtime_ns],
        "input": [str(source), _mtime(source)],
        "structures": output.structures,
        "channel": job.channel,
        "timepoints": job.timepoints,
        "z_step": job.z_step,
        "with_input": options.with_input,
        "keep_input_grid": options.keep_input_grid,
        "precision": options.precision,
    }
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:16]


def _mtime(path: Path) -> int:
    with contextlib.suppress(OSError):
        return path.stat().st_mtime_ns
    return 0
