"""Running a plan: each (file, timepoint) unit predicted block by block, shared over processes, finished.

A unit reads its TL block by block (with the window margin), normalises it with the plan's per-volume
mean and standard deviation, brings it to the model's sparse z grid, predicts every structure on the
device (:func:`sparsessp.inference.predict_block`) and writes each finished block to the outputs'
partial stores. ``devices`` > 1 starts that many processes (spawned, one device each: ``cuda:i``; on a
CPU each with the parent's thread count); unit ``k`` goes to process ``k % devices``, so the same unit
is computed by the same code, with the same numbers, whatever the count. Peak memory is the block
buffers (``max_memory_gb``), the model, and the input planes of one block: it does not grow with the
field's size or the number of timepoints.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from sparsessp.errors import UserError
from sparsessp.fileio import DiskFullError, remove_stale_temps
from sparsessp.predict import writers
from sparsessp.predict.options import PredictOptions
from sparsessp.predict.plan import Job, Plan, expand_inputs, make_plan, parse_structures, partial_key
from sparsessp.structures import DESCRIPTIONS, TARGET_VOXEL_UM

log = logging.getLogger("sparsessp")


class Progress(Protocol):
    """What a run reports as it goes (the CLI draws a rich progress bar from it)."""

    def start(self, total_windows: int, units: int) -> None: ...

    def unit(self, label: str) -> None: ...

    def advance(self, windows: int) -> None: ...

    def wrote(self, path: Path) -> None: ...


@dataclass
class PredictResult:
    """Outputs written, and outputs skipped because a previous run finished them (``--resume``)."""

    written: list[Path]
    skipped: list[Path]


@dataclass
class _Unit:
    job: int
    t_index: int
    windows: int


@contextlib.contextmanager
def _quiet_resampling() -> Iterator[None]:
    """The plan already warned about resampling each file; the blocks would repeat it."""
    logger = logging.getLogger("sparsessp.inference")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


class _Predictor:
    """Model, device and settings of one process; predicts units of a plan."""

    def __init__(self, plan: Plan, model: Any, device: str) -> None:
        from sparsessp.inference import inference_settings, prepare_model, task_id_of, weight_map

        self.plan = plan
        self.model = prepare_model(model, device)
        self.device = device
        inference = inference_settings(model)
        self.overlap, self.batch = inference.overlap, inference.window_batch
        self.weights = weight_map(plan.window, inference.blend, inference.sigma_scale).to(device)
        self.tasks = {s: task_id_of(model, s) for s in plan.options.structures}

    def grid(self, job: Job) -> Any:
        from sparsessp.inference import to_model_grid, window_grid

        with _quiet_resampling():
            sparse = to_model_grid(np.zeros((job.shape[0], 1, 1), np.float32), job.z_step, self.plan.ratio)
        return window_grid((sparse.shape[0], *job.shape[1:]), self.plan.window, self.plan.ratio, self.overlap)

    def block_size(self, grid: Any) -> tuple[int, int]:
        from sparsessp.inference import choose_block

        return choose_block(grid, self.plan.options.max_memory_gb * 2**30, self.batch)

    def windows(self, job: Job) -> int:
        """Model windows one unit of ``job`` runs (all structures, all blocks): the progress bar's unit."""
        from sparsessp.inference import block_windows, blocks

        grid = self.grid(job)
        total = sum(block_windows(grid, block) for block in blocks(grid, self.block_size(grid)))
        return total * len(self.plan.options.structures)

    def run_unit(self, unit: _Unit, progress: Progress | None) -> None:
        from sparsessp.data.io import open_image
        from sparsessp.inference import block_windows, blocks, interpolate_z, predict_block, to_model_grid

        options = self.plan.options
        job = self.plan.jobs[unit.job]
        t = job.timepoints[unit.t_index]
        mean, std = job.stats[t]
        if progress is not None:
            progress.unit(f"{job.path.name} t={t}")
        grid = self.grid(job)
        step = job.z_step
        depth = job.shape[0]
        out_depth = depth if options.keep_input_grid else grid.out_depth
        previews: dict[str, list[np.ndarray]] = {}
        want_preview = job.preview is not None and unit.t_index == 0
        if want_preview:
            width = job.shape[2]
            previews = {name: [np.full(job.shape[1:], -np.inf, np.float32), np.full((out_depth, width), -np.inf,
                                                                                    np.float32)]
                        for name in [*options.structures, "TL"]}
        with open_image(job.path) as image:
            cache: dict[tuple[int, int, int, int], np.ndarray] = {}

            def read(y: slice, x: slice) -> np.ndarray:
                key = (y.start, y.stop, x.start, x.stop)
                if key not in cache:
                    cache.clear()
                    raw = image.read((t, job.channel, slice(None), y, x))
                    with _quiet_resampling():
                        cache[key] = to_model_grid((raw - np.float32(mean)) / np.float32(std), step, self.plan.ratio)
                return cache[key]

            for by, bx in blocks(grid, self.block_size(grid)):
                tl_block: np.ndarray | None = None
                if options.with_input or want_preview:
                    raw = image.read((t, job.channel, slice(None), by, bx))
                    tl_block = raw if options.keep_input_grid else interpolate_z(
                        raw, np.arange(grid.out_depth) * TARGET_VOXEL_UM / step)
                results: dict[str, np.ndarray] = {}
                for name in options.structures:
                    pred = predict_block(self.model, read, grid, (by, bx), self.tasks[name], self.weights,
                                         self.batch, self.device, options.precision).cpu().numpy()
                    if options.keep_input_grid:
                        pred = interpolate_z(pred, np.arange(depth) * step / TARGET_VOXEL_UM)
                    results[name] = pred
                    if progress is not None:
                        progress.advance(block_windows(grid, (by, bx)))
                for output in job.outputs:
                    for c, name in enumerate(output.structures):
                        writers.write_block(output.partial, unit.t_index, c, by, bx, results[name])
                    if options.with_input and tl_block is not None:
                        writers.write_block(output.partial, unit.t_index, len(output.structures), by, bx, tl_block)
                if want_preview and tl_block is not None:
                    tl_z = (tl_block - np.float32(mean)) / np.float32(std)
                    for name, volume in [*results.items(), ("TL", tl_z)]:
                        xy, xz = previews[name]
                        xy[by, bx] = volume.max(axis=0)
                        np.maximum(xz[:, bx], volume.max(axis=1), out=xz[:, bx])
                # Free this block's arrays before the next block allocates its buffers; otherwise each block
                # after the first holds two blocks' predictions at once and the peak grows with the field.
                del results, pred, tl_block
        if want_preview and job.preview is not None:
            rows = [(name, [("TL", *previews["TL"]), ("prediction", *previews[name])]) for name in options.structures]
            writers.save_preview(job.preview, f"{job.stem}: max-intensity projections (z-scores)", rows)
            if progress is not None:
                progress.wrote(job.preview)
        for output in job.outputs:
            writers.mark_done(output.partial, unit.t_index)


