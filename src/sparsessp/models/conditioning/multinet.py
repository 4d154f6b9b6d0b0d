"""Multi-Net (FNet-style, Ounkomol et al. 2018): T independent, unconditioned networks, one per task.

The baseline of the improvement metric. Each sample is routed to its task's network; the batch is
grouped by task (``index_select``), each present task's network runs once on its samples, and the
outputs are put back in batch order. A network whose task is absent from the batch does not run, so
it gets no gradient and its parameters keep ``grad = None`` (optimisers skip them): a sample only
updates its own task's network. Under DDP this needs ``find_unused_parameters=True``.

Choices: the members are built by the same skeleton with the base (unconditioned) factory, so a
member is exactly the ``none`` network of the same config; batch-norm statistics of a member are
those of its task's samples only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from sparsessp.models.conditioning.base import Conditioning

if TYPE_CHECKING:
    from sparsessp.config import Config


class MultiNetwork(nn.Module):
    """``T`` networks behind the single-network call ``forward(x, task_ids)``."""

    def __init__(self, networks: list[nn.Module]) -> None:
        super().__init__()
        self.networks = nn.ModuleList(networks)
        first = networks[0]
        self.sparse_ratio: int = first.sparse_ratio
        self.patch: tuple[int, int, int] = tuple(first.patch)

    def forward(self, x: Tensor, task_ids: Tensor) -> Tensor:
        task_ids = task_ids.long()
        if task_ids.ndim != 1 or task_ids.shape[0] != x.shape[0]:
            raise ValueError(f"task_ids must be (B,) with B = {x.shape[0]}, got shape {tuple(task_ids.shape)}")
        tasks = torch.unique(task_ids).tolist()
        if not tasks:
            raise ValueError("empty batch")
        if tasks[0] < 0 or tasks[-1] >= len(self.networks):
            raise ValueError(f"task ids must lie in [0, {len(self.networks)}), got {tasks}")
        if len(tasks) == 1:
            return self.networks[tasks[0]](x, task_ids)
        outputs: list[Tensor] = []
        order: list[Tensor] = []
        for task in tasks:
            index = torch.nonzero(task_ids == task).flatten()
            outputs.append(self.networks[task](x.index_select(0, index), task_ids.index_select(0, index)))
            order.append(index)
        stacked = torch.cat(outputs)
        position = torch.cat(order)
        return stacked.new_empty(stacked.shape).index_copy(0, position, stacked)


class MultiNet(Conditioning):
    """Registry entry ``multinet``: builds a :class:`MultiNetwork` of unconditioned members."""

    name = "multinet"

    @classmethod
    def build_model(cls, cfg: Config, build_network: Callable[[Conditioning], nn.Module]) -> nn.Module:
        cls(cfg.num_tasks, cfg.model.norm, cfg.model.conditioning_options).check_options(())
        members = [build_network(Conditioning(cfg.num_tasks, cfg.model.norm)) for _ in range(cfg.num_tasks)]
        return MultiNetwork(members)
