"""Training speed of the MoDE routes (``experts``, ``by_task``, ``grouped``): the measurement behind the default.

``--level layer`` times forward + backward of single MoDE convolutions at small sizes (float32), batch 4,
every sample its own task; ``--level model`` times a training step (forward, MSE, backward) of the
released SparseSSP network at ``--scale`` ("tiny" = the fixture widths, "full" = 198.9 M parameters,
patch 32 x 128 x 128, r = 8), batch 8, eight tasks, optionally under fp16 autocast on a GPU.

    .venv/bin/python benchmarks/mode_routes.py --level layer --threads 2
    .venv/bin/python benchmarks/mode_routes.py --level model --scale full --device cuda --amp
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import torch

from sparsessp.bench import median_time
from sparsessp.models.compat.sparsessp_released import ReleasedSparseSSP
from sparsessp.models.conditioning.base import TaskContext
from sparsessp.models.conditioning.mode import ROUTES, MoDEConv

MANIFEST = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "official" / "MANIFEST.json"
LAYERS = [  # (dims, cin, cout, spatial)
    (3, 16, 16, (16, 32, 32)),
    (3, 64, 64, (8, 16, 16)),
    (2, 64, 64, (64, 64)),
    (2, 256, 128, (16, 16)),
]


def bench_layers(device: torch.device, repeats: int, sync: Callable[[], None]) -> None:
    for dims, cin, cout, spatial in LAYERS:
        layer = MoDEConv(dims, cin, cout, 12).to(device)
        x = torch.randn(4, cin, *spatial, device=device, requires_grad=True)
        ctx = TaskContext(torch.arange(4, device=device), 12)
        row = {}

        def step(layer: MoDEConv = layer, x: torch.Tensor = x, ctx: TaskContext = ctx) -> None:
            layer(x, ctx).square().mean().backward()

        for route in ROUTES:
            layer.route = route
            row[route] = 1000 * median_time(step, repeats, sync, warmup=2)
        cells = ", ".join(f"{k} {v:.1f} ms" for k, v in row.items())
        print(f"layer {dims}D {cin}->{cout} at {'x'.join(map(str, spatial))}, batch 4, 4 tasks: {cells}")


def bench_model(
    manifest: Path, scale: str, device: torch.device, amp: bool, repeats: int, sync: Callable[[], None]
) -> None:
    key = "sparsessp_repmode_3to2d_released_full_size" if scale == "full" else "sparsessp_repmode_3to2d_tiny"
    entry = json.loads(manifest.read_text())[key]
    shapes = {k: torch.empty(v, device="meta") for k, v in entry["state_dict"].items()}
    spec = ReleasedSparseSSP.spec_from_state_dict(shapes)
    model = ReleasedSparseSSP(spec).to(device).train()
    depth, h, w = entry["patch"]
    r = 8 if scale == "full" else entry["sparse_ratio"]
    x = torch.randn(8, 1, depth // r, h, w, device=device)
    y = torch.randn(8, 1, depth, h, w, device=device)
    tasks = torch.arange(8, device=device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler(device.type, enabled=amp)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
            loss = torch.nn.functional.mse_loss(model(x, tasks), y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    for route in ROUTES:
        for m in model.modules():
            if isinstance(m, MoDEConv):
                m.route = route
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        seconds = median_time(step, repeats, sync, warmup=2)
        peak = f", peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if device.type == "cuda" else ""
        print(f"model {scale} {device.type} amp={amp} batch 8, 8 tasks: {route} {1 / seconds:.2f} it/s{peak}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, default=MANIFEST, help="the shared fixtures' MANIFEST.json")
    parser.add_argument("--level", choices=["layer", "model"], default="layer")
    parser.add_argument("--scale", choices=["tiny", "full"], default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", action="store_true", help="fp16 autocast (GPU)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    print(f"torch {torch.__version__}, {args.threads} CPU threads, device {device}")
    if args.level == "layer":
        bench_layers(device, args.repeats, sync)
    else:
        bench_model(args.manifest, args.scale, device, args.amp, args.repeats, sync)


if __name__ == "__main__":
    main()
