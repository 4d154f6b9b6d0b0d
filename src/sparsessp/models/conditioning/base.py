"""The contract between the U-Net skeleton and a task-conditioning mechanism.

The skeleton never knows which mechanism it carries: it asks a :class:`Conditioning` factory for
every part a mechanism may change (convolutions, norms, residual gates, block outputs, skips, the
head) and passes a :class:`TaskContext` through ``forward``. The base class builds the plain,
unconditioned network (registry name ``none``, also the member of a Multi-Net); a mechanism
overrides only the factories of the parts it changes. Every factory works in 2D and 3D
(``dims`` = 2 or 3, as MONAI's ``spatial_dims``).
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sparsessp.errors import ConfigError

if TYPE_CHECKING:
    from sparsessp.config import Config

Role = Literal["encoder", "bottleneck", "decoder", "transform", "head"]
"""Where in the network a part sits; mechanisms use it to condition only some parts (e.g. TSNs: decoder)."""


class TaskContext:
    """Task information for one forward pass, shared by every conditioned part.

    ``store`` carries features one part leaves for another (the skeleton stores the bottleneck
    output under ``"bottleneck"``, which DoDNet's controller reads).
    """

    def __init__(self, task_ids: Tensor, num_tasks: int) -> None:
        if task_ids.ndim != 1:
            raise ValueError(f"task_ids must be 1-D (B,), got shape {tuple(task_ids.shape)}")
        self.task_ids = task_ids.long()
        self.num_tasks = num_tasks
        self.store: dict[str, Tensor] = {}

    def onehot(self, dtype: torch.dtype) -> Tensor:
        return F.one_hot(self.task_ids, self.num_tasks).to(dtype)


class CondModule(nn.Module, abc.ABC):
    """A part whose output may depend on the task: ``forward(x, ctx)``."""

    @abc.abstractmethod
    def forward(self, x: Tensor, ctx: TaskContext) -> Tensor:
        """Map ``x`` for the tasks in ``ctx``."""


class Plain(CondModule):
    """Wraps an ordinary module so it fits the conditioned call signature (ignores the task)."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: Tensor, ctx: TaskContext) -> Tensor:
        return self.module(x)


class CondSequential(nn.ModuleList):
    """Runs conditioned parts in order."""

    def forward(self, x: Tensor, ctx: TaskContext) -> Tensor:
        for part in self:
            x = part(x, ctx)
        return x


def conv_nd(dims: int) -> type[nn.Module]:
    return {2: nn.Conv2d, 3: nn.Conv3d}[dims]


def conv_transpose_nd(dims: int) -> type[nn.Module]:
    return {2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}[dims]


def norm_nd(kind: str, dims: int, channels: int) -> nn.Module:
    if kind == "batch":
        return {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}[dims](channels)
    if kind == "instance":
        return {2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}[dims](channels, affine=True)
    raise ValueError(f"unknown norm {kind!r}")


class Conditioning:
    """Factory of network parts; the base builds them unconditioned (registry name ``none``)."""

    name = "none"

    def __init__(self, num_tasks: int, norm: str = "batch", options: dict[str, Any] | None = None) -> None:
        self.num_tasks = num_tasks
        self.norm_kind = norm
        self.options = dict(options or {})

    def check_options(self, allowed: tuple[str, ...]) -> None:
        """Raise ConfigError for a ``model.conditioning_options`` key this mechanism does not know."""
        unknown = sorted(set(self.options) - set(allowed))
        if unknown:
            known = ", ".join(allowed) if allowed else "none"
            raise ConfigError(f"model.conditioning_options: {self.name} has no option {unknown[0]!r} (known: {known})")

    def option(self, key: str, default: Any, allowed: tuple[str, ...], *, minimum: float | None = None) -> Any:
        """Read ``model.conditioning_options[key]`` after :meth:`check_options` (a number >= ``minimum``
        when given; an integer when ``default`` is one); a value out of range is a ConfigError.
        """
        self.check_options(allowed)
        value = self.options.get(key, default)
        if minimum is not None and (isinstance(value, bool) or not isinstance(value, int | float) or value < minimum):
            raise ConfigError(f"model.conditioning_options.{key}: expected a number >= {minimum}, got {value!r}")
        if isinstance(default, int) and not isinstance(value, int):
            raise ConfigError(f"model.conditioning_options.{key}: expected an integer, got {value!r}")
        return value

    @classmethod
    def build_model(cls, cfg: Config, build_network: Callable[[Conditioning], nn.Module]) -> nn.Module:
        """Build the whole network; Multi-Net overrides this to build one network per task."""
        return build_network(cls(cfg.num_tasks, cfg.model.norm, cfg.model.conditioning_options))

    def conv(self, dims: int, cin: int, cout: int, kernel_size: int, *, role: Role) -> CondModule:
        """A 'same'-padded convolution followed by a norm (so no bias)."""
        return Plain(conv_nd(dims)(cin, cout, kernel_size, padding=kernel_size // 2, bias=False))

    def norm(self, dims: int, channels: int, *, role: Role) -> CondModule:
        return Plain(norm_nd(self.norm_kind, dims, channels))

    def residual_gate(self, dims: int, channels: int, *, role: Role) -> CondModule:
        """Applied to a residual block's branch before the shortcut is added (Tgnet gates it)."""
        return Plain(nn.Identity())

    def block_output(self, dims: int, channels: int, *, role: Role) -> CondModule:
        """Applied to every block's output (CondNet adds a task embedding here)."""
        return Plain(nn.Identity())

    def skip(self, dims: int, channels: int, *, level: int) -> CondModule:
        """Applied to an encoder skip before the decoder concatenates it (Tgnet's attention)."""
        return Plain(nn.Identity())

    def bottom(self, dims: int, channels: int) -> CondModule:
        """Applied to the bottleneck feature before the decoder up-samples it (TSNs' 1x1 AdaIN conv)."""
        return Plain(nn.Identity())

    def head(self, dims: int, cin: int, cout: int) -> CondModule:
        """The output layer: decoder features -> ``cout`` channels (DoDNet's dynamic head)."""
        return Plain(conv_nd(dims)(cin, cout, 1))
