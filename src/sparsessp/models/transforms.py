"""Dimension transformation between 3D and 2D features (architecture.md sec. 3, paper sec. 3.3).

Reshapes fold depth into channels channel-major: (B, C, D, H, W) <-> (B, C * D, H, W), channel index
``c * D + d`` (as ``Tensor.reshape``; the released code's view). The projection runs either in 3D
(a 1x1x1 Conv3d on each slice, before folding / after unfolding) or in 2D (a Conv2d on the folded
feature, after folding / before unfolding). Every projection conv comes from ``cond.conv(...,
role="transform")`` and is followed by ``cond.norm`` and ReLU.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn

from sparsessp.models.conditioning.base import Conditioning, CondModule, CondSequential, Plain, TaskContext

Projection = Literal["3d", "2d"]


def depth_to_channel(x: Tensor) -> Tensor:
    """(B, C, D, H, W) -> (B, C * D, H, W), channel index c * D + d."""
    b, c, d, h, w = x.shape
    return x.reshape(b, c * d, h, w)


def channel_to_depth(x: Tensor, depth: int) -> Tensor:
    """(B, C * D, H, W) -> (B, C, D, H, W), the inverse of :func:`depth_to_channel`."""
    b, cd, h, w = x.shape
    if cd % depth:
        raise ValueError(f"cannot unfold {cd} channels into depth {depth}")
    return x.reshape(b, cd // depth, depth, h, w)


def _projection(cond: Conditioning, dims: int, cin: int, cout: int, kernel_size: int) -> CondSequential:
    return CondSequential(
        [
            cond.conv(dims, cin, cout, kernel_size, role="transform"),
            cond.norm(dims, cout, role="transform"),
            Plain(nn.ReLU(inplace=True)),
        ]
    )


class DepthToChannel(CondModule):
    """3D feature (B, C, D, H, W) -> 2D feature (B, U, H, W).

    - ``projection="3d"`` (the paper's choice): 1x1x1 Conv3d C -> U / D, then fold (needs U % D == 0);
    - ``projection="2d"``: fold to C * D channels, then a ``kernel_size`` Conv2d C * D -> U.
    """

    def __init__(
        self,
        cond: Conditioning,
        channels: int,
        depth: int,
        embed_dim: int,
        projection: Projection,
        kernel_size: int = 1,
    ) -> None:
        super().__init__()
        self.depth = depth
        self.projection = projection
        if projection == "3d":
            if embed_dim % depth:
                raise ValueError(f"embed_dim {embed_dim} is not divisible by depth {depth} (projection 3d)")
            self.proj = _projection(cond, 3, channels, embed_dim // depth, 1)
        elif projection == "2d":
            self.proj = _projection(cond, 2, channels * depth, embed_dim, kernel_size)
        else:
            raise ValueError(f"unknown projection {projection!r}; choose 3d or 2d")

    def forward(self, x: Tensor, ctx: TaskContext) -> Tensor:
        if x.shape[2] != self.depth:
            raise ValueError(f"depth-to-channel built for depth {self.depth}, got a feature of depth {x.shape[2]}")
        if self.projection == "3d":
            return depth_to_channel(self.proj(x, ctx))
        return self.proj(depth_to_channel(x), ctx)


class ChannelToDepth(CondModule):
    """2D feature (B, C, H, W) -> 3D feature (B, C', D, H, W).

    - ``projection="3d"``: unfold to (B, C / D, D, H, W) (needs C % D == 0), then 1x1x1 Conv3d C / D -> C';
    - ``projection="2d"``: a ``kernel_size`` Conv2d C -> C' * D, then unfold.
    """

    def __init__(
        self,
        cond: Conditioning,
        channels: int,
        depth: int,
        out_channels: int,
        projection: Projection,
        kernel_size: int = 1,
    ) -> None:
        super().__init__()
        self.depth = depth
        self.projection = projection
        if projection == "3d":
            if channels % depth:
                raise ValueError(f"{channels} channels do not unfold into depth {depth} (projection 3d)")
            self.proj = _projection(cond, 3, channels // depth, out_channels, 1)
        elif projection == "2d":
            self.proj = _projection(cond, 2, channels, out_channels * depth, kernel_size)
        else:
            raise ValueError(f"unknown projection {projection!r}; choose 3d or 2d")

    def forward(self, x: Tensor, ctx: TaskContext) -> Tensor:
        if self.projection == "3d":
            return self.proj(channel_to_depth(x, self.depth), ctx)
        return channel_to_depth(self.proj(x, ctx), self.depth)
