"""Task switching networks (Sun et al., ICCV 2021): one shared network whose decoder is switched by a task code.

The task one-hot goes through a small MLP shared by the whole network (the task embedding network)
to a latent code ``z``. Every decoder normalisation is followed by a task-conditioned affine (FiLM /
AdaIN style): ``y = norm(x) * (1 + gamma(z)) + beta(z)``, with ``gamma, beta`` a per-layer Linear from
``z`` to two values per channel.

Choices where the paper leaves the detail open:

- only parts built with ``role == "decoder"`` are switched, as in TSN (shared encoder, switched
  decoder); the encoder, the bottleneck and the dimension transforms stay task-agnostic, and the head
  is a plain shared convolution, so all task specificity comes from the decoder's affines;
- the decoder norms have no affine of their own (the task affine replaces it); ``gamma`` is a residual
  scale around 1 so a fresh network starts near the unconditioned one;
- the MLP is ``Linear(T, L) - LeakyReLU - Linear(L, L) - LeakyReLU`` with ``L = latent_dim`` (option,
  default 64); it is one module shared by every decoder affine, so it appears once per affine in the
  state dict (tied weights) and once in ``parameters()``.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from sparsessp.models.conditioning.base import Conditioning, CondModule, Role, TaskContext


def plain_norm(kind: str, dims: int, channels: int) -> nn.Module:
    """A batch or instance norm without a learned affine (the task affine supplies it)."""
    if kind == "batch":
        return {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}[dims](channels, affine=False)
    if kind == "instance":
        return {2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}[dims](channels, affine=False)
    raise ValueError(f"unknown norm {kind!r}")


class TaskEncoder(nn.Module):
    """The task embedding network: one-hot ``(B, T)`` -> latent code ``(B, L)``."""

    def __init__(self, num_tasks: int, latent_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(num_tasks, latent_dim),
            nn.LeakyReLU(0.2),
            nn.Linear(latent_dim, latent_dim),
            nn.LeakyReLU(0.2),
        )

    def forward(self, onehot: Tensor) -> Tensor:
        return self.net(onehot)


class TaskFiLMNorm(CondModule):
    """Normalisation followed by a per-channel scale and shift generated from the shared task code."""

    def __init__(self, encoder: TaskEncoder, norm: nn.Module, dims: int, channels: int, latent_dim: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.norm = norm
        self.dims = dims
        self.affine = nn.Linear(latent_dim, 2 * channels)

    def forward(self, x: Tensor, ctx: TaskContext) -> Tensor:
        code = self.encoder(ctx.onehot(self.affine.weight.dtype))
        gamma, beta = self.affine(code).to(x.dtype).chunk(2, dim=1)
        shape = (*gamma.shape, *([1] * self.dims))
        return self.norm(x) * (1 + gamma.view(shape)) + beta.view(shape)


class TSN(Conditioning):
    """Conditioning factory: task-switched affines after every decoder norm."""

    name = "tsn"

    def __init__(self, num_tasks: int, norm: str = "batch", options: dict[str, Any] | None = None) -> None:
        super().__init__(num_tasks, norm, options)
        self.latent_dim = int(self.option("latent_dim", 64, ("latent_dim",), minimum=1))
        self.encoder = TaskEncoder(num_tasks, self.latent_dim)

    def norm(self, dims: int, channels: int, *, role: Role) -> CondModule:
        if role != "decoder":
            return super().norm(dims, channels, role=role)
        return TaskFiLMNorm(self.encoder, plain_norm(self.norm_kind, dims, channels), dims, channels, self.latent_dim)
