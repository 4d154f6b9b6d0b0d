"""Multi-Net (FNet, Ounkomol et al. 2018): T independent, unconditioned networks, one per task.

The baseline of the improvement metric. The paper's Multi-Net is pytorch_fnet's 3D U-Net trained once
per structure (RepMode trains it one dataset at a time), so by default:

- every member is pytorch_fnet's network (:class:`~sparsessp.models.compat.fnet.FNet3D`: nearest prefix
  resampling of the sparse TL, then its U-Net), ``mult_chan`` = the first of ``model.channels`` (after
  ``model.width``) and ``depth`` = number of levels - 1, so the default channels give the released
  32 ... 512, depth 4; ``model.conditioning_options.member: sparsessp`` makes the members our skeleton
  instead (exactly the ``none`` network of the same config: topology, interpolation, ...);
- training feeds each step ONE structure's full batch (``train.batches: auto`` = ``per_task`` for
  Multi-Net, :class:`sparsessp.engine.sampler.TaskBatchSampler`), so each member trains as it would
  alone; ``train.batches: mixed`` restores joint training on mixed batches.

Forward routes each sample to its task's network: the batch is grouped by task (``index_select``), each
present task's network runs once on its samples, outputs go back in batch order. A network whose task
is absent does not run, so its parameters keep ``grad = None`` (optimisers skip them) and its batch-norm
statistics are its own task's. Under DDP this needs ``find_unused_parameters=True``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from sparsessp.design import check_resampling_patch
from sparsessp.errors import ConfigError
from sparsessp.models.conditioning.base import Conditioning

if TYPE_CHECKING:
    from sparsessp.config import Config

MEMBERS: tuple[str, ...] = ("fnet", "sparsessp")
"""``model.conditioning_options.member`` values; the first is the paper's."""


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


def fnet_member(cfg: Config) -> nn.Module:
    """One pytorch_fnet 3D U-Net sized by ``model.channels[0]`` (x width) and the number of levels."""
    from sparsessp.models.compat.fnet import FNet3D

    depth = cfg.model.levels - 1
    try:
        check_resampling_patch(cfg.data.patch, cfg.data.sparse_ratio, depth,
                               f"a pytorch_fnet Multi-Net member with {depth} down-samplings")
    except ValueError as exc:
        raise ConfigError(f"model: {exc}") from None
    spec = {"in_channels": 1, "out_channels": 1, "mult_chan": cfg.model.scaled_channels()[0], "depth": depth}
    member = FNet3D(spec, sparse_ratio=cfg.data.sparse_ratio)
    member.patch = tuple(cfg.data.patch)
    return member


class MultiNet(Conditioning):
    """Registry entry ``multinet``: builds a :class:`MultiNetwork` of independent members (see module doc)."""

    name = "multinet"
    options_allowed: tuple[str, ...] = ("member",)

    @classmethod
    def build_model(cls, cfg: Config, build_network: Callable[[Conditioning], nn.Module]) -> nn.Module:
        member = cls(cfg.num_tasks, cfg.model.norm, cfg.model.conditioning_options).option(
            "member", MEMBERS[0], cls.options_allowed
        )
        if member not in MEMBERS:
            raise ConfigError(f"model.conditioning_options.member: choose one of {', '.join(MEMBERS)}, got {member!r}")
        if member == "fnet":
            members = [fnet_member(cfg) for _ in range(cfg.num_tasks)]
        else:
            members = [build_network(Conditioning(cfg.num_tasks, cfg.model.norm)) for _ in range(cfg.num_tasks)]
        return MultiNetwork(members)
