"""Z-axis one-to-many mapping (architecture.md sec. 1): ``prefix`` before the network, ``postfix`` after it.

``none`` has no module: a 2D decoder's head emits the D target slices directly from the D/r-deep input.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sparsessp.models.blocks import Up
from sparsessp.models.conditioning.base import Conditioning

PREFIX_MODES = ("nearest", "trilinear", "aligned")


def prefix_interpolate(x: Tensor, ratio: int, mode: str, depth: int | None = None) -> Tensor:
    """Resample ``x`` (B, C, d, H, W) along depth to (B, C, d * ratio, H, W), then keep the first ``depth``
    planes when given (d = ceil(D / r) sparse planes cover a target window of D planes for any r).

    - ``nearest``: ``F.interpolate(mode='nearest')`` to depth d*r, i.e. every slice repeated r times
      (the paper's default and the released code's);
    - ``trilinear``: ``F.interpolate(mode='trilinear', align_corners=False)`` (cell-centre aligned);
    - ``aligned``: physically aligned linear: sparse slice k lands on target index k*r (where it was
      acquired), targets in between are linear between the two neighbours, and the targets after the
      last acquired slice hold its value (no data beyond it).
    """
    if x.ndim != 5:
        raise ValueError(f"prefix interpolation expects (B, C, D, H, W), got shape {tuple(x.shape)}")
    if mode not in PREFIX_MODES:
        raise ValueError(f"unknown prefix mode {mode!r}; choose one of {', '.join(PREFIX_MODES)}")
    if ratio == 1:
        return x[:, :, :depth]
    d, h, w = x.shape[2:]
    if mode == "nearest":
        return F.interpolate(x, size=(d * ratio, h, w), mode="nearest")[:, :, :depth]
    if mode == "trilinear":
        return F.interpolate(x, size=(d * ratio, h, w), mode="trilinear", align_corners=False)[:, :, :depth]
    target = torch.arange(d * ratio if depth is None else min(depth, d * ratio), device=x.device)
    lo = target // ratio
    hi = (lo + 1).clamp(max=d - 1)
    frac = torch.where(lo < d - 1, (target % ratio).to(x.dtype) / ratio, 0.0).view(1, 1, -1, 1, 1)
    return x.index_select(2, lo) * (1 - frac) + x.index_select(2, hi) * frac


class PrefixInterpolation(nn.Module):
    """Fixed (parameter-free) depth up-sampling of the sparse TL before the network, cropped to ``depth``."""

    def __init__(self, ratio: int, mode: str, depth: int | None = None) -> None:
        super().__init__()
        if mode not in PREFIX_MODES:
            raise ValueError(f"unknown prefix mode {mode!r}; choose one of {', '.join(PREFIX_MODES)}")
        self.ratio = ratio
        self.mode = mode
        self.depth = depth

    def forward(self, x: Tensor) -> Tensor:
        return prefix_interpolate(x, self.ratio, self.mode, self.depth)

    def extra_repr(self) -> str:
        return f"ratio={self.ratio}, mode={self.mode!r}, depth={self.depth}"


class PostfixDeconv(nn.Module):
    """The paper's postfix: a learnable deconvolution of the network's OUTPUT (I' -> S).

    ``ConvTranspose3d(1, 1, kernel = stride = (r, 1, 1))`` (with bias, PyTorch's default init) on the
    (B, 1, d, H, W) output on the sparse grid gives (B, 1, d * r, H, W); ``forward`` crops it to the
    target depth ``depth`` (d = ceil(D / r), so at most r - 1 planes past the target window are dropped).
    """

    def __init__(self, ratio: int, depth: int) -> None:
        super().__init__()
        self.depth = depth
        self.deconv = nn.ConvTranspose3d(1, 1, (ratio, 1, 1), stride=(ratio, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.deconv(x)[:, :, : self.depth]


class PostfixUpsample3d(nn.Module):
    """``model.postfix_placement: features`` after a 3D decoder: ConvTranspose3d with kernel = stride = (r, 1, 1)
    on the last decoder FEATURE (channels -> channels, + norm + ReLU, i.e. :class:`blocks.Up`), cropped to
    ``depth``, so the head (possibly task-conditioned) makes the final 1-channel prediction on the dense grid.
    """

    def __init__(self, cond: Conditioning, channels: int, ratio: int, depth: int) -> None:
        super().__init__()
        self.depth = depth
        self.up = Up(3, channels, channels, (ratio, 1, 1), cond.norm_kind)

    def forward(self, x: Tensor) -> Tensor:
        return self.up(x)[:, :, : self.depth]


class PostfixUpsample2d(nn.Module):
    """``model.postfix_placement: features`` after a 2D decoder: a 1x1 Conv2d (with bias) from D/r to D channels.

    The 2D head emits one channel per sparse slice (the network is one-to-one on the D/r grid); this
    conv maps them to the D target slices, so every target slice may draw on every sparse slice (the
    paper's deconvolution lets each draw only on its own sparse slice).
    """

    def __init__(self, sparse_depth: int, depth: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(sparse_depth, depth, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)
