"""pytorch_fnet's 3D U-Net (Ounkomol et al., Nature Methods 2018), one member of a Multi-Net, rebuilt exactly.

Recursive, module paths as released: ``net_recurse`` holds ``sub_2conv_more`` (two Conv3d k3 p1 with
bias + BN + ReLU); above the deepest level also ``conv_down`` (Conv3d k2 s2, bias) + ``bn0`` + ReLU, the
nested ``sub_u``, ``convt`` (ConvTranspose3d k2 s2, bias) + ``bn1`` + ReLU, concat(skip, up) and
``sub_2conv_less``; ``conv_out`` is a Conv3d k3 p1 to the output channels. Channels double per level
from ``mult_chan`` (32 released; depth 4 -> 32 ... 512).

The network ignores the task (it is one structure's network); for a sparse input (``sparse_ratio``
r > 1) the depth is first resized by r with nearest interpolation (prefix).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sparsessp.errors import CheckpointError
from sparsessp.models.compat.base import CompatModel
from sparsessp.models.compat.blocks import require
from sparsessp.models.conditioning.mode import DEFAULT_ROUTE

if TYPE_CHECKING:
    from sparsessp.config import Config


class SubNet2Conv(nn.Module):
    """(Conv3d k3 p1 + BN + ReLU) x 2."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(cin, cout, kernel_size=3, padding=1)
        self.bn1 = nn.BatchNorm3d(cout)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv3d(cout, cout, kernel_size=3, padding=1)
        self.bn2 = nn.BatchNorm3d(cout)
        self.relu2 = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.relu2(self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x))))))


class NetRecurse(nn.Module):
    """One U-Net level; ``depth`` more levels nest below it in ``sub_u``."""

    def __init__(self, cin: int, cout: int, depth: int) -> None:
        super().__init__()
        self.depth = depth
        self.sub_2conv_more = SubNet2Conv(cin, cout)
        if depth > 0:
            self.sub_2conv_less = SubNet2Conv(2 * cout, cout)
            self.conv_down = nn.Conv3d(cout, cout, 2, stride=2)
            self.bn0 = nn.BatchNorm3d(cout)
            self.relu0 = nn.ReLU()
            self.convt = nn.ConvTranspose3d(2 * cout, cout, kernel_size=2, stride=2)
            self.bn1 = nn.BatchNorm3d(cout)
            self.relu1 = nn.ReLU()
            self.sub_u = NetRecurse(cout, 2 * cout, depth - 1)

    def forward(self, x: Tensor) -> Tensor:
        skip = self.sub_2conv_more(x)
        if self.depth == 0:
            return skip
        down = self.sub_u(self.relu0(self.bn0(self.conv_down(skip))))
        up = self.relu1(self.bn1(self.convt(down)))
        return self.sub_2conv_less(torch.cat((skip, up), 1))


class FNet3D(CompatModel):
    """pytorch_fnet's 3D U-Net; ``spec``: ``in_channels``, ``out_channels``, ``mult_chan``, ``depth``."""

    architecture = "fnet"

    def __init__(self, spec: dict[str, Any], *, route: str = DEFAULT_ROUTE, sparse_ratio: int = 1) -> None:
        """``route`` is accepted for a uniform constructor and unused (no MoDE layers)."""
        super().__init__(spec, route=route, sparse_ratio=sparse_ratio)
        self.net_recurse = NetRecurse(spec["in_channels"], spec["mult_chan"], spec["depth"])
        self.conv_out = nn.Conv3d(spec["mult_chan"], spec["out_channels"], kernel_size=3, padding=1)

    def forward(self, x: Tensor, task_ids: Tensor) -> Tensor:
        if self.sparse_ratio > 1:
            _, _, d, h, w = x.shape
            x = F.interpolate(x, size=(d * self.sparse_ratio, h, w), mode="nearest")
        return self.conv_out(self.net_recurse(x))

    @classmethod
    def spec_from_state_dict(cls, state: dict[str, Tensor]) -> dict[str, Any]:
        first = require(state, "net_recurse.sub_2conv_more.conv1.weight")
        out = require(state, "conv_out.weight")
        depth = 0
        while f"net_recurse{'.sub_u' * (depth + 1)}.sub_2conv_more.conv1.weight" in state:
            depth += 1
        if out.shape[1] != first.shape[0]:
            raise CheckpointError(f"fnet conv_out takes {out.shape[1]} channels but the top level has {first.shape[0]}")
        return {
            "in_channels": int(first.shape[1]),
            "out_channels": int(out.shape[0]),
            "mult_chan": int(first.shape[0]),
            "depth": depth,
        }

    @classmethod
    def config_tree(cls, spec: dict[str, Any]) -> dict[str, Any]:
        return cls.unet3d_tree("none", spec["mult_chan"], spec["depth"])

    @classmethod
    def spec_from_config(cls, cfg: Config) -> dict[str, Any]:
        opts = cfg.model.architecture_spec()
        return {"in_channels": 1, "out_channels": 1, "mult_chan": opts["mult_chan"], "depth": opts["depth"]}

    @classmethod
    def options_from_spec(cls, spec: dict[str, Any]) -> dict[str, int]:
        return {"mult_chan": int(spec["mult_chan"]), "depth": int(spec["depth"])}
