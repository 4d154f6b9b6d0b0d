"""RepMode (Zhou et al., CVPR 2023) as a conditioning mechanism: every convolution is a MoDE convolution.

Every convolution the skeleton asks the factory for (encoder, bottleneck, decoder and the dimension
transforms, role ``transform``) becomes a :class:`~sparsessp.models.conditioning.mode.MoDEConv`, and the
head is a 'final' MoDE convolution (no norm, no activation, no bias), as in the released RepMode.

Choices (``model.conditioning_options``):

- ``kernel_size`` (default 5, RepMode's): the size of the largest expert. A convolution requested with a
  larger kernel keeps its size; a smaller one (a 3x3 of a residual block, a 1x1 projection) becomes a
  MoDE of ``kernel_size``, whose 3x3 and 1x1 experts contain the requested kernel as a special case;
- ``route`` (default ``by_task``): how training computes the mixture; see :mod:`.mode` for the routes and
  the measurement behind the default. Inference always folds one cached kernel per task;
- ``cache_tasks`` (default 4): folded kernels each layer keeps for inference.

The 1x1 shortcut of a residual block is built by the skeleton directly (not through the factory) and
stays a plain convolution.
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
        return self._mode(dims, cin, cout, kernel_size)

    def head(self, dims: int, cin: int, cout: int) -> CondModule:
        return self._mode(dims, cin, cout, 1)
