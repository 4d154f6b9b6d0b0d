"""Config-time checks of the design space (pure arithmetic, no torch): impossible combinations fail early."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sparsessp.models.registry import BACKBONES, CONDITIONINGS

if TYPE_CHECKING:
    from sparsessp.config import DataConfig, ModelConfig


def check_model_config(model: ModelConfig, data: DataConfig) -> None:
    """Raise ValueError (reported as a config error naming the key) for an impossible model."""
    if model.conditioning not in CONDITIONINGS:
        raise ValueError(
            f"model.conditioning: unknown {model.conditioning!r}; choose one of {', '.join(sorted(CONDITIONINGS))}"
        )
    if model.backbone not in BACKBONES:
        raise ValueError(f"model.backbone: unknown {model.backbone!r}; choose one of {', '.join(sorted(BACKBONES))}")
    depth = data.patch[0]
    r = data.sparse_ratio
    if depth % r:
        raise ValueError(f"data.patch: depth {depth} is not a multiple of data.sparse_ratio {r}")
