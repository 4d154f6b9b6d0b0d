"""Peak memory of `sparsessp predict` against the field's size: 16 x 1024 x 1024 and 16 x 2048 x 2048 TL stacks.

Each stack (uint16 OME-TIFF, z-step 1.16 um, so r = 4 gives 64 dense slices) is predicted by
:func:`sparsessp.predict.predict_files` with the default settings in a fresh subprocess, whose peak
resident set size (``ru_maxrss``) is reported. The model is the quickstart architecture
(``configs/quickstart.yaml``), given with ``--model`` or built with seeded untrained weights (the memory
figure does not depend on the weights). Passes when the 2048 peak is within 20 % of the 1024 peak and
both stay under 1.5 GB.

    PYTHONPATH=src .venv/bin/python benchmarks/predict_memory.py [--model CKPT] [--sizes 1024 2048]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

LIMIT_GB = 1.5
GROWTH = 1.2


def _quickstart_checkpoint(folder: Path) -> Path:
    import torch

    from sparsessp.cli.quickstart import quickstart_config
    from sparsessp.engine.checkpoint import base_state, save_checkpoint
    from sparsessp.models.registry import build_model

    cfg = quickstart_config([])
    torch.manual_seed(0)
    path = folder / "quickstart-architecture.ckpt"
    save_checkpoint(path, base_state(cfg, build_model(cfg).state_dict()))
    return path


def _stack(path: Path, size: int) -> Path:
    """A 16 x size x size uint16 OME-TIFF written plane by plane (smooth noise around 1000 counts)."""
    import numpy as np
    import tifffile

    rng = np.random.default_rng(size)

    def planes() -> Iterator[np.ndarray]:
        for _ in range(16):
            yield (1000 + 100 * rng.standard_normal((size, size))).astype(np.uint16)

    tifffile.imwrite(path, planes(), shape=(16, size, size), dtype=np.uint16, ome=True, photometric="minisblack",
                     metadata={"axes": "ZYX", "PhysicalSizeZ": 1.16, "PhysicalSizeY": 0.29, "PhysicalSizeX": 0.29})
    return path


def _child(stack: Path, model: Path, out: Path) -> None:
    from sparsessp.predict import PredictOptions, predict_files

    start = time.perf_counter()
    predict_files([stack], PredictOptions(model, ["lamin_b1"], out, device="cpu"))
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"peak_bytes": peak, "seconds": seconds}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="checkpoint (default: the quickstart architecture, untrained)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048])
    parser.add_argument("--child", nargs=3, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(*args.child)
        return 0
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = args.model or _quickstart_checkpoint(folder)
        for size in args.sizes:
            stack = _stack(folder / f"tl_{size}.ome.tif", size)
            cmd = [sys.executable, __file__, "--child", str(stack), str(model), str(folder / f"out{size}")]
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                print(done.stderr, file=sys.stderr)
                return 1
            result = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append((size, result["peak_bytes"] / 1e9, result["seconds"]))
            print(f"16 x {size} x {size} -> 64 x {size} x {size}: peak RSS {rows[-1][1]:.3f} GB, "
                  f"{result['seconds']:.0f} s", flush=True)
    peaks = [gb for _, gb, _ in rows]
    ok = max(peaks) < LIMIT_GB and max(peaks) <= GROWTH * min(peaks)
    print(f"largest / smallest peak: {max(peaks) / min(peaks):.3f} (limit {GROWTH}); "
          f"largest {max(peaks):.3f} GB (limit {LIMIT_GB} GB, 1 GB = 1e9 bytes): {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
