"""Inference time of the FULL-SIZE released SparseSSP network (random weights) on one 64 x 232 x 344 volume.

The widths come from the shared MANIFEST's state-dict shapes (``sparsessp_repmode_3to2d_released_full_size``,
198,883,264 parameters), read as meta tensors so nothing is allocated for them. The volume is run through
``sparsessp.inference.sliding_window`` (released Gaussian weighting, window 32 x 128 x 128, overlap 0.5,
r = 8, so the TL input is 8 x 232 x 344). ``--windows N`` times only the first N windows (one batch each)
and extrapolates to the volume's window count, for slow machines.

    .venv/bin/python benchmarks/released_full_size_cpu.py [--threads T] [--windows N] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import time
from pathlib import Path

import torch

from sparsessp.inference import sliding_window, window_starts
from sparsessp.models.compat.sparsessp_released import ReleasedSparseSSP

MANIFEST = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "official" / "MANIFEST.json"
VOLUME = (64, 232, 344)
WINDOW = (32, 128, 128)
RATIO = 8


def full_size_model(manifest: Path) -> ReleasedSparseSSP:
    entry = json.loads(manifest.read_text())["sparsessp_repmode_3to2d_released_full_size"]
    shapes = {k: torch.empty(v, device="meta") for k, v in entry["state_dict"].items()}
    model = ReleasedSparseSSP(ReleasedSparseSSP.spec_from_state_dict(shapes), sparse_ratio=RATIO)
    params = sum(p.numel() for p in model.parameters())
    if params != entry["params"]:
        raise SystemExit(f"built {params} parameters, the manifest says {entry['params']}")
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, default=MANIFEST, help="the shared fixtures' MANIFEST.json")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--windows", type=int, default=None, help="time only this many windows and extrapolate")
    parser.add_argument("--batch", type=int, default=1, help="windows per forward pass")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    model = full_size_model(args.manifest).to(device)
    sparse_volume, sparse_window = (VOLUME[0] // RATIO, *VOLUME[1:]), (WINDOW[0] // RATIO, *WINDOW[1:])
    counts = [len(window_starts(s, w)) for s, w in zip(sparse_volume, sparse_window)]
    total = math.prod(counts)
    sparse = torch.randn(1, 1, VOLUME[0] // RATIO, *VOLUME[1:])
    with torch.inference_mode():
        warm = torch.randn(1, 1, WINDOW[0] // RATIO, *WINDOW[1:], device=device)
        model(warm, torch.full((1,), 3, dtype=torch.long, device=device))  # folds and caches task 3
        if device.type == "cuda":
            torch.cuda.synchronize()
        if args.windows is None:
            t0 = time.perf_counter()
            out = sliding_window(model, sparse, 3, WINDOW, RATIO, overlap=0.5, blend="released", batch_size=args.batch)
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds = time.perf_counter() - t0
            timed = total
            assert out.shape == (1, 1, *VOLUME)
        else:
            starts = list(itertools.islice(itertools.product(*(range(c) for c in counts)), args.windows))
            x = torch.randn(args.batch, 1, WINDOW[0] // RATIO, *WINDOW[1:], device=device)
            tasks = torch.full((args.batch,), 3, dtype=torch.long, device=device)
            t0 = time.perf_counter()
            for _ in range(math.ceil(len(starts) / args.batch)):
                model(x, tasks)
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds = (time.perf_counter() - t0) / (math.ceil(len(starts) / args.batch) * args.batch) * total
            timed = math.ceil(len(starts) / args.batch) * args.batch
    print(
        f"device {device} threads {args.threads}: {total} windows ({'x'.join(map(str, counts))}), timed {timed}; "
        f"{seconds:.1f} s per volume, {seconds / total:.2f} s per window"
    )


if __name__ == "__main__":
    main()
