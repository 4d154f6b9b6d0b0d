"""The one place that maps config names to classes: task-conditioning mechanisms and 2D backbones.

Entries are ``"module:attribute"`` strings, imported only when used, so validating a config needs no
torch. A new mechanism or backbone is one new file and one line here.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

    from sparsessp.config import Config

CONDITIONINGS: dict[str, str] = {
    "none": "sparsessp.models.conditioning.base:Conditioning",
    "condnet": "sparsessp.models.conditioning.condnet:CondNet",
    "multihead": "sparsessp.models.conditioning.multihead:MultiHead",
    "tsn": "sparsessp.models.conditioning.tsn:TSN",
    "dodnet": "sparsessp.models.conditioning.dodnet:DoDNet",
    "tgnet": "sparsessp.models.conditioning.tgnet:Tgnet",
    "multinet": "sparsessp.models.conditioning.multinet:MultiNet",
    "repmode": "sparsessp.models.conditioning.repmode:RepMode",
}

BACKBONES: dict[str, str] = {
    "unet": "sparsessp.models.backbones.unet:UNetEncoder2d",
    "resnet18": "sparsessp.models.backbones.timm_encoders:ResNetEncoder2d",
    "swin_tiny": "sparsessp.models.backbones.timm_encoders:SwinEncoder2d",
    "swin_base": "sparsessp.models.backbones.timm_encoders:SwinEncoder2d",
    "vit_tiny": "sparsessp.models.backbones.timm_encoders:ViTEncoder2d",
    "vit_base": "sparsessp.models.backbones.timm_encoders:ViTEncoder2d",
    "vit_large": "sparsessp.models.backbones.timm_encoders:ViTEncoder2d",
    "dinov2_small": "sparsessp.models.backbones.timm_encoders:ViTEncoder2d",
    "dinov2_base": "sparsessp.models.backbones.timm_encoders:ViTEncoder2d",
}

ARCHITECTURES: dict[str, str] = {
    "sparsessp-released": "sparsessp.models.compat.sparsessp_released:ReleasedSparseSSP",
    "repmode": "sparsessp.models.compat.repmode3d:RepMode3D",
    "fnet": "sparsessp.models.compat.fnet:FNet3D",
}
"""Released architectures rebuilt exactly (not our U-Net skeleton): ``model.architecture`` trains one
(sized by ``model.architecture_options``); an imported checkpoint names one under ``architecture`` and
:func:`sparsessp.models.compat.build_from_checkpoint` rebuilds it."""


def resolve(table: dict[str, str], name: str) -> Any:
    module, attr = table[name].split(":")
    return getattr(import_module(module), attr)


def build_model(cfg: Config) -> nn.Module:
    """Build the network a config describes; ``.config`` and ``.structures`` are attached.

    ``model.architecture`` other than ``sparsessp`` builds that released network (its ``from_config``);
    the design-space keys (topology, conditioning, ...) then do not apply.
    """
    from sparsessp.models.network import build_network

    if cfg.model.architecture != "sparsessp":
        model = resolve(ARCHITECTURES, cfg.model.architecture).from_config(cfg)
    else:
        conditioning = resolve(CONDITIONINGS, cfg.model.conditioning)
        model = conditioning.build_model(cfg, lambda cond: build_network(cfg, cond))
    model.config = cfg
    model.structures = list(cfg.data.structures)
    return model
