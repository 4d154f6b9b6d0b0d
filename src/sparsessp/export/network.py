"""A sparsessp network with its task fixed to one structure: one input tensor, one output tensor.

bioimage.io consumers call a model with its declared inputs only, so the structure (task id) is bound
into the module here. :func:`fixed_task_network` is also the architecture a package's
``pytorch_state_dict`` weights name: it rebuilds the network from the checkpoint's stored config.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class FixedTaskNetwork(nn.Module):
    """``forward(x (B, 1, D/r, H, W)) -> (B, 1, D, H, W)``: the wrapped network for one task id."""

    def __init__(self, net: nn.Module, task_id: int) -> None:
        super().__init__()
        self.net = net
        self.task_id = int(task_id)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tasks = torch.full_like(x[:, 0, 0, 0, 0], self.task_id, dtype=torch.int64)
        return self.net(x, tasks)


def fixed_task_network(config: dict[str, Any], task_id: int) -> FixedTaskNetwork:
    """Rebuild (untrained) the network a JSON-mode sparsessp config describes, bound to ``task_id``."""
    from sparsessp.config import config_from_dict
    from sparsessp.models.registry import build_model

    return FixedTaskNetwork(build_model(config_from_dict(config)), task_id).eval()
