"""Resource benchmark of model configurations (the paper's Table 6): parameters, MACs, memory and speed.

MACs are counted at the dispatcher with ``torch.utils.flop_counter.FlopCounterMode`` (it sees functional
and grouped convolutions; 1 MAC = 2 FLOPs) for one forward pass of one patch in eval mode. Timings exclude
warm-up and report the median of repeats. Peak memory is ``torch.cuda.max_memory_allocated`` on a GPU and
the peak RSS of a fresh child process on the CPU (so configurations do not inherit each other's peak).
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

from sparsessp.config import Config
from sparsessp.design import sparse_depth
from sparsessp.errors import UserError

INFER_VOLUME = (64, 232, 344)
"""A prepared AllenCell volume on the 0.29 um grid (z, y, x)."""


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
    peak_mem_bytes: int | None
    train_it_per_s: float | None
    infer_s_per_volume: float | None


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


def measure(name: str, cfg: Config, device: str, timing: bool, repeats: int) -> BenchResult:
    """Build one configuration and measure it on ``device``."""
    import torch

    from sparsessp.inference import sliding_window
    from sparsessp.models.registry import build_model

    torch.manual_seed(0)
    model = build_model(cfg).to(device)
    params = sum(p.numel() for p in model.parameters())
    macs = count_macs(model, cfg, device)
    train_rate = infer_s = peak = None
    if timing:
        cuda = device.startswith("cuda")
        sync = torch.cuda.synchronize if cuda else (lambda: None)
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        d, h, w = cfg.data.patch
        r = cfg.data.sparse_ratio
        b = cfg.train.batch_size
        x = torch.randn(b, 1, sparse_depth(d, r), h, w, device=device)
        y = torch.randn(b, 1, d, h, w, device=device)
        tasks = torch.arange(b, device=device) % cfg.num_tasks
        opt = torch.optim.Adam(model.parameters(), lr=cfg.train.lr)
        amp = torch.autocast("cuda", dtype=torch.bfloat16) if cuda and "16" in cfg.train.precision else None

        def step() -> None:
            model.train()
            opt.zero_grad(set_to_none=True)
            if amp is None:
                loss = torch.nn.functional.mse_loss(model(x, tasks), y)
            else:
                with amp:
                    loss = torch.nn.functional.mse_loss(model(x, tasks).float(), y)
            loss.backward()
            opt.step()

        train_rate = 1.0 / median_time(step, repeats, sync)
        model.eval()
        z, yy, xx = INFER_VOLUME
        vol = torch.randn(1, 1, z // r, yy, xx, device=device)

        def infer() -> None:
            with torch.no_grad():
                sliding_window(model, vol, task_id=0, window=cfg.data.patch, sparse_ratio=r)

        infer_s = median_time(infer, repeats, sync)
        if cuda:
            peak = int(torch.cuda.max_memory_allocated())
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    m = cfg.model
    return BenchResult(
        name, m.topology, m.interpolation, m.projection, m.conditioning, m.backbone, cfg.data.sparse_ratio,
        params, macs, peak, train_rate, infer_s,
    )


def _child(conn: Any, name: str, tree: dict, device: str, repeats: int) -> None:
    try:
        conn.send(("ok", measure(name, Config.model_validate(tree), device, True, repeats)))
    except Exception as exc:  # reported by the parent as one line
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


def _measure_isolated(name: str, cfg: Config, device: str, repeats: int) -> BenchResult:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, name, cfg.model_dump(mode="json"), device, repeats))
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
    """Measure each configuration; CPU timings run in a fresh process each for a clean peak RSS."""
    results = []
    for name, cfg in configs:
        if timing and device == "cpu":
            results.append(_measure_isolated(name, cfg, device, repeats))
        else:
            results.append(measure(name, cfg, device, timing, repeats))
        print(f"bench: measured {name}", file=sys.stderr, flush=True)
    return results


def format_table(results: list[BenchResult]) -> str:
    """A Markdown table; MACs in G, memory in GiB."""

    def num(v: float | None, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    lines = [
        "| name | topology | interp. | proj. | conditioning | backbone | r | params (M) | GMACs | peak GiB | "
        "train it/s | infer s/vol |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        peak = None if r.peak_mem_bytes is None else r.peak_mem_bytes / 2**30
        lines.append(
            f"| {r.name} | {r.topology} | {r.interpolation} | {r.projection} | {r.conditioning} | {r.backbone} | "
            f"{r.sparse_ratio} | {r.params / 1e6:.2f} | {r.macs / 1e9:.2f} | {num(peak, '.2f')} | "
            f"{num(r.train_it_per_s, '.3f')} | {num(r.infer_s_per_volume, '.3f')} |"
        )
    return "\n".join(lines)
