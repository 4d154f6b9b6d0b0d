"""Resource benchmark of model configurations (the paper's Table 6): parameters, MACs, memory and speed.

MACs are counted at the dispatcher with ``torch.utils.flop_counter.FlopCounterMode`` (it sees functional
and grouped convolutions; 1 MAC = 2 FLOPs) for one forward pass of one patch in eval mode. Timings exclude
warm-up, report the median of repeats and run in the dtype of ``train.precision`` (autocast for bf16 / fp16,
as training does). Training and inference memory are measured apart, as the paper's Table 6 columns: on a GPU
the peak of ``torch.cuda.max_memory_allocated`` during the training steps, then (optimiser state freed, peak
reset) during sliding-window inference of one volume; on the CPU the peak RSS of a fresh child process per
phase (so neither phase, nor another configuration, inherits the other's peak).
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sparsessp.config import Config
from sparsessp.design import sparse_depth
from sparsessp.errors import UserError

if TYPE_CHECKING:
    from sparsessp.grids import Cell

INFER_VOLUME = (64, 232, 344)
"""A prepared AllenCell volume on the 0.29 um grid (z, y, x)."""

TRAIN_PRECISIONS = {"32-true": "fp32", "32": "fp32", "64-true": "fp64", "16-mixed": "fp16", "16": "fp16",
                    "bf16-mixed": "bf16", "bf16": "bf16"}
"""``train.precision`` -> the dtype its steps compute in (names of :mod:`sparsessp.precision`, plus fp64)."""


@dataclasses.dataclass
class BenchResult:
    name: str
    topology: str
    interpolation: str
    projection: str
    conditioning: str
    backbone: str
    sparse_ratio: int
    params: int
    macs: int
    precision: str
    train_it_per_s: float | None = None
    train_mem_bytes: int | None = None
    infer_s_per_volume: float | None = None
    infer_mem_bytes: int | None = None


def timing_precision(cfg: Config, device: str = "cpu") -> str:
    """The dtype training computes in under ``cfg.train.precision`` on ``device`` (fp32, fp64, bf16 or fp16;
    ``auto`` is bf16 where the device runs it natively, else fp32)."""
    from sparsessp import precision as precisions

    if cfg.train.precision == "auto":
        return precisions.best(device)
    return TRAIN_PRECISIONS.get(cfg.train.precision, cfg.train.precision)


def median_time(fn: Callable[[], None], repeats: int, sync: Callable[[], None], warmup: int = 1) -> float:
    """Median time of ``fn`` over ``repeats`` calls after ``warmup`` untimed ones; ``sync`` waits for the device."""
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def count_macs(model: Any, cfg: Config, device: str) -> int:
    """Forward MACs of one patch (batch 1, eval mode), counted at the dispatcher."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    d, h, w = cfg.data.patch
    x = torch.randn(1, 1, sparse_depth(d, cfg.data.sparse_ratio), h, w, device=device)
    t = torch.zeros(1, dtype=torch.long, device=device)
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x, t)
    return counter.get_total_flops() // 2


def _context(precision: str, device: str) -> AbstractContextManager:
    """Autocast for bf16 / fp16 (one-line error where the device cannot run it); fp32 and fp64 need none."""
    from sparsessp import precision as precisions

    return nullcontext() if precision in ("fp32", "fp64") else precisions.autocast(precision, device)


def _peak(device: str) -> int:
    """Peak memory so far: CUDA's allocator peak, or this process's peak RSS (bytes)."""
    import torch

    if device.startswith("cuda"):
        return int(torch.cuda.max_memory_allocated())
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _train_phase(model: Any, cfg: Config, device: str, prec: str, repeats: int) -> tuple[float, int]:
    """Training it/s (batch ``train.batch_size``, Adam, MSE) and the peak memory of those steps."""
    import torch

    cuda = device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    dtype = torch.float64 if prec == "fp64" else torch.float32
    d, h, w = cfg.data.patch
    r, b = cfg.data.sparse_ratio, cfg.train.batch_size
    x = torch.randn(b, 1, sparse_depth(d, r), h, w, device=device, dtype=dtype)
    y = torch.randn(b, 1, d, h, w, device=device, dtype=dtype)
    tasks = torch.arange(b, device=device) % cfg.num_tasks
    opt = torch.optim.Adam(model.parameters(), lr=cfg.train.lr)
    if cuda:
        torch.cuda.reset_peak_memory_stats()

    def step() -> None:
        model.train()
        opt.zero_grad(set_to_none=True)
        with _context(prec, device):
            out = model(x, tasks)
        loss = torch.nn.functional.mse_loss(out.to(dtype), y)
        loss.backward()
        opt.step()

    rate = 1.0 / median_time(step, repeats, sync)
    return rate, _peak(device)


def _infer_phase(model: Any, cfg: Config, device: str, prec: str, repeats: int) -> tuple[float, int]:
    """Seconds per sliding-window prediction of one :data:`INFER_VOLUME` and the peak memory of it."""
    import torch

    from sparsessp.inference import sliding_window

    cuda = device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    model.eval()
    r = cfg.data.sparse_ratio
    z, yy, xx = INFER_VOLUME
    dtype = torch.float64 if prec == "fp64" else torch.float32
    vol = torch.randn(1, 1, sparse_depth(z, r), yy, xx, device=device, dtype=dtype)

    def infer() -> None:
        with torch.no_grad(), _context(prec, device):
            sliding_window(model, vol, task_id=0, window=cfg.data.patch, sparse_ratio=r)

    seconds = median_time(infer, repeats, sync)
    return seconds, _peak(device)


