"""Numeric precision on any device: one vocabulary, support checks and autocast contexts.

Training (``train.precision``), ``predict --precision`` and the benchmarks all go through here, so a
precision the device cannot run is one clear message wherever it is asked for.
"""

from __future__ import annotations

import contextlib
from typing import Literal

import torch

from sparsessp.errors import UserError

Precision = Literal["fp32", "bf16", "fp16"]
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


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


def check(precision: str, device: torch.device | str) -> Precision:
    """Validate ``precision`` for ``device``; raise a one-line :class:`UserError` when it cannot run there."""
    if precision not in PRECISIONS:
        raise UserError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    if not supported(precision, device):
        hint = "this CPU has no native bf16 (AVX512-BF16 / AMX)" if torch.device(device).type == "cpu" else ""
        raise UserError(
            f"precision {precision} is not supported on {torch.device(device).type}"
            + (f": {hint}" if hint else "")
            + "; use --precision fp32"
        )
    return precision  # type: ignore[return-value]


def autocast(precision: str, device: torch.device | str) -> contextlib.AbstractContextManager:
    """An autocast context for ``precision`` on ``device`` (a no-op for fp32)."""
    device = torch.device(device)
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=_DTYPES[check(precision, device)])
