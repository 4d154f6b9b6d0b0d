"""Numeric precision on any device: one vocabulary, support checks, the training default and autocast contexts.

Training (``train.precision``), ``predict --precision`` and the benchmarks all go through here, so a
precision the device cannot run is one clear message wherever it is asked for.

Vocabulary: ``fp32``, ``bf16`` and ``fp16`` (mixed precision: weights and optimiser stay in float32,
autocast runs convolutions and matrix products in 16 bits). ``train.precision`` also takes Lightning's
names (``32-true``, ``bf16-mixed``, ``16-mixed``, ...) and ``auto``: bf16 where the device runs it
natively (CUDA GPUs with bf16, CPUs with AVX512-BF16 or AMX), else fp32. Mixed 16-bit training is what
the paper's own runs used on GPUs; the CPU speed and quality measurements behind it are in
``benchmarks/RESULTS.md`` (``benchmarks/cpu_bench.py``). The quickstart asks for ``auto``: with two seeds
each, bf16 kept its mean test R2 (0.528 / 0.471 against fp32's 0.523 / 0.485) in less time. The default of
``train.precision`` stays ``32-true``, so a config that does not ask trains as before: CPU bf16 backward
passes through oneDNN gave intermittent non-finite weight gradients in small 3D MoDE layers (the RepMode 3D
fixture, 8 -> 16 channels at 4 x 8 x 8), which fp32 never did.
"""

from __future__ import annotations

import contextlib
from typing import Literal

import torch

from sparsessp.errors import UserError

Precision = Literal["fp32", "bf16", "fp16"]
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16")
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

TRAIN_PRECISIONS: dict[str, str] = {
    "auto": "auto",
    "fp32": "fp32",
    "32": "fp32",
    "32-true": "fp32",
    "bf16": "bf16",
    "bf16-mixed": "bf16",
    "fp16": "fp16",
    "16": "fp16",
    "16-mixed": "fp16",
    "64-true": "64-true",
}
"""Every value ``train.precision`` accepts -> our vocabulary (``64-true`` passes through to Lightning as is)."""

FABRIC_PRECISIONS: dict[str, str] = {"fp32": "32-true", "bf16": "bf16-mixed", "fp16": "16-mixed", "64-true": "64-true"}
"""Our vocabulary -> Lightning Fabric's ``precision`` argument."""


def cpu_has_bf16() -> bool:
    """Whether this CPU runs bf16 natively (AVX512-BF16 or AMX); emulated bf16 is slower than fp32."""
    cpu = torch.cpu
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(cpu, name, lambda: False)() for name in checks)


def supported(precision: str, device: torch.device | str) -> bool:
    """Whether ``precision`` runs (and pays off) on ``device``."""
    device = torch.device(device)
    if precision == "fp32":
        return True
    if device.type == "cuda":
        return precision == "fp16" or torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return precision == "bf16" and cpu_has_bf16()
    return False


def _reason(precision: str, device: torch.device) -> str:
    if device.type == "cpu":
        if precision == "fp16":
            return "fp16 autocast on a CPU is emulated and slower than fp32"
        return "this CPU has no native bf16 (AVX512-BF16 / AMX)"
    if device.type == "cuda":
        return "this GPU has no bf16"
    return f"{device.type} runs fp32 only here"


def check(precision: str, device: torch.device | str, fix: str = "use fp32") -> Precision:
    """Validate ``precision`` for ``device``; raise a one-line :class:`UserError` (ending in ``fix``) when it
    cannot run there."""
    if precision not in PRECISIONS:
        raise UserError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    device = torch.device(device)
    if not supported(precision, device):
        raise UserError(f"precision {precision} is not supported on {device.type}: {_reason(precision, device)}; {fix}")
    return precision  # type: ignore[return-value]


def best(device: torch.device | str) -> Precision:
    """The fastest precision that keeps the quality on ``device``: bf16 where it is native, else fp32."""
    return "bf16" if supported("bf16", device) else "fp32"


def resolve(precision: str, device: torch.device | str, fix: str = "use fp32") -> Precision:
    """``auto`` -> :func:`best`; anything else is checked with :func:`check`."""
    return best(device) if precision == "auto" else check(precision, device, fix)


def accelerator_device(accelerator: str) -> torch.device:
    """The device type Lightning picks for ``train.accelerator`` (``auto``: CUDA, else MPS, else the CPU)."""
    if accelerator in ("gpu", "cuda"):
        return torch.device("cuda")
    if accelerator in ("cpu", "mps"):
        return torch.device(accelerator)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    return torch.device("mps" if mps is not None and mps.is_available() else "cpu")


def fabric_precision(train_precision: str, accelerator: str) -> str:
    """Lightning Fabric's ``precision`` for the config's ``train.precision`` on ``train.accelerator``.

    ``auto`` resolves to bf16-mixed where the device has native bf16, else 32-true; a 16-bit precision
    the device cannot run is a one-line :class:`UserError` naming the fix.
    """
    name = TRAIN_PRECISIONS.get(train_precision)
    if name is None:
        raise UserError(f"train.precision {train_precision!r} is not one of {', '.join(TRAIN_PRECISIONS)}")
    if name == "64-true":
        return name
    fix = "set train.precision=32-true (or auto)"
    return FABRIC_PRECISIONS[resolve(name, accelerator_device(accelerator), fix)]


def dtype(precision: str) -> torch.dtype:
    """The compute dtype of ``precision`` (fp32 / bf16 / fp16)."""
    return _DTYPES[precision]


def autocast(precision: str, device: torch.device | str) -> contextlib.AbstractContextManager:
    """An autocast context for ``precision`` on ``device`` (a no-op for fp32)."""
    device = torch.device(device)
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=_DTYPES[check(precision, device)])
