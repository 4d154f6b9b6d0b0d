"""CondNet (Dmitriev & Kaufman, CVPR 2019): a learned per-block task embedding added to the activations.

Every residual block's output gets ``E_b[task]`` added, a ``(C,)`` vector broadcast over space, so one
shared network produces task-specific features everywhere (encoder, bottleneck, decoder and any
block the dimension transforms build).

Choices where the paper leaves the detail open:

- one ``nn.Embedding(T, C)`` per block (equivalent to a bias-free Linear on the one-hot), added after
  the block's final activation (the ``block_output`` factory); the head stays a plain convolution;
- embeddings start from ``N(0, init_std)`` with ``init_std = 0.1`` (option ``init_std`` in
  ``model.conditioning_options``): small next to batch-normalised activations, yet non-zero so tasks
  differ from the first step.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from sparsessp.models.conditioning.base import Conditioning, CondModule, Role, TaskContext


class TaskBias(CondModule):
    """Adds a learned per-task channel vector, broadcast over the ``dims`` spatial axes."""

    def __init__(self, num_tasks: int, channels: int, dims: int, init_std: float) -> None:
        super().__init__()
        self.dims = dims
        self.embedding = nn.Embedding(num_tasks, channels)
        nn.init.normal_(self.embedding.weight, std=init_std)

    def forward(self, x: Tensor, ctx: TaskContext) -> Tensor:
        bias = self.embedding(ctx.task_ids).to(x.dtype)
        return x + bias.view(*bias.shape, *([1] * self.dims))


class CondNet(Conditioning):
    """Conditioning factory: a :class:`TaskBias` after every block."""

    name = "condnet"

    def __init__(self, num_tasks: int, norm: str = "batch", options: dict[str, Any] | None = None) -> None:
        super().__init__(num_tasks, norm, options)
        self.init_std = float(self.option("init_std", 0.1, ("init_std",), minimum=0))

    def block_output(self, dims: int, channels: int, *, role: Role) -> CondModule:
        return TaskBias(self.num_tasks, channels, dims, self.init_std)
