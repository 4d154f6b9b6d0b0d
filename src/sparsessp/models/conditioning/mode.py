"""The MoDE convolution of RepMode (Zhou et al., CVPR 2023): a Mixture of Diverse Experts, task-gated.

Five experts share the input and output channels: a KxK(xK) convolution (K = 5 by default), a 3x3, a
1x1, a 1x1 followed by a 3x3 average and a 1x1 followed by a 5x5 average. A gate ``Linear(T -> 5 * C_out)``
on the task one-hot, viewed ``(N, 5, C_out)`` and soft-maxed over the experts, weighs the experts per
output channel. Because every expert is linear, the mixture folds into ONE kernel of size
``S = max(K, 5)`` per task (smaller kernels zero-padded to S, an average expert = its 1x1 weight times
the uniform kernel), applied with 'same' zero padding. No bias: a norm follows (or it is a head).

Routes (all compute the same function; ``tests/test_mode.py`` checks them against per-sample folded
kernels in float64 to 1e-10, 2D and 3D):

- inference (eval mode with autograd off): fold one kernel per task and cache it until a parameter or
  buffer changes (keyed on every tensor's ``data_ptr`` and ``_version``, so an optimizer step, a
  ``load_state_dict`` or a move to another device invalidates it) or the autocast dtype does (kernels
  are folded in the parameters' dtype, then cast to the autocast dtype); the batch is split by task, one
  convolution per distinct task (one call in total for a single-task batch, the usual case);
- ``by_task`` (training default): fold one kernel per distinct task in the batch, one convolution per
  task (one for a single-task batch); it does the release's own arithmetic (bit for bit in float32);
- ``experts``: run the five experts on the whole batch (the three 1x1 experts as one convolution, the
  averages as box sums scaled by the uniform kernel's value) and mix their outputs per sample and output
  channel; about 1.25x the MACs of a folded 5x5x5 kernel and five outputs of memory;
- ``grouped``: fold one kernel per sample and run ONE grouped convolution (``groups = B``).

Why ``by_task`` (``benchmarks/mode_routes.py``, batch 8 with eight tasks, i.e. its worst case): idle CPU,
2 threads, the tiny released network, training step in float32: by_task 3.85 it/s, grouped 3.53,
experts 2.90; H200, the full-size released network (198.9 M parameters), fp16 autocast: by_task 5.96
it/s (8.3 GiB), experts 4.25 (9.9 GiB), grouped 1.85 (7.6 GiB); the released per-sample loop reached
2.75 it/s on that card (anchors.md). Single MoDE layers on 2 CPU threads (batch 4, four tasks, forward +
backward): grouped and by_task 65 to 120 ms, experts 120 to 160 ms, except few large channels at
small size (2D 256->128 at 16x16: experts 42, by_task 49, grouped 66 ms).

``released_2d_avg=True`` reproduces a quirk of the released SparseSSP code: its 2D average kernels are
``ones(k, k) / k**3`` instead of ``/ k**2``. The kernels are persistent buffers, so a checkpoint keeps
whichever was used.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sparsessp.models.conditioning.base import CondModule, TaskContext

NUM_EXPERTS = 5
ROUTES: tuple[str, ...] = ("by_task", "experts", "grouped")
DEFAULT_ROUTE = "by_task"


def average_kernel(size: int, dims: int, released_2d_avg: bool = False) -> Tensor:
    """Uniform ``size**dims`` kernel summing to one (``/ size**3`` in 2D with the released quirk)."""
    divisor = size**3 if released_2d_avg else size**dims
    return torch.ones((size,) * dims) / divisor


def _conv_fn(dims: int) -> Callable[..., Tensor]:
    return {2: F.conv2d, 3: F.conv3d}[dims]


class MoDEConv(CondModule):
    """Task-gated mixture of five diverse experts, ``dims`` = 2 or 3; ``forward(x, ctx)``."""

    def __init__(
        self,
        dims: int,
        cin: int,
        cout: int,
        num_tasks: int,
        kernel_size: int = 5,
        *,
        route: str = DEFAULT_ROUTE,
        released_2d_avg: bool = False,
        cache_tasks: int = 4,
    ) -> None:
        super().__init__()
        if dims not in (2, 3):
            raise ValueError(f"MoDEConv works in 2D or 3D, got dims={dims}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"MoDEConv needs an odd kernel size, got {kernel_size}")
        if route not in ROUTES:
            raise ValueError(f"unknown MoDE route {route!r}; choose one of {', '.join(ROUTES)}")
        self.dims, self.cin, self.cout, self.num_tasks = dims, cin, cout, num_tasks
        self.kernel_size = kernel_size
        self.fold_size = max(kernel_size, 5)
        self.route = route
        self.cache_tasks = cache_tasks
        self.weight_k = self._kernel(kernel_size)
        self.weight_3 = self._kernel(3)
        self.weight_1 = self._kernel(1)
        self.weight_avg3 = self._kernel(1)
        self.weight_avg5 = self._kernel(1)
        self.register_buffer("pool3", average_kernel(3, dims, released_2d_avg))
        self.register_buffer("pool5", average_kernel(5, dims, released_2d_avg))
        self.gate = nn.Linear(num_tasks, NUM_EXPERTS * cout)
        self._cache: dict[int, Tensor] = {}
        self._cache_key: tuple | None = None

    def _kernel(self, size: int) -> nn.Parameter:
        weight = nn.Parameter(torch.empty(self.cout, self.cin, *(size,) * self.dims))
        nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
        return weight

    def extra_repr(self) -> str:
        return (
            f"dims={self.dims}, {self.cin} -> {self.cout}, tasks={self.num_tasks}, kernel_size={self.kernel_size}, "
            f"route={self.route!r}"
        )

    def train(self, mode: bool = True) -> MoDEConv:
        """Switching to training drops cached kernels (they would be stale after the next step anyway)."""
        if mode:
            self.clear_cache()
        return super().train(mode)

    def clear_cache(self) -> None:
        self._cache.clear()
        self._cache_key = None

    # --- re-parameterisation -------------------------------------------------------------------------

    def gates(self, task_ids: Tensor) -> Tensor:
        """Expert weights ``(N, 5, C_out)``: softmax over the experts of the gate on the one-hot."""
        onehot = F.one_hot(task_ids.long(), self.num_tasks).to(self.gate.weight.dtype)
        return torch.softmax(self.gate(onehot).view(-1, NUM_EXPERTS, self.cout), dim=1)

    def _pad(self, kernel: Tensor) -> Tensor:
        p = (self.fold_size - kernel.shape[-1]) // 2
        return F.pad(kernel, [p, p] * self.dims) if p else kernel

    def experts(self) -> Tensor:
        """The five experts as kernels of the fold size, stacked: ``(5, C_out, C_in, S, S[, S])``."""
        avg3 = self.weight_avg3 * self.pool3.to(self.weight_avg3.dtype)
        avg5 = self.weight_avg5 * self.pool5.to(self.weight_avg5.dtype)
        return torch.stack([self._pad(k) for k in (self.weight_k, self.weight_3, self.weight_1, avg3, avg5)])

    def fold(self, task_ids: Tensor) -> Tensor:
        """One re-parameterised kernel per entry of ``task_ids``: ``(N, C_out, C_in, S, S[, S])``."""
        g = self.gates(task_ids)
        stacked = self.experts()
        kernels = torch.einsum("neo,eop->nop", g.to(stacked.dtype), stacked.flatten(2))
        return kernels.view(len(task_ids), *stacked.shape[1:])

    # --- forward -------------------------------------------------------------------------------------

    def forward(self, x: Tensor, ctx: TaskContext) -> Tensor:
        task_ids = ctx.task_ids
        if x.shape[0] != task_ids.shape[0]:
            raise ValueError(f"MoDEConv got {x.shape[0]} samples but {task_ids.shape[0]} task ids")
        if not self.training and not torch.is_grad_enabled():
            return self._by_task(x, task_ids, self._cached_kernels)
        if self.route == "experts":
            return self._experts(x, task_ids)
        if self.route == "grouped":
            return self._grouped(x, task_ids)
        return self._by_task(x, task_ids, lambda ids: list(self.fold(ids)))

    def _conv(self, x: Tensor, weight: Tensor, groups: int = 1) -> Tensor:
        return _conv_fn(self.dims)(x, weight, None, 1, weight.shape[-1] // 2, 1, groups)

    def _box(self, z: Tensor, size: int) -> Tensor:
        """Zero-padded 'same' box sum over ``size**dims`` voxels: shifted slices along each axis in turn.

        Separable and exact; on the CPU it is several times faster than a depthwise convolution's backward.
        """
        p = size // 2
        for axis in range(2, 2 + self.dims):
            n = z.shape[axis]
            pad = [0, 0] * self.dims
            pad[2 * (self.dims + 1 - axis)] = pad[2 * (self.dims + 1 - axis) + 1] = p
            padded = F.pad(z, pad)
            z = padded.narrow(axis, 0, n)
            for j in range(1, size):
                z = z + padded.narrow(axis, j, n)
        return z

    def _experts(self, x: Tensor, task_ids: Tensor) -> Tensor:
        """The five experts on the whole batch, mixed per sample and output channel.

        The average experts use the value of their (uniform) kernel buffers times a box sum.
        """
        c = self.cout
        y_k = self._conv(x, self.weight_k)
        y_3 = self._conv(x, self.weight_3)
        y_1, z_3, z_5 = self._conv(x, torch.cat([self.weight_1, self.weight_avg3, self.weight_avg5])).split(c, 1)
        g = self.gates(task_ids).to(y_k.dtype).view(-1, NUM_EXPERTS, c, *(1,) * self.dims)
        scale3 = self.pool3.reshape(-1)[0].to(g.dtype)
        scale5 = self.pool5.reshape(-1)[0].to(g.dtype)
        y = y_k * g[:, 0]
        y = torch.addcmul(y, y_3, g[:, 1])
        y = torch.addcmul(y, y_1, g[:, 2])
        y = torch.addcmul(y, self._box(z_3, 3), g[:, 3] * scale3)
        return torch.addcmul(y, self._box(z_5, 5), g[:, 4] * scale5)

    def _grouped(self, x: Tensor, task_ids: Tensor) -> Tensor:
        b = x.shape[0]
        uniq, inverse = torch.unique(task_ids, return_inverse=True)
        kernels = self.fold(uniq)[inverse]
        y = self._conv(x.reshape(1, b * self.cin, *x.shape[2:]), kernels.flatten(0, 1), groups=b)
        return y.view(b, self.cout, *y.shape[2:])

    def _by_task(self, x: Tensor, task_ids: Tensor, kernels_for: Callable[[Tensor], list[Tensor]]) -> Tensor:
        """One convolution per distinct task; samples are regrouped by task and put back in order."""
        uniq, inverse, counts = torch.unique(task_ids, return_inverse=True, return_counts=True)
        kernels = kernels_for(uniq)
        if len(kernels) == 1:
            return self._conv(x, kernels[0])
        order = torch.argsort(inverse, stable=True)
        parts = x[order].split(counts.tolist())
        y = torch.cat([self._conv(part, kernel) for part, kernel in zip(parts, kernels)])
        return y[torch.argsort(order)]

    def _state_key(self) -> tuple:
        tensors = [*self.parameters(recurse=True), *self.buffers(recurse=True)]
        return tuple((t.data_ptr(), t._version, t.dtype, t.device) for t in tensors)

    def _cached_kernels(self, uniq: Tensor) -> list[Tensor]:
        """Folded kernels of the given tasks, reused until a weight or the autocast dtype changes (inference only).

        Folding runs in the parameters' dtype (autocast off, so a bf16 / fp16 kernel is the rounded exact
        one); under autocast the kernels are cached in the autocast dtype, the one the convolution uses.
        """
        device = uniq.device.type
        cast = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None
        key = (self._state_key(), cast)
        if key != self._cache_key:
            self.clear_cache()
            self._cache_key = key
        tasks = uniq.tolist()
        missing = [t for t in tasks if t not in self._cache]
        if missing:
            with torch.autocast(device, enabled=False):
                folded = self.fold(torch.tensor(missing, device=uniq.device))
            for t, kernel in zip(missing, folded if cast is None else folded.to(cast)):
                self._cache[t] = kernel
        for t in tasks:  # most recently used last; the least recently used go first
            self._cache[t] = self._cache.pop(t)
        while len(self._cache) > max(self.cache_tasks, len(tasks)):
            del self._cache[next(iter(self._cache))]
        return [self._cache[t] for t in tasks]
