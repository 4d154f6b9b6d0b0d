"""Seeds, RNG snapshots and deterministic mode: what exact resume needs from the random number generators.

Snapshots hold only lists, numbers, strings and tensors, so a checkpoint that carries them still loads
with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch


def derive_seed(*parts: int) -> int:
    """A 32-bit seed mixed from several integers (e.g. run seed, epoch, rank); stable across machines."""
    return int(np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(1)[0])


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (CUDA included)."""
    random.seed(seed)
    np.random.seed(seed & 0xFFFFFFFF)
    torch.manual_seed(seed)


def capture_rng_state(device: torch.device | None = None) -> dict[str, Any]:
    """The global RNG states of this process in a weights_only-loadable form.

    ``device``: a CUDA device whose generator is captured too (each rank owns one).
    """
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": [int(version), [int(v) for v in internal], gauss],
        "numpy": [str(kind), torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if device is not None and device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng_state(state: dict[str, Any], device: torch.device | None = None) -> None:
    """Put back what :func:`capture_rng_state` took."""
    version, internal, gauss = state["python"]
    random.setstate((int(version), tuple(int(v) for v in internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    torch.set_rng_state(state["torch"])
    if device is not None and device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


@contextlib.contextmanager
def preserved_rng(device: torch.device | None = None) -> Iterator[None]:
    """Run a block (e.g. validation) without moving any global generator, so resumed runs stay exact."""
    state = capture_rng_state(device)
    try:
        yield
    finally:
        restore_rng_state(state, device)


def set_deterministic(enabled: bool, device: torch.device) -> bool:
    """Switch torch to deterministic algorithms; returns the previous setting so callers can restore it.

    On CUDA some kernels have no deterministic version; there a missing one only warns (and cuBLAS gets
    the workspace setting it needs), while on the CPU every operation used in training is deterministic.
    Without it, cuDNN may pick the fastest convolution algorithms (fixed patch sizes make that pay off).
    """
    previous = torch.are_deterministic_algorithms_enabled()
    if enabled and device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(enabled, warn_only=device.type != "cpu")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not enabled
    return previous
