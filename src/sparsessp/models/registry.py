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
}

BACKBONES: dict[str, str] = {
    "unet": "sparsessp.models.backbones.unet:UNetEncoder2d",
}


def resolve(table: dict[str, str], name: str) -> Any:
    module, attr = table[name].split(":")
    return getattr(import_module(module), attr)


def build_model(cfg: Config) -> nn.Module:
    """Build the network a config describes; ``.config`` and ``.structures`` are attached."""
    from sparsessp.models.network import build_network

    conditioning = resolve(CONDITIONINGS, cfg.model.conditioning)
    model = conditioning.build_model(cfg, lambda cond: build_network(cfg, cond))
    model.config = cfg
    model.structures = list(cfg.data.structures)
    return model
