"""The one U-Net skeleton every topology instantiates (architecture.md sec. 2).

An encoder (3D, or a 2D backbone from ``registry.BACKBONES``) gives one feature per level; a bridge per
level maps it to the decoder's dimensionality (identity, depth-to-channel or channel-to-depth); a 2D or
3D decoder up-samples with stride-2 transposed convs and fuses the bridged skips. Every part comes from
the :class:`Conditioning` factory, so a mechanism changes the network without the skeleton knowing it.

Levels: ``len(cfg.model.channels)``; level k has ``channels[k]`` channels at spatial stride ``2**k``; the
last level is the bottleneck. In 3D the depth is halved with the height and width while it is even,
after that the stride is anisotropic (1, 2, 2) (see :func:`sparsessp.design.level_depths`), so a shallow input
(postfix with D/r = 1 or 2) keeps working.
"""

from __future__ import annotations

from itertools import pairwise
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from sparsessp.design import DECODER_DIMS, ENCODER_DIMS, level_depths
from sparsessp.models.blocks import Down, ResBlock, Up
from sparsessp.models.conditioning.base import Conditioning, CondModule, Plain, TaskContext
from sparsessp.models.registry import BACKBONES, resolve
from sparsessp.models.transforms import ChannelToDepth, DepthToChannel

if TYPE_CHECKING:
    from sparsessp.config import Config

Stride = int | tuple[int, int, int]