def measure(name: str, cfg: Config, device: str, phases: tuple[str, ...], repeats: int) -> BenchResult:
    """Build one configuration on ``device`` and measure it: counts always, then each of ``phases``
    (``"train"``, ``"infer"``) in that order, each with the weights' layout ``train.memory_format`` /
    ``inference.memory_format`` means on ``device`` (as ``train`` and ``predict`` run them)."""
    import torch

    from sparsessp import memory_format
    from sparsessp.models.registry import build_model

    prec = timing_precision(cfg, device)
    torch.manual_seed(0)
    model = build_model(cfg).to(device)
    params = sum(p.numel() for p in model.parameters())
    macs = count_macs(model, cfg, device)
    m = cfg.model
    result = BenchResult(name, m.topology, m.interpolation, m.projection, m.conditioning, m.backbone,
                         cfg.data.sparse_ratio, params, macs, prec)
    if prec == "fp64":
        model = model.double()
    if "train" in phases:
        memory_format.for_device(model, cfg.train.memory_format, device)
        result.train_it_per_s, result.train_mem_bytes = _train_phase(model, cfg, device, prec, repeats)
    if "infer" in phases:
        memory_format.for_device(model, cfg.inference.memory_format, device)
        result.infer_s_per_volume, result.infer_mem_bytes = _infer_phase(model, cfg, device, prec, repeats)
    return result


def _child(conn: Any, name: str, tree: dict, device: str, phase: str, repeats: int) -> None:
    try:
        conn.send(("ok", measure(name, Config.model_validate(tree), device, (phase,), repeats)))
    except Exception as exc:  # reported by the parent as one line
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


def _measure_isolated(name: str, cfg: Config, device: str, phase: str, repeats: int) -> BenchResult:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, name, cfg.model_dump(mode="json"), device, phase, repeats))
    proc.start()
    child.close()
    status, payload = parent.recv()
    proc.join()
    if status != "ok":
        raise UserError(f"bench {name}: {payload}")
    return payload


def run_bench(
    configs: Iterable[tuple[str, Config]], device: str = "cpu", timing: bool = True, repeats: int = 3
) -> list[BenchResult]:
    """Measure each configuration; on the CPU each timed phase runs in a fresh process (clean peak RSS)."""
    results = []
    for name, cfg in configs:
        if timing and device == "cpu":
            trained = _measure_isolated(name, cfg, device, "train", repeats)
            inferred = _measure_isolated(name, cfg, device, "infer", repeats)
            trained.infer_s_per_volume, trained.infer_mem_bytes = inferred.infer_s_per_volume, inferred.infer_mem_bytes
            results.append(trained)
        else:
            results.append(measure(name, cfg, device, ("train", "infer") if timing else (), repeats))
        print(f"bench: measured {name}", file=sys.stderr, flush=True)
    return results


PAPER_COLUMNS = (("train_it_per_s", "paper train it/s", ".2f"), ("train_mem_MiB", "paper train MiB", ".0f"),
                 ("infer_s_per_iter", "paper infer s", ".2f"), ("infer_mem_MiB", "paper infer MiB", ".0f"),
                 ("MACs_G", "paper GMACs", ".2f"))
"""The paper's Table 6 columns (``../shared/paper/tables/table6_resources.csv``) shown beside ours."""


def format_table(results: list[BenchResult], paper: Mapping[str, Mapping[str, float]] | None = None) -> str:
    """A Markdown table; MACs in G, memory in MiB; ``paper`` (result name -> Table 6 row) adds its columns."""

    def num(v: float | None, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    def mib(v: int | None) -> str:
        return num(None if v is None else v / 2**20, ".0f")

    extra = [title for _, title, _ in PAPER_COLUMNS] if paper is not None else []
    headers = ["name", "topology", "interp.", "proj.", "conditioning", "backbone", "r", "dtype", "params (M)",
               "GMACs", "train it/s", "train MiB", "infer s/vol", "infer MiB", *extra]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for r in results:
        cells = [r.name, r.topology, r.interpolation, r.projection, r.conditioning, r.backbone, str(r.sparse_ratio),
                 r.precision, f"{r.params / 1e6:.2f}", f"{r.macs / 1e9:.2f}", num(r.train_it_per_s, ".3f"),
                 mib(r.train_mem_bytes), num(r.infer_s_per_volume, ".3f"), mib(r.infer_mem_bytes)]
        if paper is not None:
            row = paper.get(r.name) or {}
            cells += [num(row.get(key), fmt) for key, _, fmt in PAPER_COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paper_rows(grid_cells: Iterable[Cell], folder: Path | None) -> dict[str, dict[str, float]] | None:
    """The paper's Table 6 row of each cell of the ``table6`` grid, by cell name (None: tables not present)."""
    from sparsessp.report.paper import resource_table

    table = resource_table(folder)
    if table is None:
        return None
    return {c.name: table[(c.labels["approach"], c.labels["topology"])] for c in grid_cells
            if (c.labels.get("approach"), c.labels.get("topology")) in table}
