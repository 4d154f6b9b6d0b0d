"""The released SparseSSP network (Zheng et al., ECCV 2024): RepMode task embedding, 3-to-2D, prefix nearest.

Rebuilt from the published architecture, module paths kept so released weights load by renaming only the
MoDE layers' own keys (:func:`~sparsessp.models.compat.blocks.rename_mode_keys`):

- prefix interpolation: the sparse TL ``(B, 1, D/r, H, W)`` is resized (nearest) to ``(D, H, W)``, D being
  the head's channel count (the released code resizes to its fixed patch; equal on its windows);
- ``encoder_layers.blocks[k]``: two 3D MoDE layers (the skip), then Conv3d(k=2, s=2) + BN + ReLU;
- ``bottle``: two 3D MoDE layers (``bottle_neck`` in the published weights, accepted as an alias);
- ``dec_before_hook.out_gates``: depth-to-channel "projection in 2D": each 3D feature ``(B, C, D_k, H, W)``
  viewed as ``(B, C * D_k, H, W)`` and passed through a 2D MoDE layer; gate 0 takes the bottleneck
  (``C*D -> C*D``), gates 1.. the skips shallow to deep;
- ``decoder_layers.blocks[k]``: ConvTranspose2d(k=2, s=2) + BN + ReLU, concat(skip, up), two 2D MoDE layers;
- ``out_head``: a 'final' 2D MoDE layer (no BN/ReLU) to D channels, reshaped to ``(B, 1, D, H, W)``.

Kept quirk: the 2D average kernels are ``ones(k, k) / k**3`` (the published buffers hold exactly that).
Not kept: in eval mode the released layer convolves the whole batch with the FIRST sample's kernel (it
assumes one task per batch); here every sample always gets its own task's kernel, which is the same on
single-task batches and correct on mixed ones.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch.nn.functional as F
from torch import Tensor, nn

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
"""Encoder levels of the released network (``architecture_options`` build this many)."""


class _Blocks(nn.Module):
    """Holds ``blocks`` (the released ``MoDEEncoderLayers`` / ``MoDEDecoderLayers`` path)."""

    def __init__(self, blocks: list[nn.Module]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)


class _Gates(nn.Module):
    """Holds ``out_gates`` (the released ``DepthChannelSwitcher`` path)."""

    def __init__(self, gates: list[nn.Module]) -> None:
        super().__init__()
        self.out_gates = nn.ModuleList(gates)


def _alias(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Published weights name the bottleneck ``bottle_neck``; the module calls it ``bottle``."""
    return {("bottle." + k[len("bottle_neck.") :] if k.startswith("bottle_neck.") else k): v for k, v in state.items()}


