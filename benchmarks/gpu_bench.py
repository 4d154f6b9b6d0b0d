"""The released architectures at full size on an NVIDIA GPU: MoDE route check, train it/s, peak memory and
inference seconds per 64 x 232 x 344 volume in fp32 / bf16 / fp16, ours beside the authors' code (anchors.md).

Models (random weights): the released SparseSSP RepMode 3-to-2D network (198,883,264 parameters, r = 8)
and RepMode 3D (mult_chan 32). With the shared fixtures present, the SparseSSP weights are a random state
dict with the release's key names and the MANIFEST's shapes, taken through the importer's conversion
(``convert_state_dict``, ``spec_from_state_dict``, a strict ``load_state_dict``); without them the same
spec is built directly. Every row:

- route check (fp32, TF32 off): each training route (``by_task``, ``experts``, ``grouped``) and the
  inference route (cached folded kernels) against the reference, each sample convolved alone with its own
  task's folded kernel (the release's per-sample loop), batch 4 with three different tasks;
- training: batch 8 with eight different tasks, patch 32 x 128 x 128, Adam, MSE, autocast (+ GradScaler
  for fp16), optionally channels-last; median step time after warm-up; peak ``max_memory_allocated``;
- inference: ``sparsessp.inference.sliding_window`` over one 64 x 232 x 344 volume (released Gaussian
  window 32 x 128 x 128, overlap 0.5, 45 windows), accumulated on the GPU; median of 3 after a warm-up.

Without CUDA it says so and exits 0 (``--check-only`` runs the route check on the CPU at the fixtures'
tiny widths in float64, what the tests do). Imports stay inside functions: the GPU box has torch, numpy
and scipy, not the CLI's dependencies.

    PYTHONPATH=src python benchmarks/gpu_bench.py [--budget-s 420] [--steps 10]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

MANIFEST = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "official" / "MANIFEST.json"
VOLUME = (64, 232, 344)
WINDOW = (32, 128, 128)
FULL_SPECS: dict[str, tuple[str, dict[str, Any], int]] = {
    "sparsessp-3to2d-r8": (
        "sparsessp_released",
        {
            "in_channels": 1,
            "encoder_channels": [32, 64, 128, 256],
            "bottleneck_channels": 512,
            "gate_in_channels": 1024,
            "gate_out_channels": [64, 128, 256, 512],
            "decoder_channels": [512, 256, 128, 64],
            "out_channels": 32,
            "num_tasks": 12,
            "kernel_size": 5,
        },
        8,
    ),
    "repmode-3d": (
        "repmode3d",
        {"in_channels": 1, "out_channels": 1, "mult_chan": 32, "num_tasks": 12, "kernel_size": 5},
        1,
    ),
}
"""Full-size widths (anchors.md; the SparseSSP one is the MANIFEST entry's): module, spec, sparse ratio."""
FULL_SIZE_PARAMS = 198_883_264
ANCHORS = {
    "sparsessp-3to2d-r8": {"train_it_s": 3.69, "peak_gib": 11.3, "infer_s": 0.442},
    "repmode-3d": {"train_it_s": 3.21, "peak_gib": 11.1, "infer_s": 0.785},
}
"""anchors.md, the authors' code on an H200: fp16-autocast training at batch 8, fp32 inference per volume."""
TARGETS = {"sparsessp-3to2d-r8": {"train_it_s": 15.0, "infer_s": 0.44}}
"""Issue 12: training at batch 8 (3-to-2D, r = 8) and inference per volume (the release's 0.44 s)."""
ROUTE_TOLERANCE = {"float64": 1e-10, "float32": 1e-3}
"""Relative L2 of a route's output against the per-sample reference."""


def build(name: str, manifest: Path | None = None, device: str = "cpu") -> tuple[Any, str]:
    """The full-size model ``name`` with random weights on ``device``, and how its weights were made."""
    import importlib

    module, spec, ratio = FULL_SPECS[name]
    cls = {"sparsessp_released": "ReleasedSparseSSP", "repmode3d": "RepMode3D"}[module]
    arch = getattr(importlib.import_module(f"sparsessp.models.compat.{module}"), cls)
    entry = None
    if name == "sparsessp-3to2d-r8" and manifest is not None and manifest.is_file():
        entry = json.loads(manifest.read_text())["sparsessp_repmode_3to2d_released_full_size"]
    if entry is None:
        return arch(spec, sparse_ratio=ratio).to(device), "built from the spec (random init)"
    converted = arch.convert_state_dict(random_released_state(entry["state_dict"]))
    model = arch(arch.spec_from_state_dict(converted), sparse_ratio=ratio)
    model.load_state_dict(converted, strict=True)
    return model.to(device), "random released-format state dict through the importer (MANIFEST shapes)"


def random_released_state(shapes: dict[str, list[int]]) -> dict[str, Any]:
    """A state dict in the release's key names and shapes: random kernels (std 1 / sqrt(fan-in)), unit norms,
    and the release's fixed uniform average kernels (``ones / k**3``, in 2D too: its quirk)."""
    import math

    import torch

    gen = torch.Generator().manual_seed(0)
    state: dict[str, Any] = {}
    for key, shape in shapes.items():
        if key.endswith("_pool"):
            state[key] = torch.ones(shape) / shape[-1] ** 3
        elif key.endswith("num_batches_tracked"):
            state[key] = torch.zeros(shape, dtype=torch.long)
        elif len(shape) >= 2:
            state[key] = torch.randn(shape, generator=gen) / math.sqrt(math.prod(shape[1:]))
        elif key.endswith(("running_var", ".weight")):
            state[key] = torch.ones(shape)
        else:
            state[key] = torch.zeros(shape)
    return state


@contextlib.contextmanager
def per_sample_reference(model: Any) -> Iterator[None]:
    """Every MoDE layer of ``model`` convolves each sample alone with its own task's folded kernel."""
    import torch

    from sparsessp.models.conditioning.mode import MoDEConv

    layers = [m for m in model.modules() if isinstance(m, MoDEConv)]

    def reference(layer: MoDEConv) -> Callable[..., Any]:
        def forward(x: Any, ctx: Any) -> Any:
            kernels = layer.fold(ctx.task_ids)
            return torch.cat([layer._conv(x[i : i + 1], kernels[i]) for i in range(x.shape[0])])

        return forward

    for layer in layers:
        layer.forward = reference(layer)
    try:
        yield
    finally:
        for layer in layers:
            del layer.forward


def check_routes(model: Any, x: Any, tasks: Any) -> dict[str, float]:
    """Relative L2 of every route's output against the per-sample reference (eval-mode norms)."""
    import torch

    from sparsessp.models.conditioning.mode import ROUTES, MoDEConv

    layers = [m for m in model.modules() if isinstance(m, MoDEConv)]
    model.eval()
    with torch.no_grad(), per_sample_reference(model):
        reference = model(x, tasks)
    errors: dict[str, float] = {}
    for route in ROUTES:
        for layer in layers:
            layer.route = route
        with torch.enable_grad():  # eval mode with autograd on takes the training route
            out = model(x, tasks).detach()
        errors[route] = float((out - reference).norm() / reference.norm())
    with torch.no_grad():
        errors["inference (cached)"] = float((model(x, tasks) - reference).norm() / reference.norm())
    for layer in layers:
        layer.route = "by_task"
    return errors


def _autocast(device: str, precision: str) -> contextlib.AbstractContextManager:
    import torch

    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device, dtype={"bf16": torch.bfloat16, "fp16": torch.float16}[precision])


