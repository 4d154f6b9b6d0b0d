"""Named and ad-hoc grids of configurations: the variations `bench` measures and `ablate` trains.

A grid is a list of rows, each a mapping ``{config key: value}`` laid over a base config. The named grids
follow the paper's tables (topologies: Table 6; methods: Table 3; backbones: Table 5; sparsity: Fig. 4);
``axes`` builds the Cartesian product of ``key=[v1, v2, ...]`` lists.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from sparsessp.config import Config, config_from_dict
from sparsessp.errors import ConfigError

TOPOLOGIES = ("3d", "2d", "3to2d", "2to3d")
METHODS = ("multinet", "condnet", "tsn", "dodnet", "tgnet", "repmode")
BACKBONES = ("resnet18", "swin_base", "vit_base", "dinov2_base", "vit_large")
SPARSE_RATIOS = (1, 2, 4, 8)

Row = dict[str, Any]

GRIDS: dict[str, list[Row]] = {
    "topologies": [{"model.topology": t} for t in TOPOLOGIES],
    "methods": [{"model.conditioning": m, "model.topology": t} for m in METHODS for t in TOPOLOGIES],
    "backbones": [
        {"model.backbone": b, "model.topology": t, "model.conditioning": "tsn"}
        for b in BACKBONES
        for t in ("2d", "2to3d")
    ],
    "sparsity": [{"data.sparse_ratio": r} for r in SPARSE_RATIOS],
}


def parse_axes(items: Sequence[str]) -> list[Row]:
    """Rows of the Cartesian product of ``KEY=[v1, v2, ...]`` items (values are YAML, as in ``--set``)."""
    keys: list[str] = []
    values: list[list[Any]] = []
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--axis expects KEY=[V1, V2, ...], got {item!r}")
        try:
            parsed = yaml.safe_load(text)
        except yaml.YAMLError:
            parsed = None
        if not isinstance(parsed, list) or not parsed:
            raise ConfigError(f"--axis {key.strip()}: give a non-empty YAML list of values, e.g. {key.strip()}=[2, 4]")
        if key.strip() in keys:
            raise ConfigError(f"--axis {key.strip()} is given twice")
        keys.append(key.strip())
        values.append(parsed)
    return [dict(zip(keys, combo)) for combo in itertools.product(*values)]


def value_text(value: Any) -> str:
    """A value as it reads in a name and as ``--set`` parses it back (YAML flow style for lists)."""
    if isinstance(value, str):
        return value
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def row_name(row: Mapping[str, Any]) -> str:
    """A row's name: its values joined by ``/`` (e.g. ``tsn/3to2d``)."""
    return "/".join(value_text(v) for v in row.values())


def row_configs(base: Config, rows: Sequence[Mapping[str, Any]]) -> list[tuple[str, Config]]:
    """``(name, config)`` per row: the base config with the row's keys overridden (validated, one-line errors)."""
    tree = base.model_dump(mode="json")
    return [(row_name(row), config_from_dict(tree, [f"{k}={value_text(v)}" for k, v in row.items()])) for row in rows]


def grid_configs(base: Config, grid: str) -> list[tuple[str, Config]]:
    """The configurations of a named grid, each the base config with the grid's keys overridden."""
    if grid not in GRIDS:
        raise ConfigError(f"unknown grid {grid!r}; choose one of {', '.join(GRIDS)}")
    return row_configs(base, GRIDS[grid])
