"""Multi-head: a shared, unconditioned body read out by one output head per task.

The classic multi-task baseline (one 1x1 output convolution per structure on shared features); not one of
the paper's mechanisms, kept as the cheapest way to condition. All T heads run as one convolution with
``T * cout`` output channels, and each sample keeps its own task's ``cout`` channels (a gather, no loop).
"""

from __future__ import annotations

from torch import Tensor

from sparsessp.models.conditioning.base import Conditioning, CondModule, TaskContext, conv_nd


class TaskHeads(CondModule):
    """``num_tasks`` 1x1 heads ``cin -> cout`` computed together; a sample gets its task's output."""

    def __init__(self, dims: int, cin: int, cout: int, num_tasks: int) -> None:
        super().__init__()
        self.cout = cout
        self.num_tasks = num_tasks
        self.conv = conv_nd(dims)(cin, cout * num_tasks, 1)

    def forward(self, x: Tensor, ctx: TaskContext) -> Tensor:
        y = self.conv(x)
        b, spatial = y.shape[0], y.shape[2:]
        y = y.view(b, self.num_tasks, self.cout, *spatial)
        index = ctx.task_ids.view(b, 1, 1, *([1] * len(spatial))).expand(b, 1, self.cout, *spatial)
        return y.gather(1, index).squeeze(1)


class MultiHead(Conditioning):
    """Shared body, one output head per task."""

    name = "multihead"

    def head(self, dims: int, cin: int, cout: int) -> CondModule:
        return TaskHeads(dims, cin, cout, self.num_tasks)
