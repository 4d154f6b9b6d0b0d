"""The top-level SparseSSP network: interpolation x topology body x head, for one conditioning factory.

Shapes (CONTRACTS.md): ``forward(x (B, 1, ceil(D/r), H, W), task_ids (B,)) -> (B, 1, D, H, W)``, any r >= 1:
sparse plane k is dense plane k*r of the window; up-sampling gives ceil(D/r) * r planes, cropped to D.

- ``prefix``: the TL is resampled to depth D first; the body runs on D; 3D heads emit 1 channel, 2D
  heads D channels.
- ``postfix`` (``model.postfix_placement: output``, the paper's): the body runs one-to-one on D/r and its
  head maps to the OUTPUT grid at depth D/r (1 channel for a 3D decoder, D/r channels for a 2D one, viewed
  as (B, 1, D/r, H, W)); a ConvTranspose3d(1, 1, kernel = stride = (r, 1, 1)) up-samples that output to D.
  ``postfix_placement: features`` (our variant): a 3D decoder's last feature is up-sampled in depth
  (ConvTranspose3d + norm + ReLU) before the 1-channel head; a 2D head emits D/r channels, then a 1x1
  Conv2d maps them to D (see :mod:`sparsessp.models.interpolation`).
- ``none`` (2D decoders only): the body runs on D/r and the 2D head emits D channels.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor, nn

from sparsessp.design import DECODER_DIMS, ENCODER_DIMS, check_model_config, input_depth, sparse_depth
from sparsessp.models.conditioning.base import Conditioning, TaskContext
from sparsessp.models.interpolation import PostfixDeconv, PostfixUpsample2d, PostfixUpsample3d, PrefixInterpolation
from sparsessp.models.unet import build_unet

if TYPE_CHECKING:
    from sparsessp.config import Config


class SparseSSPNetwork(nn.Module):
    """One network of the design space; attributes ``sparse_ratio`` (r) and ``patch`` (D, H, W)."""

    def __init__(self, cfg: Config, cond: Conditioning) -> None:
        super().__init__()
        check_model_config(cfg.model, cfg.data)
        model = cfg.model
        depth = cfg.data.patch[0]
        ratio = cfg.data.sparse_ratio
        self.sparse_ratio = ratio
        self.patch = tuple(cfg.data.patch)
        self.sparse_depth = sparse_depth(depth, ratio)
        self.num_tasks = cond.num_tasks
        self.topology = model.topology
        self.interpolation = model.interpolation
        self.multiple = 2 ** (model.levels - 1)
        self.encoder_dims = ENCODER_DIMS[model.topology]
        self.decoder_dims = DECODER_DIMS[model.topology]
        self.prefix = PrefixInterpolation(ratio, model.prefix_mode, depth) if model.interpolation == "prefix" else None
        self.body = build_unet(cfg, cond, input_depth(model.interpolation, depth, ratio))
        c0 = self.body.out_channels
        postfix = model.interpolation == "postfix"
        at_output = postfix and model.postfix_placement == "output"
        self.postfix: nn.Module | None = None
        self.output_postfix: nn.Module | None = PostfixDeconv(ratio, depth) if at_output else None
        if self.decoder_dims == 3:
            if postfix and not at_output:
                self.postfix = PostfixUpsample3d(cond, c0, ratio, depth)
            self.head = cond.head(3, c0, 1)
        else:
            self.head = cond.head(2, c0, self.sparse_depth if postfix else depth)
            if postfix and not at_output:
                self.postfix = PostfixUpsample2d(self.sparse_depth, depth)

    def forward(self, x: Tensor, task_ids: Tensor) -> Tensor:
        """Predict the dense target (B, 1, D, H, W) from the sparse TL (B, 1, D/r, H, W)."""
        if x.ndim != 5 or x.shape[1] != 1 or x.shape[2] != self.sparse_depth:
            raise ValueError(
                f"expected TL of shape (B, 1, {self.sparse_depth}, H, W) (ceil of patch depth {self.patch[0]} / "
                f"sparse ratio {self.sparse_ratio}), got {tuple(x.shape)}"
            )
        if x.shape[3] % self.multiple or x.shape[4] % self.multiple:
            raise ValueError(f"TL height and width must be multiples of {self.multiple}, got {tuple(x.shape[3:])}")
        if task_ids.shape != (x.shape[0],):
            raise ValueError(f"task_ids must have shape ({x.shape[0]},), got {tuple(task_ids.shape)}")
        ctx = TaskContext(task_ids, self.num_tasks)
        if self.prefix is not None:
            x = self.prefix(x)
        if self.encoder_dims == 2:
            x = x[:, 0]
        h = self.body(x, ctx)
        if self.decoder_dims == 3:
            if self.postfix is not None:
                h = self.postfix(h)
            y = self.head(h, ctx)
        else:
            y = self.head(h, ctx)
            if self.postfix is not None:
                y = self.postfix(y)
            y = y.unsqueeze(1)
        if self.output_postfix is not None:
            y = self.output_postfix(y)
        return y


def build_network(cfg: Config, cond: Conditioning) -> SparseSSPNetwork:
    """The network ``cfg`` describes, with every part from ``cond`` (what ``registry.build_model`` calls)."""
    return SparseSSPNetwork(cfg, cond)
