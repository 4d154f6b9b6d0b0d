"""ViTDet's simple feature pyramid: multi-scale maps from the single-scale token map of a plain ViT.

Li et al., "Exploring Plain Vision Transformer Backbones for Object Detection" (ECCV 2022): a plain ViT
needs no hierarchical backbone for dense prediction; its last token map, up-sampled by transposed convs
and down-sampled by pooling, feeds a multi-scale head as well as a feature pyramid network would.
"""

from __future__ import annotations

from collections.abc import Sequence

from timm.layers import LayerNorm2d
from torch import Tensor, nn


def octaves(from_stride: int, to_stride: int) -> int:
    """n with ``to_stride = from_stride * 2**n`` (n < 0: finer); other ratios are a caller's programming error."""
    big, small = max(from_stride, to_stride), min(from_stride, to_stride)
    ratio = big // small
    if big % small or ratio & (ratio - 1):
        raise ValueError(f"pyramid strides must differ by powers of two, got {from_stride} -> {to_stride}")
    n = ratio.bit_length() - 1
    return n if to_stride >= from_stride else -n


class SimpleFeaturePyramid(nn.Module):
    """One ``(B, dim, H/s, W/s)`` token map (stride ``s = in_stride``) -> one map per requested stride.

    Finer stride (ratio 2**n): a chain of n stride-2 transposed convs, each halving the channels, with
    LayerNorm2d + GELU between them (ViTDet's x2 and x4 branches are n = 1 and 2). Same stride: identity.
    Coarser stride: max pooling (ViTDet's x1/2 branch). ``out_channels[i]`` is output i's channel count.
    """

    def __init__(self, dim: int, in_stride: int, strides: Sequence[int]) -> None:
        super().__init__()
        branches: list[nn.Module] = []
        self.out_channels: list[int] = []
        for stride in strides:
            n = octaves(in_stride, stride)
            c = dim
            if n < 0:
                layers: list[nn.Module] = []
                for i in range(-n):
                    if i:
                        layers += [LayerNorm2d(c), nn.GELU()]
                    layers.append(nn.ConvTranspose2d(c, max(1, c // 2), 2, stride=2))
                    c = max(1, c // 2)
                branches.append(nn.Sequential(*layers))
            else:
                branches.append(nn.Identity() if n == 0 else nn.MaxPool2d(2**n, 2**n))
            self.out_channels.append(c)
        self.branches = nn.ModuleList(branches)

    def forward(self, x: Tensor) -> list[Tensor]:
        return [branch(x) for branch in self.branches]