class ReleasedSparseSSP(CompatModel):
    """The released RepMode 3-to-2D network; widths in ``spec`` (see :meth:`spec_from_state_dict`)."""

    architecture = "sparsessp-released"
    default_sparse_ratio = 8

    def __init__(self, spec: dict[str, Any], *, route: str = DEFAULT_ROUTE, sparse_ratio: int = 8) -> None:
        super().__init__(spec, route=route, sparse_ratio=sparse_ratio)
        t, k = spec["num_tasks"], spec["kernel_size"]
        enc, dec = list(spec["encoder_channels"]), list(spec["decoder_channels"])
        gate_in, gate_out = spec["gate_in_channels"], list(spec["gate_out_channels"])
        self.num_tasks = t
        self.depth = spec["out_channels"]
        three = {"released_2d_avg": False, "route": route}
        two = {"released_2d_avg": True, "route": route}
        ins = [spec["in_channels"], *enc[:-1]]
        self.encoder_layers = _Blocks([MoDEEncoderBlock(3, a, b, t, k, **three) for a, b in zip(ins, enc)])
        self.bottle = MoDEPair(3, enc[-1], spec["bottleneck_channels"], t, k, **three)
        gates = [MoDEUnit(2, gate_in, c, t, k, **two) for c in (gate_in, *gate_out)]
        self.dec_before_hook = _Gates(gates)
        dec_ins = [gate_in, *dec[:-1]]
        self.decoder_layers = _Blocks([MoDEDecoderBlock(2, a, b, t, k, **two) for a, b in zip(dec_ins, dec)])
        self.out_head = MoDEUnit(2, dec[-1], self.depth, t, k, final=True, **two)

    def forward(self, x: Tensor, task_ids: Tensor) -> Tensor:
        ctx = TaskContext(task_ids, self.num_tasks)
        b, _, _, h, w = x.shape
        x = F.interpolate(x, size=(self.depth, h, w), mode="nearest")
        skips = []
        for block in self.encoder_layers.blocks:
            x, skip = block(x, ctx)
            skips.append(skip)
        x = self.bottle(x, ctx)
        gates = self.dec_before_hook.out_gates
        x = gates[0](x.flatten(1, 2), ctx)
        skips = [gate(s.flatten(1, 2), ctx) for gate, s in zip(gates[1:], skips)]
        for block in self.decoder_layers.blocks:
            x = block(x, skips.pop(), ctx)
        return self.out_head(x, ctx).reshape(b, 1, self.depth, h, w)

    @classmethod
    def convert_state_dict(cls, state: dict[str, Tensor]) -> dict[str, Tensor]:
        check_average_kernels(state, released_2d_avg=True)
        return rename_mode_keys(_alias(state))

    @classmethod
    def spec_from_state_dict(cls, state: dict[str, Tensor]) -> dict[str, Any]:
        state = _alias(state)
        enc: list[int] = []
        in_channels = num_tasks = kernel_size = 0
        while f"encoder_layers.blocks.{len(enc)}.conv_more.conv1.expert_conv5x5_conv" in state:
            cout, cin, kernel_size, num_tasks = mode_shape(state, f"encoder_layers.blocks.{len(enc)}.conv_more.conv1")
            in_channels = in_channels or cin
            enc.append(cout)
        if not enc:
            raise CheckpointError("the weights have no 'encoder_layers.blocks.0' MoDE layers: not a released SparseSSP")
        bottleneck = mode_shape(state, "bottle.conv2")[0]
        gate_in = mode_shape(state, "dec_before_hook.out_gates.0")[1]
        gate_out = [mode_shape(state, f"dec_before_hook.out_gates.{j + 1}")[0] for j in range(len(enc))]
        dec = [mode_shape(state, f"decoder_layers.blocks.{j}.conv_less.conv1")[0] for j in range(len(enc))]
        depth = mode_shape(state, "out_head")[0]
        levels = len(enc)
        if depth % 2**levels or gate_out[::-1] != dec:
            raise CheckpointError(
                f"inconsistent released SparseSSP widths: depth {depth} over {levels} levels, "
                f"gates {gate_out}, decoder {dec}"
            )
        folded = [c * depth // 2**i for i, c in enumerate([*enc, bottleneck])]
        if any(f != gate_in for f in folded):
            raise CheckpointError(
                f"released SparseSSP gates take {gate_in} channels, but channels x depth per level are {folded}"
            )
        return {
            "in_channels": in_channels,
            "encoder_channels": enc,
            "bottleneck_channels": bottleneck,
            "gate_in_channels": gate_in,
            "gate_out_channels": gate_out,
            "decoder_channels": dec,
            "out_channels": depth,
            "num_tasks": num_tasks,
            "kernel_size": kernel_size,
        }

    @classmethod
    def patch_depth(cls, spec: dict[str, Any]) -> int | None:
        return int(spec["out_channels"])

    @classmethod
    def config_tree(cls, spec: dict[str, Any]) -> dict[str, Any]:
        return {
            "topology": "3to2d",
            "interpolation": "prefix",
            "prefix_mode": "nearest",
            "projection": "2d",
            "projection_kernel": spec["kernel_size"],
            "conditioning": "repmode",
            "channels": [*spec["encoder_channels"], spec["bottleneck_channels"]],
            "embed_dim": spec["gate_in_channels"],
            "norm": "batch",
            "conditioning_options": {"kernel_size": spec["kernel_size"]},
        }

    @classmethod
    def spec_from_config(cls, cfg: Config) -> dict[str, Any]:
        """Encoder ``m * [1, 2, 4, 8]``, bottleneck ``16 m``, gates ``m * D -> d * [1, 2, 4, 8]`` and
        ``m * D -> m * D``, decoder ``d * [8, 4, 2, 1]``, head to D (``m`` = mult_chan, ``d`` = decoder_mult_chan)."""
        opts = cfg.model.architecture_spec()
        m, d, depth = opts["mult_chan"], opts["decoder_mult_chan"], cfg.data.patch[0]
        return {
            "in_channels": 1,
            "encoder_channels": [m * 2**i for i in range(LEVELS)],
            "bottleneck_channels": m * 2**LEVELS,
            "gate_in_channels": m * depth,
            "gate_out_channels": [d * 2**i for i in range(LEVELS)],
            "decoder_channels": [d * 2**i for i in reversed(range(LEVELS))],
            "out_channels": depth,
            "num_tasks": cfg.num_tasks,
            "kernel_size": opts["kernel_size"],
        }

    @classmethod
    def options_from_spec(cls, spec: dict[str, Any]) -> dict[str, int]:
        return {"mult_chan": int(spec["encoder_channels"][0]), "decoder_mult_chan": int(spec["decoder_channels"][-1]),
                "kernel_size": int(spec["kernel_size"])}
