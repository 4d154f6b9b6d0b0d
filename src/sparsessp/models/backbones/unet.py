"""Our own 2D U-Net encoder (``model.backbone: unet``), the default encoder of the ``2d`` / ``2to3d`` topologies."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sparsessp.models.conditioning.base import Conditioning
from sparsessp.models.unet import Encoder

if TYPE_CHECKING:
    from sparsessp.config import Config


class UNetEncoder2d(Encoder):
    """Residual 2D encoder with the backbone interface of CONTRACTS.md.

    ``forward(x (B, in_chans, H, W), ctx)`` returns one map per level, level k with ``channels[k]``
    channels at stride ``2**k``. The blocks are the skeleton's (conditioned like the 3D encoder; the
    last level's block has role ``"bottleneck"``). ``cfg`` is part of the interface; this encoder needs
    nothing from it beyond what the factory carries.
    """

    def __init__(self, cond: Conditioning, in_chans: int, channels: list[int], cfg: Config) -> None:
        super().__init__(cond, 2, in_chans, channels, [2] * (len(channels) - 1))