def level_strides(dims: int, depths: list[int]) -> list[Stride]:
    """Stride of the transition from level k to k + 1: 2 in 2D, (depth ratio, 2, 2) in 3D."""
    if dims == 2:
        return [2] * (len(depths) - 1)
    return [(a // b, 2, 2) for a, b in pairwise(depths)]


class Encoder(nn.Module):
    """Residual encoder in 2D or 3D: level 0 = ResBlock; level k = Down (stride) + ResBlock.

    ``forward(x, ctx)`` returns the feature of every level; the last level's block has role
    ``"bottleneck"``, the others ``"encoder"``.
    """

    def __init__(
        self, cond: Conditioning, dims: int, in_chans: int, channels: list[int], strides: list[Stride]
    ) -> None:
        super().__init__()
        if len(strides) != len(channels) - 1:
            raise ValueError(f"{len(channels)} levels need {len(channels) - 1} strides, got {len(strides)}")
        last = len(channels) - 1
        self.downs = nn.ModuleList(
            Down(dims, channels[k - 1], channels[k], strides[k - 1], cond.norm_kind) for k in range(1, len(channels))
        )
        self.blocks = nn.ModuleList(
            ResBlock(
                cond,
                dims,
                in_chans if k == 0 else channels[k],
                channels[k],
                role="bottleneck" if k == last else "encoder",
            )
            for k in range(len(channels))
        )

    def forward(self, x: Tensor, ctx: TaskContext) -> list[Tensor]:
        feats = [self.blocks[0](x, ctx)]
        for down, block in zip(self.downs, self.blocks[1:]):
            feats.append(block(down(feats[-1]), ctx))
        return feats


class Decoder(nn.Module):
    """Residual decoder in 2D or 3D: from the deepest level up, Up (stride) -> concat(skip, up) -> ResBlock.

    ``skip_channels[k]`` and ``channels[k]`` are the bridged skip's and the decoder's channels at level
    k (k = 0 .. levels-2); ``strides[k]`` is the encoder stride from level k to k + 1. Skips pass through
    ``cond.skip`` before the concatenation, the bottleneck feature through ``cond.bottom``.
    """

    def __init__(
        self,
        cond: Conditioning,
        dims: int,
        bottom_channels: int,
        skip_channels: list[int],
        channels: list[int],
        strides: list[Stride],
    ) -> None:
        super().__init__()
        n = len(channels)
        if len(skip_channels) != n or len(strides) != n:
            raise ValueError("decoder: skip_channels, channels and strides need one entry per level above the bottom")
        ups: list[nn.Module] = [nn.Identity()] * n
        skips: list[nn.Module] = [nn.Identity()] * n
        blocks: list[nn.Module] = [nn.Identity()] * n
        prev = bottom_channels
        for k in reversed(range(n)):
            ups[k] = Up(dims, prev, channels[k], strides[k], cond.norm_kind)
            skips[k] = cond.skip(dims, skip_channels[k], level=k)
            blocks[k] = ResBlock(cond, dims, skip_channels[k] + channels[k], channels[k], role="decoder")
            prev = channels[k]
        self.bottom = cond.bottom(dims, bottom_channels)
        self.ups = nn.ModuleList(ups)
        self.skips = nn.ModuleList(skips)
        self.blocks = nn.ModuleList(blocks)
        self.out_channels = channels[0]

    def forward(self, feats: list[Tensor], ctx: TaskContext) -> Tensor:
        h = self.bottom(feats[-1], ctx)
        for k in reversed(range(len(self.blocks))):
            h = self.ups[k](h)
            h = self.blocks[k](torch.cat([self.skips[k](feats[k], ctx), h], dim=1), ctx)
        return h


class UNet(nn.Module):
    """Encoder -> per-level bridges -> decoder; returns the last decoder feature (the head is outside).

    The encoder's deepest feature (before its bridge; ``(B, channels[-1], ...)``, 2D or 3D as the
    encoder) is left in ``ctx.store["bottleneck"]``.
    """

    def __init__(self, encoder: nn.Module, bridges: list[CondModule], decoder: Decoder, out_dims: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.bridges = nn.ModuleList(bridges)
        self.decoder = decoder
        self.out_dims = out_dims
        self.out_channels = decoder.out_channels

    def forward(self, x: Tensor, ctx: TaskContext) -> Tensor:
        feats = self.encoder(x, ctx)
        if len(feats) != len(self.bridges):
            raise ValueError(f"encoder gave {len(feats)} levels, the decoder expects {len(self.bridges)}")
        ctx.store["bottleneck"] = feats[-1]
        return self.decoder([bridge(f, ctx) for bridge, f in zip(self.bridges, feats)], ctx)


def build_unet(cfg: Config, cond: Conditioning, in_depth: int) -> UNet:
    """The body of ``cfg.model.topology`` for a network input of depth ``in_depth``.

    3D encoders take (B, 1, in_depth, H, W); 2D encoders take the depth folded into channels,
    (B, in_depth, H, W). Bridges: ``3d`` / ``2d`` identity; ``3to2d`` depth-to-channel to
    ``embed_dim`` channels at every level (skips and bottleneck); ``2to3d`` channel-to-depth from the 2D
    encoder's channels to the same channel count per level in 3D. The decoder has ``channels[k]``
    channels at level k.
    """
    model = cfg.model
    topology = model.topology
    channels = model.scaled_channels()
    levels = len(channels)
    depths = level_depths(in_depth, levels)
    enc_dims, dec_dims = ENCODER_DIMS[topology], DECODER_DIMS[topology]
    if enc_dims == 3:
        encoder: nn.Module = Encoder(cond, 3, 1, channels, level_strides(3, depths))
    else:
        encoder = resolve(BACKBONES, model.backbone)(cond, in_depth, channels, cfg)
    bridges: list[CondModule]
    if topology == "3to2d":
        bridges = [
            DepthToChannel(cond, c, d, model.embed_dim, model.projection, model.projection_kernel)
            for c, d in zip(channels, depths)
        ]
        bridged = [model.embed_dim] * levels
    elif topology == "2to3d":
        bridges = [
            ChannelToDepth(cond, c, d, c, model.projection, model.projection_kernel) for c, d in zip(channels, depths)
        ]
        bridged = list(channels)
    else:
        bridges = [Plain(nn.Identity()) for _ in channels]
        bridged = list(channels)
    decoder = Decoder(cond, dec_dims, bridged[-1], bridged[:-1], channels[:-1], level_strides(dec_dims, depths))
    return UNet(encoder, bridges, decoder, dec_dims)
