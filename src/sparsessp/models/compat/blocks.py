"""Building blocks the released RepMode-family networks share, and what the importers share.

The released MoDE layer bundles the routed convolution with BatchNorm + ReLU (kind 'normal') or nothing
(kind 'final'). :class:`MoDEUnit` is that bundle around our :class:`MoDEConv`; module paths mirror the
released ones so that :func:`rename_mode_keys` maps a released state dict onto ours by key suffix only.
"""

from __future__ import annotations

import re

import torch
from torch import Tensor, nn

from sparsessp.errors import CheckpointError
from sparsessp.models.conditioning.base import CondModule, TaskContext, conv_nd, conv_transpose_nd, norm_nd
from sparsessp.models.conditioning.mode import DEFAULT_ROUTE, NUM_EXPERTS, MoDEConv, average_kernel

_MODE_SUFFIXES: dict[str, str] = {
    "expert_conv5x5_conv": "conv.weight_k",
    "expert_conv3x3_conv": "conv.weight_3",
    "expert_conv1x1_conv": "conv.weight_1",
    "expert_avg3x3_conv": "conv.weight_avg3",
    "expert_avg5x5_conv": "conv.weight_avg5",
    "expert_avg3x3_pool": "conv.pool3",
    "expert_avg5x5_pool": "conv.pool5",
    "gate.weight": "conv.gate.weight",
    "gate.bias": "conv.gate.bias",
}
_MODE_KEY = re.compile(r"^(?P<prefix>.*\.)?(?P<suffix>" + "|".join(map(re.escape, _MODE_SUFFIXES)) + r")$")
_NORM_KEY = re.compile(r"^(?P<prefix>.*\.)?subsequent_layer\.0\.(?P<rest>.+)$")


class MoDEUnit(CondModule):
    """A released MoDE layer: routed convolution, then BatchNorm + ReLU unless ``final``."""

    def __init__(
        self,
        dims: int,
        cin: int,
        cout: int,
        num_tasks: int,
        kernel_size: int = 5,
        *,
        final: bool = False,
        released_2d_avg: bool = False,
        route: str = DEFAULT_ROUTE,
    ) -> None:
        super().__init__()
        self.conv = MoDEConv(dims, cin, cout, num_tasks, kernel_size, route=route, released_2d_avg=released_2d_avg)
        self.norm = None if final else norm_nd("batch", dims, cout)
        self.act = None if final else nn.ReLU(inplace=True)

    def forward(self, x: Tensor, ctx: TaskContext) -> Tensor:
        y = self.conv(x, ctx)
        if self.norm is None or self.act is None:
            return y
        return self.act(self.norm(y))


class MoDEPair(CondModule):
    """Two MoDE layers in a row (the released ``MoDESubNet2Conv``)."""

    def __init__(
        self, dims: int, cin: int, cout: int, num_tasks: int, kernel_size: int, *, released_2d_avg: bool, route: str
    ) -> None:
        super().__init__()
        opts = {"released_2d_avg": released_2d_avg, "route": route}
        self.conv1 = MoDEUnit(dims, cin, cout, num_tasks, kernel_size, **opts)
        self.conv2 = MoDEUnit(dims, cout, cout, num_tasks, kernel_size, **opts)

    def forward(self, x: Tensor, ctx: TaskContext) -> Tensor:
        return self.conv2(self.conv1(x, ctx), ctx)


class MoDEEncoderBlock(nn.Module):
    """Two MoDE layers (the skip), then a stride-2 convolution + BN + ReLU: returns (down, skip)."""

    def __init__(
        self, dims: int, cin: int, cout: int, num_tasks: int, kernel_size: int, *, released_2d_avg: bool, route: str
    ) -> None:
        super().__init__()
        self.conv_more = MoDEPair(
            dims, cin, cout, num_tasks, kernel_size, released_2d_avg=released_2d_avg, route=route
        )
        self.conv_down = nn.Sequential(
            conv_nd(dims)(cout, cout, kernel_size=2, stride=2, bias=False),
            norm_nd("batch", dims, cout),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: Tensor, ctx: TaskContext) -> tuple[Tensor, Tensor]:
        skip = self.conv_more(x, ctx)
        return self.conv_down(skip), skip


class MoDEDecoderBlock(nn.Module):
    """Stride-2 transposed convolution + BN + ReLU, concat(skip, up), two MoDE layers."""

    def __init__(
        self, dims: int, cin: int, cout: int, num_tasks: int, kernel_size: int, *, released_2d_avg: bool, route: str
    ) -> None:
        super().__init__()
        self.convt = nn.Sequential(
            conv_transpose_nd(dims)(cin, cout, kernel_size=2, stride=2, bias=False),
            norm_nd("batch", dims, cout),
            nn.ReLU(inplace=True),
        )
        self.conv_less = MoDEPair(
            dims, cin, cout, num_tasks, kernel_size, released_2d_avg=released_2d_avg, route=route
        )

    def forward(self, x: Tensor, skip: Tensor, ctx: TaskContext) -> Tensor:
        return self.conv_less(torch.cat((skip, self.convt(x)), 1), ctx)


def rename_mode_keys(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Released MoDE layer keys (``expert_*``, ``gate.*``, ``subsequent_layer.0.*``) -> :class:`MoDEUnit` keys."""
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        if m := _MODE_KEY.match(key):
            key = f"{m['prefix'] or ''}{_MODE_SUFFIXES[m['suffix']]}"
        elif m := _NORM_KEY.match(key):
            key = f"{m['prefix'] or ''}norm.{m['rest']}"
        out[key] = value
    return out


def mode_shape(state: dict[str, Tensor], prefix: str) -> tuple[int, int, int, int]:
    """(C_out, C_in, kernel size, num tasks) of the released MoDE layer at ``prefix``."""
    weight = require(state, f"{prefix}.expert_conv5x5_conv")
    gate = require(state, f"{prefix}.gate.weight")
    cout, cin, k = weight.shape[0], weight.shape[1], weight.shape[-1]
    if gate.shape[0] != NUM_EXPERTS * cout:
        raise CheckpointError(
            f"{prefix}.gate.weight has {gate.shape[0]} rows; a {NUM_EXPERTS}-expert MoDE layer of {cout} channels "
            f"needs {NUM_EXPERTS * cout}"
        )
    return cout, cin, k, gate.shape[1]


def require(state: dict[str, Tensor], key: str) -> Tensor:
    """``state[key]``, or a one-line CheckpointError naming the missing key."""
    if key not in state:
        raise CheckpointError(f"the weights have no {key!r}: they are not this architecture")
    return state[key]


def check_average_kernels(state: dict[str, Tensor], released_2d_avg: bool) -> None:
    """The routes rely on uniform average kernels: refuse buffers that are not the expected ones."""
    for key, value in state.items():
        m = re.search(r"expert_avg(\d)x\d_pool$", key)
        if m is None:
            continue
        expected = average_kernel(int(m.group(1)), value.ndim, released_2d_avg)
        if value.shape != expected.shape or not torch.allclose(value.float(), expected, rtol=1e-5, atol=0):
            raise CheckpointError(f"{key} is not the expected uniform average kernel of the released MoDE layer")