def load_prediction_model(path: Path) -> Any:
    """The network of a sparsessp checkpoint, for prediction (eval mode, on the CPU)."""
    from sparsessp.engine.checkpoint import load_model

    return load_model(path)


def _device(options: PredictOptions) -> str:
    device = options.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available here")
    if device.startswith("cuda") and options.devices > torch.cuda.device_count():
        raise UserError(f"--devices {options.devices}: only {torch.cuda.device_count()} CUDA device(s) here")
    return device


def _worker_device(device: str, index: int, count: int) -> str:
    if count > 1 and device.startswith("cuda"):
        return f"cuda:{index}"
    return device


def _output_meta(plan: Plan, job: Job, structures: list[str]) -> writers.OutputMeta:
    options = plan.options
    z_size = job.z_step if options.keep_input_grid else TARGET_VOXEL_UM
    names = [*structures, *(["TL"] if options.with_input else [])]
    what = ", ".join(f"{s} ({DESCRIPTIONS.get(s, s)})" for s in structures)
    description = (f"sparsessp prediction of {what}: z-scores of the structure's fluorescence intensity "
                   f"(per-volume standardised, as in training); model {options.model.name}, sparse ratio "
                   f"{plan.ratio}; input {job.path.name}, z-step {job.z_step:g} um, timepoints "
                   f"{_ranges(job.timepoints)}; written on a {z_size:g} um z grid")
    if options.with_input:
        description += "; channel 'TL' is the input transmitted light (its own units)"
    return writers.OutputMeta((z_size, *job.xy), job.time_increment, names, description)


def _ranges(values: list[int]) -> str:
    parts: list[str] = []
    for v in values:
        if parts and parts[-1][1] == v - 1:
            parts[-1] = (parts[-1][0], v)
        else:
            parts.append((v, v))  # type: ignore[arg-type]
    return ",".join(f"{a}" if a == b else f"{a}-{b}" for a, b in parts)  # type: ignore[misc]


def _shard(payload: bytes, index: int, count: int, device: str, threads: int, queue: Any) -> None:
    """One of ``devices`` > 1 processes: the parent's pickled plan, units ``index::count``, events on ``queue``.

    CPU kernels may round differently with another thread count, so every process uses the parent's:
    the outputs are then identical to a one-process run (on a CPU, more processes do not run faster).
    """
    import pickle

    try:
        torch.set_num_threads(threads)
        plan: Plan = pickle.loads(payload)
        predictor = _Predictor(plan, load_prediction_model(plan.options.model), device)
        progress = _QueueProgress(queue)
        for k, unit in enumerate(_pending(plan, predictor)):
            if k % count == index:
                predictor.run_unit(unit, progress)
        queue.put(("done", None))
    except UserError as exc:
        queue.put(("error", str(exc)))
    except Exception:
        queue.put(("crash", traceback.format_exc()))


class _QueueProgress:
    """A worker's progress events, sent to the parent that draws the bar."""

    def __init__(self, queue: Any) -> None:
        self.queue = queue

    def start(self, total_windows: int, units: int) -> None:
        self.queue.put(("start", (total_windows, units)))

    def unit(self, label: str) -> None:
        self.queue.put(("label", label))

    def advance(self, windows: int) -> None:
        self.queue.put(("advance", windows))

    def wrote(self, path: Path) -> None:
        self.queue.put(("wrote", str(path)))


