"""RepMode (Zhou et al., CVPR 2023) as a conditioning mechanism: every convolution is a MoDE convolution.

Every convolution with a spatial kernel the skeleton asks the factory for (encoder, bottleneck, decoder,
and the dimension transforms when ``model.projection_kernel`` > 1) becomes a
:class:`~sparsessp.models.conditioning.mode.MoDEConv`, and the head is a 'final' MoDE convolution of
``kernel_size`` (no norm, no activation, no bias), as the released RepMode's ``conv_out`` and the released
SparseSSP head (both 5x5(x5) 'final' MoDE layers).

A convolution asked for with kernel size 1 (the 1x1(x1) projections of the hybrid topologies, the paper's
"kernel-size-1 convolution") stays a plain 1x1 convolution: MoDE's experts differ in their spatial extent
(5x5, 3x3, 1x1, 1x1 + 3x3 average, 1x1 + 5x5 average), which a kernel-1 layer does not have, so it is
task-agnostic like the 1x1 shortcuts of the residual blocks (which the skeleton builds directly).

Choices (``model.conditioning_options``):

- ``kernel_size`` (default 5, RepMode's): the size of the largest expert. A convolution requested with a
  larger kernel keeps its size; a smaller one with a spatial extent (the 3x3 of a residual block) becomes a
  MoDE of ``kernel_size``, whose 3x3 expert contains the requested kernel as a special case;
- ``route`` (default ``by_task``): how training computes the mixture; see :mod:`.mode` for the routes and
  the measurement behind the default. Inference always folds one cached kernel per task;
- ``cache_tasks`` (default 4): folded kernels each layer keeps for inference.
"""

from __future__ import annotations

from typing import Any

from sparsessp.errors import ConfigError
from sparsessp.models.conditioning.base import Conditioning, CondModule, Role
from sparsessp.models.conditioning.mode import DEFAULT_ROUTE, ROUTES, MoDEConv

OPTIONS: tuple[str, ...] = ("kernel_size", "route", "cache_tasks")


class RepMode(Conditioning):
    """Conditioning factory whose convolutions and head are MoDE convolutions (2D and 3D)."""

    name = "repmode"

    def __init__(self, num_tasks: int, norm: str = "batch", options: dict[str, Any] | None = None) -> None:
        super().__init__(num_tasks, norm, options)
        self.kernel_size = int(self.option("kernel_size", 5, OPTIONS, minimum=1))
        if self.kernel_size % 2 == 0:
            raise ConfigError(f"model.conditioning_options.kernel_size: expected an odd size, got {self.kernel_size}")
        self.route = self.option("route", DEFAULT_ROUTE, OPTIONS)
        if self.route not in ROUTES:
            raise ConfigError(
                f"model.conditioning_options.route: unknown {self.route!r}; choose one of {', '.join(ROUTES)}"
            )
        self.cache_tasks = int(self.option("cache_tasks", 4, OPTIONS, minimum=0))

    def _mode(self, dims: int, cin: int, cout: int, kernel_size: int) -> MoDEConv:
        size = kernel_size if kernel_size > self.kernel_size and kernel_size % 2 else self.kernel_size
        return MoDEConv(dims, cin, cout, self.num_tasks, size, route=self.route, cache_tasks=self.cache_tasks)

    def conv(self, dims: int, cin: int, cout: int, kernel_size: int, *, role: Role) -> CondModule:
        if kernel_size == 1:
            return super().conv(dims, cin, cout, 1, role=role)
        return self._mode(dims, cin, cout, kernel_size)

    def head(self, dims: int, cin: int, cout: int) -> CondModule:
        return self._mode(dims, cin, cout, self.kernel_size)