def train_speed(model: Any, precision: str, channels_last: bool, steps: int, ratio: int) -> tuple[float, float]:
    """Median training it/s (batch 8, eight tasks) and the peak GiB allocated."""
    import torch

    device = "cuda"
    model.train()
    depth, h, w = WINDOW
    fmt = torch.channels_last_3d if channels_last else torch.contiguous_format
    x = torch.randn(8, 1, depth // ratio, h, w, device=device).contiguous(memory_format=fmt)
    y = torch.randn(8, 1, depth, h, w, device=device)
    tasks = torch.arange(8, device=device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler(device, enabled=precision == "fp16")

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with _autocast(device, precision):
            loss = torch.nn.functional.mse_loss(model(x, tasks).float(), y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    for _ in range(3):
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return 1.0 / statistics.median(times), torch.cuda.max_memory_allocated() / 2**30


def infer_seconds(model: Any, precision: str, ratio: int, window_batch: int) -> float:
    """Median seconds per 64 x 232 x 344 volume (released Gaussian sliding window, on the GPU)."""
    import torch

    from sparsessp.inference import sliding_window

    model.eval()
    sparse = torch.randn(1, 1, VOLUME[0] // ratio, *VOLUME[1:], device="cuda")

    def once() -> float:
        torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.no_grad(), _autocast("cuda", precision):
            out = sliding_window(model, sparse, 3, WINDOW, ratio, blend="released", batch_size=window_batch)
        torch.cuda.synchronize()
        assert out.shape == (1, 1, *VOLUME)
        return time.perf_counter() - start

    once()
    return statistics.median(once() for _ in range(3))


def tiny_route_check() -> dict[str, float]:
    """The route check on the CPU in float64 at the fixtures' tiny released widths (what the tests run)."""
    import torch

    from sparsessp.models.compat.sparsessp_released import ReleasedSparseSSP

    torch.manual_seed(0)
    spec = {
        "in_channels": 1,
        "encoder_channels": [4, 8, 16, 32],
        "bottleneck_channels": 64,
        "gate_in_channels": 64,
        "gate_out_channels": [4, 8, 16, 32],
        "decoder_channels": [32, 16, 8, 4],
        "out_channels": 16,
        "num_tasks": 12,
        "kernel_size": 5,
    }
    model = ReleasedSparseSSP(spec, sparse_ratio=4).double()
    for module in model.modules():  # non-trivial running statistics, so eval-mode norms matter
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.running_mean.normal_(0, 0.1)
            module.running_var.uniform_(0.5, 2.0)
    x = torch.randn(4, 1, 4, 32, 32, dtype=torch.float64)
    return check_routes(model, x, torch.tensor([0, 3, 3, 7]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, default=MANIFEST)
    parser.add_argument("--models", nargs="+", default=list(FULL_SPECS), choices=list(FULL_SPECS))
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16", "fp16"], choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--steps", type=int, default=10, help="timed training steps per row")
    parser.add_argument("--window-batch", type=int, default=4, help="windows per forward pass in inference")
    parser.add_argument("--budget-s", type=float, default=420.0, help="skip the remaining rows after this long")
    parser.add_argument("--check-only", action="store_true", help="only the route check (tiny, float64, CPU)")
    args = parser.parse_args(argv)

    import torch

    if args.check_only:
        errors = tiny_route_check()
        ok = all(e <= ROUTE_TOLERANCE["float64"] for e in errors.values())
        print("route check (tiny, float64, cpu): " + ", ".join(f"{k} {v:.1e}" for k, v in errors.items()))
        return 0 if ok else 1
    if not torch.cuda.is_available():
        print("gpu_bench needs an NVIDIA GPU (CUDA is not available here); nothing measured. "
              "`--check-only` runs the route check on the CPU.")
        return 0
    start = time.monotonic()
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}", flush=True)
    failed = False
    rows = []
    for name in args.models:
        ratio = FULL_SPECS[name][2]
        model, source = build(name, args.manifest, "cuda")
        params = sum(p.numel() for p in model.parameters())
        print(f"{name}: {params:,} parameters; weights: {source}", flush=True)
        if name == "sparsessp-3to2d-r8" and params != FULL_SIZE_PARAMS:
            print(f"  expected {FULL_SIZE_PARAMS:,} parameters")
            failed = True
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
        gen = torch.Generator(device="cuda").manual_seed(0)
        x = torch.randn(4, 1, WINDOW[0] // ratio, *WINDOW[1:], device="cuda", generator=gen)
        errors = check_routes(model, x, torch.tensor([0, 3, 3, 7], device="cuda"))
        ok = all(e <= ROUTE_TOLERANCE["float32"] for e in errors.values())
        failed |= not ok
        print(f"  routes vs per-sample reference (fp32, rel. L2, tolerance {ROUTE_TOLERANCE['float32']:g}): "
              + ", ".join(f"{k} {v:.1e}" for k, v in errors.items()) + ("" if ok else "  FAILED"), flush=True)
        torch.backends.cudnn.allow_tf32 = True
        for precision in args.precisions:
            for channels_last in (False, True) if precision != "fp32" else (False,):
                if time.monotonic() - start > args.budget_s:
                    print(f"  budget of {args.budget_s:.0f} s spent: skipping {name} {precision}")
                    continue
                label = precision + (" channels-last" if channels_last else "")
                try:
                    it_s, peak = train_speed(model, precision, channels_last, args.steps, ratio)
                    infer = infer_seconds(model, precision, ratio, args.window_batch) if not channels_last else None
                except RuntimeError as exc:  # one row failing (e.g. out of memory) must not lose the others
                    print(f"  {label}: failed: {str(exc).splitlines()[0]}", flush=True)
                    failed = True
                    continue
                rows.append((name, label, it_s, peak, infer))
                infer_text = f"{infer:.3f} s/volume" if infer is not None else "-"
                print(f"  {label}: train {it_s:.2f} it/s, peak {peak:.1f} GiB, inference {infer_text}", flush=True)
        del model
        torch.cuda.empty_cache()
    print()
    print("| model | precision | train it/s | peak GiB | inference s/volume | anchors.md (release) | target |")
    print("|---|---|---|---|---|---|---|")
    for name, label, it_s, peak, infer in rows:
        a = ANCHORS[name]
        t = TARGETS.get(name, {})
        anchor = f"{a['train_it_s']} it/s (fp16), {a['peak_gib']} GiB, {a['infer_s']} s (fp32)"
        target = f">= {t['train_it_s']} it/s, <= {t['infer_s']} s" if t else "-"
        infer_text = f"{infer:.3f}" if infer is not None else "-"
        print(f"| {name} | {label} | {it_s:.2f} | {peak:.1f} | {infer_text} | {anchor} | {target} |")
    print(f"\n{time.monotonic() - start:.0f} s in all")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
