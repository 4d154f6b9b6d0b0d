"""Tgnet (Wu et al., ISBI 2022): DoDNet plus task-guided residual blocks and task-guided skip attention.

Three task-aware parts on a shared encoder-decoder:

- task-guided residual blocks: every residual branch is scaled channel-wise by a gate computed from the
  branch itself and the task, ``sigmoid(MLP([GAP(h), e_task]))`` (squeeze-excitation guided by a learned
  task embedding ``e_task``), before the shortcut is added;
- task-guided attention on every skip connection: a channel attention of the same form followed by a
  spatial attention ``sigmoid(conv([mean_c, max_c]) + b_task)`` (CBAM order, with a per-task bias so the
  spatial map is task-guided too), applied to the skip before the decoder concatenates it;
- DoDNet's controller and dynamic head (see :mod:`sparsessp.models.conditioning.dodnet`).

Choices where the paper leaves the detail open: gates sit on residual blocks of every role (encoder,
bottleneck, decoder, transforms); the task embedding is ``nn.Embedding(T, E)`` per gate (``E`` = option
``task_dim``, default 16); the squeeze width is ``max(4, C // reduction)`` (option ``reduction``,
default 4); the spatial attention kernel is 7 in 2D and 3 in 3D (a 3D level may be only a few slices deep).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from sparsessp.models.conditioning.base import CondModule, Role, TaskContext, conv_nd
from sparsessp.models.conditioning.dodnet import DoDNet


class TaskChannelGate(CondModule):
    """Channel gate ``sigmoid(MLP([GAP(x), e_task]))`` multiplied onto ``x``."""

    def __init__(self, num_tasks: int, channels: int, dims: int, task_dim: int, reduction: int) -> None:
        super().__init__()
        self.dims = dims
        self.embedding = nn.Embedding(num_tasks, task_dim)
        hidden = max(4, channels // reduction)
        self.mlp = nn.Sequential(
            nn.Linear(channels + task_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels)
        )

    def gate(self, x: Tensor, ctx: TaskContext) -> Tensor:
        """The ``(B, C, 1, ...)`` gate for ``x``."""
        pooled = x.flatten(2).mean(dim=2)
        task = self.embedding(ctx.task_ids).to(pooled.dtype)
        g = torch.sigmoid(self.mlp(torch.cat([pooled, task], dim=1))).to(x.dtype)
        return g.view(*g.shape, *([1] * self.dims))

    def forward(self, x: Tensor, ctx: TaskContext) -> Tensor:
        return x * self.gate(x, ctx)


class TaskSkipAttention(CondModule):
    """Task-guided channel attention, then a spatial attention with a per-task bias (CBAM order)."""

    def __init__(self, num_tasks: int, channels: int, dims: int, task_dim: int, reduction: int) -> None:
        super().__init__()
        self.dims = dims
        self.channel = TaskChannelGate(num_tasks, channels, dims, task_dim, reduction)
        kernel = 7 if dims == 2 else 3
        self.spatial = conv_nd(dims)(2, 1, kernel, padding=kernel // 2)
        self.task_bias = nn.Embedding(num_tasks, 1)
        nn.init.zeros_(self.task_bias.weight)

    def forward(self, x: Tensor, ctx: TaskContext) -> Tensor:
        x = self.channel(x, ctx)
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        bias = self.task_bias(ctx.task_ids).to(x.dtype).view(-1, 1, *([1] * self.dims))
        return x * torch.sigmoid(self.spatial(pooled) + bias)


class Tgnet(DoDNet):
    """Conditioning factory: DoDNet's dynamic head, task-gated residual branches, task-guided skips."""

    name = "tgnet"
    option_names = (*DoDNet.option_names, "task_dim", "reduction")

    def __init__(self, num_tasks: int, norm: str = "batch", options: dict[str, Any] | None = None) -> None:
        super().__init__(num_tasks, norm, options)
        self.task_dim = int(self.option("task_dim", 16, self.option_names, minimum=1))
        self.reduction = int(self.option("reduction", 4, self.option_names, minimum=1))

    def residual_gate(self, dims: int, channels: int, *, role: Role) -> CondModule:
        return TaskChannelGate(self.num_tasks, channels, dims, self.task_dim, self.reduction)

    def skip(self, dims: int, channels: int, *, level: int) -> CondModule:
        return TaskSkipAttention(self.num_tasks, channels, dims, self.task_dim, self.reduction)
