"""Depth-to-channel / channel-to-depth: layout, exact round trips and both projection routes by hand."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sparsessp.models.conditioning.base import Conditioning, Plain, TaskContext
from sparsessp.models.transforms import ChannelToDepth, DepthToChannel, channel_to_depth, depth_to_channel

pytestmark = pytest.mark.usefixtures("one_thread")


CTX = TaskContext(torch.zeros(2, dtype=torch.long), 1)


def conv_only(module: DepthToChannel | ChannelToDepth) -> DepthToChannel | ChannelToDepth:
    """Drop the norm and the ReLU after the projection conv, leaving the conv alone (float64)."""
    module.proj[1] = Plain(nn.Identity())
    module.proj[2] = Plain(nn.Identity())
    return module.double()


def identity_projection(module: DepthToChannel | ChannelToDepth) -> DepthToChannel | ChannelToDepth:
    module.proj = Plain(nn.Identity())
    return module


def test_fold_layout_is_channel_major() -> None:
    x = torch.randn(2, 3, 4, 5, 6)
    y = depth_to_channel(x)
    assert y.shape == (2, 12, 5, 6)
    for c in range(3):
        for d in range(4):
            assert torch.equal(y[:, c * 4 + d], x[:, c, d])
    assert torch.equal(channel_to_depth(y, 4), x)


def test_unfold_refuses_indivisible_channels() -> None:
    with pytest.raises(ValueError, match="depth 4"):
        channel_to_depth(torch.randn(1, 6, 2, 2), 4)


@pytest.mark.parametrize("projection", ["3d", "2d"])
def test_round_trip_with_identity_projections_returns_input(projection: str) -> None:
    cond = Conditioning(1)
    c, d = 4, 8
    to_2d = identity_projection(DepthToChannel(cond, c, d, c * d, projection))
    to_3d = identity_projection(ChannelToDepth(cond, c * d, d, c, projection))
    x = torch.randn(2, c, d, 6, 5)
    folded = to_2d(x, CTX)
    assert folded.shape == (2, c * d, 6, 5)
    assert torch.equal(to_3d(folded, CTX), x)


def test_depth_to_channel_3d_projection_is_slice_conv_then_fold() -> None:
    cond = Conditioning(1)
    c, d, u = 3, 4, 8
    module = conv_only(DepthToChannel(cond, c, d, u, "3d"))
    weight = module.proj[0].module.weight  # (U / D, C, 1, 1, 1)
    assert weight.shape == (u // d, c, 1, 1, 1)
    x = torch.randn(2, c, d, 5, 4, dtype=torch.float64)
    projected = torch.einsum("oc,bcdhw->bodhw", weight[:, :, 0, 0, 0], x)
    expected = projected.reshape(2, u, 5, 4)
    torch.testing.assert_close(module(x, CTX), expected, rtol=0, atol=1e-12)


def test_channel_to_depth_3d_projection_is_unfold_then_1x1_conv() -> None:
    cond = Conditioning(1)
    c, d, cout = 8, 4, 5
    module = conv_only(ChannelToDepth(cond, c, d, cout, "3d"))
    weight = module.proj[0].module.weight
    x = torch.randn(2, c, 3, 4, dtype=torch.float64)
    expected = F.conv3d(x.reshape(2, c // d, d, 3, 4), weight)
    torch.testing.assert_close(module(x, CTX), expected, rtol=0, atol=1e-12)
    assert expected.shape == (2, cout, d, 3, 4)


@pytest.mark.parametrize("kernel", [1, 3])
def test_2d_projection_routes_by_hand(kernel: int) -> None:
    cond = Conditioning(1)
    c, d, u = 3, 4, 6
    to_2d = conv_only(DepthToChannel(cond, c, d, u, "2d", kernel))
    x = torch.randn(2, c, d, 5, 5, dtype=torch.float64)
    expected = F.conv2d(x.reshape(2, c * d, 5, 5), to_2d.proj[0].module.weight, padding=kernel // 2)
    torch.testing.assert_close(to_2d(x, CTX), expected, rtol=0, atol=1e-12)

    to_3d = conv_only(ChannelToDepth(cond, u, d, c, "2d", kernel))
    y = torch.randn(2, u, 5, 5, dtype=torch.float64)
    conv = F.conv2d(y, to_3d.proj[0].module.weight, padding=kernel // 2)
    torch.testing.assert_close(to_3d(y, CTX), conv.reshape(2, c, d, 5, 5), rtol=0, atol=1e-12)


def test_projection_is_followed_by_norm_and_relu() -> None:
    cond = Conditioning(1)
    module = DepthToChannel(cond, 3, 2, 8, "3d")
    out = module(torch.randn(2, 3, 2, 4, 4), CTX)
    assert out.shape == (2, 8, 4, 4)
    assert out.min() >= 0
    assert isinstance(module.proj[1].module, nn.BatchNorm3d)


def test_indivisible_3d_projections_are_refused() -> None:
    cond = Conditioning(1)
    with pytest.raises(ValueError, match="embed_dim 12 is not divisible by depth 8"):
        DepthToChannel(cond, 4, 8, 12, "3d")
    with pytest.raises(ValueError, match="do not unfold into depth 8"):
        ChannelToDepth(cond, 12, 8, 4, "3d")
    DepthToChannel(cond, 4, 8, 12, "2d")
    ChannelToDepth(cond, 12, 8, 4, "2d")


def test_depth_to_channel_checks_the_depth_it_was_built_for() -> None:
    module = DepthToChannel(Conditioning(1), 2, 4, 8, "3d")
    with pytest.raises(ValueError, match="depth 4"):
        module(torch.randn(2, 2, 2, 4, 4), CTX)
