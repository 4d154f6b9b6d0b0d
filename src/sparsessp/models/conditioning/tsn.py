"""Task switching networks (Sun et al., ICCV 2021): one shared network whose decoder is switched by a task code.

``style: adain`` (the default, the official TSNs code's mechanism and the paper's):

- the task one-hot goes through a mapping network shared by the whole network, ``PixelNorm`` then
  ``mapping_layers`` fully connected layers (equalised learning rate, LeakyReLU 0.2) of width
  ``latent_dim`` (official: 8 layers of 512), to a style vector ``w``;
- every decoder convolution is followed by AdaIN: instance-norm statistics (no learned affine of its
  own), then a per-channel scale and shift from a per-layer affine of ``w`` (scale bias initialised to 1,
  shift to 0, as the official ``FC_A``);
- every skip connection and the bottleneck pass through a 1x1 convolution + AdaIN + LeakyReLU before the
  decoder uses them (the official ``layer*_1x1`` convs).

The encoder, the bottleneck's own blocks, the dimension transforms and the head stay task-agnostic. The
skeleton's stride-2 transposed convs keep their plain norm: the official decoder up-samples bilinearly
(no convolution there), so its AdaIN convs are exactly our decoder blocks' convs and the 1x1 skip convs.

``style: film`` (our earlier variant, kept for comparison): the configured norm without affine, then
``y = norm(x) * (1 + gamma(z)) + beta(z)`` after every decoder norm, ``z`` from a two-layer MLP
(``Linear(T, L) - LeakyReLU - Linear(L, L) - LeakyReLU``, ``latent_dim`` default 64); skips untouched.

The mapping network is one module shared by every layer that uses it, so it appears once per layer in
the state dict (tied weights) and once in ``parameters()``; its output is computed once per forward pass.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sparsessp.errors import ConfigError
from sparsessp.models.conditioning.base import Conditioning, CondModule, Role, TaskContext, conv_nd

OPTIONS: tuple[str, ...] = ("style", "latent_dim", "mapping_layers")
STYLES: tuple[str, ...] = ("adain", "film")


class EqualLinear(nn.Module):
    """Linear layer with an equalised learning rate: weights drawn from N(0, 1), scaled by sqrt(2 / fan_in)
    at run time (He's constant, as the official TSNs / StyleGAN layers), bias starting at ``bias_init``."""

    def __init__(self, cin: int, cout: int, bias_init: Tensor | None = None) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin))
        self.bias = nn.Parameter(torch.zeros(cout) if bias_init is None else bias_init.clone())
        self.scale = math.sqrt(2 / cin)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.scale, self.bias)


class PixelNorm(nn.Module):
    """Scale each vector to unit root-mean-square over its features."""

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


class MappingNetwork(nn.Module):
    """Task one-hot ``(B, T)`` -> style vector ``(B, L)``: PixelNorm, then ``layers`` EqualLinear + LeakyReLU."""

    def __init__(self, num_tasks: int, latent_dim: int, layers: int) -> None:
        super().__init__()
        parts: list[nn.Module] = [PixelNorm()]
        for k in range(layers):
            parts += [EqualLinear(num_tasks if k == 0 else latent_dim, latent_dim), nn.LeakyReLU(0.2)]
        self.net = nn.Sequential(*parts)

    def forward(self, onehot: Tensor) -> Tensor:
        return self.net(onehot)

    def style(self, ctx: TaskContext, dtype: torch.dtype) -> Tensor:
        """The style vector of ``ctx``'s tasks, computed once per forward pass (cached in ``ctx.store``)."""
        key = f"tsn-style-{id(self)}"
        if key not in ctx.store:
            ctx.store[key] = self(ctx.onehot(dtype))
        return ctx.store[key]


class AdaIN(CondModule):
    """Instance normalisation, then a per-channel scale and shift from an affine of the task's style vector."""

    def __init__(self, mapping: MappingNetwork, dims: int, channels: int, latent_dim: int) -> None:
        super().__init__()
        self.mapping = mapping
        self.dims = dims
        self.affine = EqualLinear(latent_dim, 2 * channels, torch.cat([torch.ones(channels), torch.zeros(channels)]))

    def forward(self, x: Tensor, ctx: TaskContext) -> Tensor:
        scale, shift = self.affine(self.mapping.style(ctx, self.affine.weight.dtype)).to(x.dtype).chunk(2, dim=1)
        shape = (*scale.shape, *([1] * self.dims))
        return F.instance_norm(x) * scale.view(shape) + shift.view(shape)


class StyledConv(CondModule):
    """1x1 convolution + AdaIN + LeakyReLU (the official TSNs' ``convrelu`` on skips and the bottleneck)."""

    def __init__(self, mapping: MappingNetwork, dims: int, channels: int, latent_dim: int) -> None:
        super().__init__()
        self.conv = conv_nd(dims)(channels, channels, 1)
        self.adain = AdaIN(mapping, dims, channels, latent_dim)
        self.act = nn.LeakyReLU()

    def forward(self, x: Tensor, ctx: TaskContext) -> Tensor:
        return self.act(self.adain(self.conv(x), ctx))


class TaskEncoder(nn.Module):
    """The FiLM variant's task embedding network: one-hot ``(B, T)`` -> latent code ``(B, L)``."""

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


def plain_norm(kind: str, dims: int, channels: int) -> nn.Module:
    """A batch or instance norm without a learned affine (the task affine supplies it)."""
    if kind == "batch":
        return {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}[dims](channels, affine=False)
    if kind == "instance":
        return {2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}[dims](channels, affine=False)
    raise ValueError(f"unknown norm {kind!r}")


class TaskFiLMNorm(CondModule):
    """The FiLM variant: normalisation followed by a residual per-channel scale and shift from the task code."""

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
    """Conditioning factory: AdaIN on the decoder convs and 1x1 AdaIN convs on the skips (or the FiLM variant)."""

    name = "tsn"

    def __init__(self, num_tasks: int, norm: str = "batch", options: dict[str, Any] | None = None) -> None:
        super().__init__(num_tasks, norm, options)
        self.style = self.option("style", "adain", OPTIONS)
        if self.style not in STYLES:
            raise ConfigError(f"model.conditioning_options.style: unknown {self.style!r}; choose one of adain, film")
        adain = self.style == "adain"
        self.latent_dim = int(self.option("latent_dim", 512 if adain else 64, OPTIONS, minimum=1))
        self.mapping_layers = int(self.option("mapping_layers", 8, OPTIONS, minimum=1))
        if adain:
            self.mapping: MappingNetwork | None = MappingNetwork(num_tasks, self.latent_dim, self.mapping_layers)
            self.encoder: TaskEncoder | None = None
        else:
            self.mapping = None
            self.encoder = TaskEncoder(num_tasks, self.latent_dim)

    def norm(self, dims: int, channels: int, *, role: Role) -> CondModule:
        if role != "decoder":
            return super().norm(dims, channels, role=role)
        if self.mapping is not None:
            return AdaIN(self.mapping, dims, channels, self.latent_dim)
        assert self.encoder is not None
        return TaskFiLMNorm(self.encoder, plain_norm(self.norm_kind, dims, channels), dims, channels, self.latent_dim)

    def skip(self, dims: int, channels: int, *, level: int) -> CondModule:
        if self.mapping is None:
            return super().skip(dims, channels, level=level)
        return StyledConv(self.mapping, dims, channels, self.latent_dim)

    def bottom(self, dims: int, channels: int) -> CondModule:
        if self.mapping is None:
            return super().bottom(dims, channels)
        return StyledConv(self.mapping, dims, channels, self.latent_dim)
