"""The released RepMode 3D network (Zhou et al., CVPR 2023), dense view, rebuilt with its module paths.

``encoder_block1..4``: two 3D MoDE layers (the skip) then Conv3d(k=2, s=2) + BN + ReLU, channels
``m * [1, 2, 4, 8]`` (``mult_chan`` m = 32 released); ``bottle_block``: two MoDE layers to ``16 m``;
``decoder_block4..1``: ConvTranspose3d(k=2, s=2) + BN + ReLU, concat(skip, up), two MoDE layers;
``conv_out``: a 'final' MoDE layer to one channel (no BN/ReLU).

For a sparse input (``sparse_ratio`` r > 1) the depth is first resized by r with nearest interpolation
(prefix), so the network fits the model contract; the released model is dense (r = 1, no resize).

Not kept: in eval mode the released MoDE layer convolves the whole batch with the FIRST sample's kernel
(it assumes one task per batch); here every sample always gets its own task's kernel.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch.nn.functional as F
from torch import Tensor

from sparsessp.errors import CheckpointError
from sparsessp.models.compat.base import CompatModel
from sparsessp.models.compat.blocks import (
    MoDEDecoderBlock,
    MoDEEncoderBlock,
    MoDEPair,
    MoDEUnit,
    check_average_kernels,
    mode_shape,
    rename_mode_keys,
)
from sparsessp.models.conditioning.base import TaskContext
from sparsessp.models.conditioning.mode import DEFAULT_ROUTE

if TYPE_CHECKING:
    from sparsessp.config import Config

LEVELS = 4


class RepMode3D(CompatModel):
    """RepMode's 3D MoDE U-Net; ``spec``: in/out channels, ``mult_chan``, ``num_tasks``, ``kernel_size``."""

    architecture = "repmode"

    def __init__(self, spec: dict[str, Any], *, route: str = DEFAULT_ROUTE, sparse_ratio: int = 1) -> None:
        super().__init__(spec, route=route, sparse_ratio=sparse_ratio)
        t, k, m = spec["num_tasks"], spec["kernel_size"], spec["mult_chan"]
        self.num_tasks = t
        opts = {"released_2d_avg": False, "route": route}
        chans = [spec["in_channels"], *(m * 2**i for i in range(LEVELS))]
        for i in range(LEVELS):
            self.add_module(f"encoder_block{i + 1}", MoDEEncoderBlock(3, chans[i], chans[i + 1], t, k, **opts))
        self.bottle_block = MoDEPair(3, chans[-1], 2 * chans[-1], t, k, **opts)
        for i in reversed(range(LEVELS)):
            self.add_module(f"decoder_block{i + 1}", MoDEDecoderBlock(3, 2 * chans[i + 1], chans[i + 1], t, k, **opts))
        self.conv_out = MoDEUnit(3, m, spec["out_channels"], t, k, final=True, **opts)

    def forward(self, x: Tensor, task_ids: Tensor) -> Tensor:
        ctx = TaskContext(task_ids, self.num_tasks)
        if self.sparse_ratio > 1:
            _, _, d, h, w = x.shape
            x = F.interpolate(x, size=(d * self.sparse_ratio, h, w), mode="nearest")
        skips = []
        for i in range(LEVELS):
            x, skip = getattr(self, f"encoder_block{i + 1}")(x, ctx)
            skips.append(skip)
        x = self.bottle_block(x, ctx)
        for i in reversed(range(LEVELS)):
            x = getattr(self, f"decoder_block{i + 1}")(x, skips[i], ctx)
        return self.conv_out(x, ctx)

    @classmethod
    def convert_state_dict(cls, state: dict[str, Tensor]) -> dict[str, Tensor]:
        check_average_kernels(state, released_2d_avg=False)
        return rename_mode_keys(state)

    @classmethod
    def spec_from_state_dict(cls, state: dict[str, Tensor]) -> dict[str, Any]:
        mult_chan, in_channels, kernel_size, num_tasks = mode_shape(state, "encoder_block1.conv_more.conv1")
        out_channels = mode_shape(state, "conv_out")[0]
        bottleneck = mode_shape(state, "bottle_block.conv2")[0]
        if bottleneck != mult_chan * 2**LEVELS:
            raise CheckpointError(
                f"RepMode 3D bottleneck has {bottleneck} channels; mult_chan {mult_chan} needs {mult_chan * 2**LEVELS}"
            )
        return {
            "in_channels": in_channels,
            "out_channels": out_channels,
            "mult_chan": mult_chan,
            "num_tasks": num_tasks,
            "kernel_size": kernel_size,
        }

    @classmethod
    def config_tree(cls, spec: dict[str, Any]) -> dict[str, Any]:
        tree = cls.unet3d_tree("repmode", spec["mult_chan"], LEVELS)
        tree["conditioning_options"] = {"kernel_size": spec["kernel_size"]}
        return tree

    @classmethod
    def spec_from_config(cls, cfg: Config) -> dict[str, Any]:
        opts = cfg.model.architecture_spec()
        return {"in_channels": 1, "out_channels": 1, "mult_chan": opts["mult_chan"], "num_tasks": cfg.num_tasks,
                "kernel_size": opts["kernel_size"]}

    @classmethod
    def options_from_spec(cls, spec: dict[str, Any]) -> dict[str, int]:
        return {"mult_chan": int(spec["mult_chan"]), "kernel_size": int(spec["kernel_size"])}
