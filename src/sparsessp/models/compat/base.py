"""What every released architecture of :mod:`sparsessp.models.compat` provides to the importer and loader."""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any, ClassVar

from torch import Tensor, nn

from sparsessp.models.conditioning.mode import DEFAULT_ROUTE

if TYPE_CHECKING:
    from sparsessp.config import Config


class CompatModel(nn.Module, abc.ABC):
    """A released network rebuilt exactly; ``forward(x (B, 1, D/r, H, W), task_ids (B,)) -> (B, 1, D, H, W)``.

    ``spec`` is a JSON-able dict of the widths that rebuilds the module (``cls(spec)``); the importer infers
    it from a released state dict (``spec_from_state_dict``) whose keys ``convert_state_dict`` maps onto
    this module's.
    """

    architecture: ClassVar[str]
    default_sparse_ratio: ClassVar[int] = 1
    default_patch_hw: ClassVar[tuple[int, int]] = (128, 128)

    def __init__(self, spec: dict[str, Any], *, route: str = DEFAULT_ROUTE, sparse_ratio: int = 1) -> None:
        """``route``: the MoDE training route (MoDE models only); ``sparse_ratio``: the input's depth step r."""
        super().__init__()
        self.spec = dict(spec)
        self.route = route
        self.sparse_ratio = sparse_ratio

    @classmethod
    @abc.abstractmethod
    def spec_from_state_dict(cls, state: dict[str, Tensor]) -> dict[str, Any]:
        """Widths read from the shapes of a released state dict (raises CheckpointError if it does not fit)."""

    @classmethod
    def convert_state_dict(cls, state: dict[str, Tensor]) -> dict[str, Tensor]:
        """Released key names -> this module's (identity unless a subclass renames)."""
        return dict(state)

    @classmethod
    def patch_depth(cls, spec: dict[str, Any]) -> int | None:
        """The target depth the architecture fixes (None when any depth works)."""
        return None

    @classmethod
    @abc.abstractmethod
    def config_tree(cls, spec: dict[str, Any]) -> dict[str, Any]:
        """The ``model`` section of our config that describes this architecture as closely as it can."""

    @staticmethod
    def unet3d_tree(conditioning: str, mult_chan: int, depth: int) -> dict[str, Any]:
        """``model`` section of a 3D U-Net with ``depth`` down-samplings from ``mult_chan`` channels, doubling."""
        return {
            "topology": "3d",
            "interpolation": "prefix",
            "prefix_mode": "nearest",
            "conditioning": conditioning,
            "channels": [mult_chan * 2**i for i in range(depth + 1)],
            "norm": "batch",
        }

    @classmethod
    @abc.abstractmethod
    def spec_from_config(cls, cfg: Config) -> dict[str, Any]:
        """The widths ``model.architecture_options`` (over the released defaults) and the data section give."""

    @classmethod
    @abc.abstractmethod
    def options_from_spec(cls, spec: dict[str, Any]) -> dict[str, int]:
        """``model.architecture_options`` describing ``spec`` (exact only if ``spec_from_config`` gives it back)."""

    @classmethod
    def from_config(cls, cfg: Config) -> CompatModel:
        """Build the architecture a config names (``model.architecture``) for training; train mode."""
        model = cls(cls.spec_from_config(cfg), sparse_ratio=cfg.data.sparse_ratio)
        model.patch = tuple(cfg.data.patch)
        return model

    @abc.abstractmethod
    def forward(self, x: Tensor, task_ids: Tensor) -> Tensor:
        """Predict the dense target ``(B, 1, D, H, W)`` for each sample's task."""