def _pending(plan: Plan, predictor: _Predictor) -> list[_Unit]:
    """Units not finished yet, in file then timepoint order (the same list in every process)."""
    units = []
    for j, job in enumerate(plan.jobs):
        if job.done:
            continue
        windows = predictor.windows(job)
        for k in range(len(job.timepoints)):
            if all(k in writers.finished_timepoints(o.partial) for o in job.outputs):
                continue
            units.append(_Unit(j, k, windows))
    return units


def _run_shards(plan: Plan, device: str, progress: Progress | None) -> None:
    import multiprocessing
    import pickle

    count = plan.options.devices
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    payload = pickle.dumps(plan)
    threads = torch.get_num_threads()
    procs = [context.Process(target=_shard, args=(payload, i, count, _worker_device(device, i, count), threads,
                                                  queue), daemon=True) for i in range(count)]
    for proc in procs:
        proc.start()
    running, failure = count, None
    try:
        while running:
            kind, value = queue.get()
            if kind == "done":
                running -= 1
            elif kind in ("error", "crash"):
                running -= 1
                failure = failure or (kind, value)
            elif progress is not None and kind == "advance":
                progress.advance(int(value))
            elif progress is not None and kind == "label":
                progress.unit(str(value))
            elif progress is not None and kind == "wrote":
                progress.wrote(Path(value))
    finally:
        for proc in procs:
            proc.join(timeout=60)
    if failure is not None:
        if failure[0] == "error":
            raise UserError(failure[1])
        raise RuntimeError(f"a prediction process failed:\n{failure[1]}")


def _finish(plan: Plan, progress: Progress | None) -> list[Path]:
    written = []
    for job in plan.jobs:
        if job.done:
            continue
        for output in job.outputs:
            meta = _output_meta(plan, job, output.structures)
            if plan.options.format == "ome-zarr":
                writers.finish_ome_zarr(output.partial, output.path, meta)
            else:
                writers.finish_ome_tiff(output.partial, output.path, meta, plan.options.dtype)
            written.append(output.path)
            if progress is not None:
                progress.wrote(output.path)
    return written


def predict_files(inputs: list[Path], options: PredictOptions, progress: Progress | None = None) -> PredictResult:
    """Predict ``options.structures`` for every input file (or folder of them) into ``options.out``.

    All checks run first (:func:`sparsessp.predict.plan.make_plan`): nothing is written unless every
    input, choice and output is right. Then every (file, timepoint) is predicted block by block in
    bounded memory, on ``options.devices`` processes, and each output is finished atomically: complete
    or absent. With ``options.resume`` finished outputs and timepoints of an interrupted run are kept.
    """
    from sparsessp.inference import model_sparse_ratio, model_window, task_id_of
    from sparsessp.precision import resolve

    options.structures = parse_structures(",".join(options.structures))
    device = _device(options)
    options.precision = resolve(options.precision, device)
    files = expand_inputs(list(inputs))
    model = load_prediction_model(options.model)
    for name in options.structures:
        task_id_of(model, name)
    plan = make_plan(files, options, model_sparse_ratio(model), model_window(model))
    predictor = _Predictor(plan, model, _worker_device(device, 0, options.devices))
    try:
        for job in plan.jobs:
            if not job.done:
                for output in job.outputs:
                    shape = (len(job.timepoints), len(output.structures) + int(options.with_input),
                             job.shape[0] if options.keep_input_grid else predictor.grid(job).out_depth,
                             *job.shape[1:])
                    remove_stale_temps(output.path)
                    writers.create_partial(output.partial, shape, partial_key(job, output, plan), options.resume)
        units = _pending(plan, predictor)
        if progress is not None:
            progress.start(sum(u.windows for u in units), len(units))
        if options.devices > 1:
            _run_shards(plan, device, progress)
        else:
            for unit in units:
                predictor.run_unit(unit, progress)
        written = _finish(plan, progress)
    except OSError as exc:
        _discard(plan)
        if exc.errno in (28, 122):  # ENOSPC, EDQUOT
            raise DiskFullError(f"disk full while writing into {options.out}; no partial output was left") from None
        raise
    except Exception:
        _discard(plan)
        raise
    return PredictResult(written, plan.skipped)


def _discard(plan: Plan) -> None:
    """After an error, remove the partial stores (a killed run leaves them for ``--resume``)."""
    for job in plan.jobs:
        for output in job.outputs:
            if output.partial.exists():
                shutil.rmtree(output.partial, ignore_errors=True)


def predict_file(path: str | Path, model: str | Path, structures: list[str], out: str | Path,
                 **settings: Any) -> PredictResult:
    """Predict one file: ``predict_files([path], PredictOptions(model, structures, out, **settings))``."""
    options = PredictOptions(Path(model), list(structures), Path(out), **settings)
    return predict_files([Path(path)], options)
