"""Memory formats of the networks' weights: channels-last where it measures faster, contiguous elsewhere.

A convolution whose weight is channels-last (``channels_last`` for 2D kernels, ``channels_last_3d`` for 3D
ones) makes oneDNN run it, and return its output, in the channels-last layout, which the CPU's kernels run
faster than the contiguous one; the network computes the same function (outputs equal within float32
rounding, tests/test_memory_format.py). Measured on the dev machine (2 cores, quickstart widths, training
steps per second, contiguous -> channels-last; benchmarks/RESULTS.md): 2d 11.0 -> 12.3 (fp32) and 16.6 ->
18.7 (bf16), 3to2d 0.64 -> 0.80 and 1.29 -> 1.43, 3d 0.21 -> 0.33 and 0.52 -> 0.71. On GPUs it is not yet
measured, so ``auto`` (the default of ``train.memory_format`` and ``inference.memory_format``) is
channels-last on CPUs and contiguous on other devices; ``channels_last`` / ``contiguous`` force either.
The released code trains contiguous; the choice does not change the model.
"""

from __future__ import annotations

import torch
from torch import nn

MEMORY_FORMATS: tuple[str, ...] = ("auto", "channels_last", "contiguous")

_CHANNELS_LAST = {4: torch.channels_last, 5: torch.channels_last_3d}


def wants_channels_last(memory_format: str, device: torch.device | str) -> bool:
    """Whether ``memory_format`` (one of :data:`MEMORY_FORMATS`) means channels-last on ``device``."""
    if memory_format not in MEMORY_FORMATS:
        raise ValueError(f"unknown memory format {memory_format!r}; choose one of {', '.join(MEMORY_FORMATS)}")
    return memory_format == "channels_last" or (memory_format == "auto" and torch.device(device).type == "cpu")


def apply(module: nn.Module, channels_last: bool) -> nn.Module:
    """Put every 4D / 5D parameter of ``module`` in channels-last (or back in contiguous) layout, in place.

    The parameters stay the same objects (an optimiser built on them keeps working); only their strides
    change. Returns ``module``.
    """
    with torch.no_grad():
        for param in module.parameters():
            layout = _CHANNELS_LAST.get(param.dim())
            if layout is None:
                continue
            wanted = layout if channels_last else torch.contiguous_format
            if not param.data.is_contiguous(memory_format=wanted):
                param.data = param.data.contiguous(memory_format=wanted)
    return module


def for_device(module: nn.Module, memory_format: str, device: torch.device | str) -> nn.Module:
    """:func:`apply` the layout ``memory_format`` means on ``device``; returns ``module``."""
    return apply(module, wants_channels_last(memory_format, device))
