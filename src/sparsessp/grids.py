"""Named and ad-hoc grids of configurations: the variations `bench` measures and `ablate` trains.

A grid is a list of rows laid over a base config; each row has labels (how a table names it: the paper's
own words for the paper's tables) and changes ``{config key: value}``. A grid may also vary the sparse
ratio: every row without a ratio of its own becomes one cell per ratio (``data.sparse_ratio``). The paper's
tables (``table1`` ... ``table7``, ``fig4``) name every design key they compare explicitly, so identical
experiments of two tables are identical cells (same run folder name, :attr:`Cell.folder`) and an ablation
sharing one runs folder trains them once. ``parse_axes`` builds the Cartesian product of
``key=[v1, v2, ...]`` lists.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from sparsessp.config import Config, config_from_dict
from sparsessp.errors import ConfigError

TOPOLOGIES = ("3d", "2d", "3to2d", "2to3d")
METHODS = ("multinet", "condnet", "tsn", "dodnet", "tgnet", "repmode")
BACKBONES = ("resnet18", "swin_base", "vit_base", "dinov2_base", "vit_large")
SPARSE_RATIOS = (1, 2, 4, 8)

TOPOLOGY_NAMES = {"3d": "3D", "2d": "2D", "2to3d": "2-to-3D", "3to2d": "3-to-2D"}
"""The paper's names of the topologies (its tables and the CSVs of ``../shared/paper/tables``)."""
MECHANISM_NAMES = {"tsn": "TSNs", "condnet": "CondNet", "dodnet": "DoDNet", "repmode": "RepMode", "tgnet": "Tgnet"}
"""The paper's names of the five task-conditioning mechanisms, in its Table 3 order."""
BACKBONE_NAMES = {"resnet18": "ResNet18", "swin_base": "Swin-Base", "vit_base": "ViT-Base",
                  "dinov2_base": "DINOv2-Base", "vit_large": "ViT-Large"}
"""The paper's names of the Table 5 backbones, in its order."""

DESIGN_KEYS = ("model.conditioning", "model.topology", "model.interpolation", "model.projection", "model.backbone")
"""The keys every cell of a paper table sets, so the cell does not depend on the base config's design."""

Row = dict[str, Any]


def value_text(value: Any) -> str:
    """A value as it reads in a name and as ``--set`` parses it back (YAML flow style for lists)."""
    if isinstance(value, str):
        return value
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


@dataclass(frozen=True)
class GridRow:
    """One row of a table: its labels (one per column of the grid), its config changes, a fixed ratio or None."""

    labels: tuple[str, ...]
    changes: Row
    ratio: int | None = None


@dataclass(frozen=True)
class Grid:
    """A named grid: label columns, rows, the sparse ratios its rows run at (None: the base config's)."""

    name: str
    title: str
    columns: tuple[str, ...]
    rows: tuple[GridRow, ...]
    ratios: tuple[int, ...] | None = None
    paper_csv: str | None = None
    """File name of the paper's numbers for this grid under ``../shared/paper/tables`` (None: none)."""


@dataclass(frozen=True)
class Cell:
    """One configuration of a grid at one ratio: what a table calls it and what it changes."""

    labels: dict[str, str]
    changes: Row
    ratio: int | None = None
    extra: Row = field(default_factory=dict)
    """Changes beyond the grid's (e.g. a second seed); part of the name and the folder."""

    @property
    def name(self) -> str:
        """The labels joined by ``/``, then ``r<ratio>`` and any extra ``key=value``."""
        parts = [*self.labels.values(), *([f"r{self.ratio}"] if self.ratio is not None else [])]
        parts += [f"{k.rsplit('.', 1)[-1]}={value_text(v)}" for k, v in self.extra.items()]
        return "/".join(parts)

    @property
    def all_changes(self) -> Row:
        """The config keys the cell sets: the row's, the ratio, the extras."""
        ratio = {} if self.ratio is None else {"data.sparse_ratio": self.ratio}
        return {**self.changes, **ratio, **self.extra}

    @property
    def folder(self) -> str:
        """A run-folder name from the values the cell sets (same experiment, same folder, whatever the table)."""
        changes = self.all_changes
        keys = [k for k in DESIGN_KEYS if k in changes] + [k for k in changes if k not in DESIGN_KEYS]
        prefixes = {"data.sparse_ratio": "r", "model.projection": "proj"}
        values = [prefixes.get(k, "") + value_text(changes[k]) if k in DESIGN_KEYS or k in prefixes
                  else f"{k.rsplit('.', 1)[-1]}={value_text(changes[k])}" for k in keys]
        return re.sub(r"[^A-Za-z0-9._=-]+", "-", "_".join(values)).strip("-") or "variant"


def _design(conditioning: str, topology: str, interpolation: str = "prefix", projection: str = "3d",
            backbone: str = "unet") -> Row:
    """Every design key of a paper cell (hybrids project in 3D and every row is prefix unless a table varies it)."""
    values = (conditioning, topology, interpolation, projection, backbone)
    return dict(zip(DESIGN_KEYS, values))


def _tsn_backbone(topology: str) -> str:
    """TSNs' 2D encoder is ResNet-18 (the paper's Table 3 TSNs rows are Table 5's ResNet18 rows)."""
    return "resnet18" if topology in ("2d", "2to3d") else "unet"


def _table1() -> tuple[GridRow, ...]:
    none = [GridRow((MECHANISM_NAMES[m], "none", TOPOLOGY_NAMES[t]), _design(m, t, "none"))
            for m in ("repmode", "dodnet") for t in ("2d", "3to2d")]
    interp = [GridRow((MECHANISM_NAMES[m], i, TOPOLOGY_NAMES[t]), _design(m, t, i))
              for m in ("repmode", "dodnet") for t in ("3d", "2d", "2to3d", "3to2d") for i in ("postfix", "prefix")]
    return (*none, *interp)


def _table3() -> tuple[GridRow, ...]:
    return tuple(
        GridRow((MECHANISM_NAMES[m], TOPOLOGY_NAMES[t]),
                _design(m, t, backbone=_tsn_backbone(t) if m == "tsn" else "unet"))
        for m in MECHANISM_NAMES for t in ("3d", "2d", "2to3d", "3to2d")
    )


PAPER_GRIDS: dict[str, Grid] = {
    "table1": Grid("table1", "Table 1: interpolation strategies", ("approach", "interpolation", "topology"),
                   _table1(), (2, 4, 8), "table1_interpolation.csv"),
    "table2": Grid("table2", "Table 2: projection space (DoDNet)", ("approach", "projection", "topology"),
                   tuple(GridRow(("DoDNet", p.upper(), TOPOLOGY_NAMES[t]), _design("dodnet", t, projection=p))
                         for t in ("3to2d", "2to3d") for p in ("3d", "2d")),
                   (2, 4, 8), "table2_projection.csv"),
    "table3": Grid("table3", "Table 3: mechanisms x topologies (prefix)", ("approach", "topology"),
                   _table3(), (2, 4, 8), "table3_topologies.csv"),
    "table5": Grid("table5", "Table 5: 2D backbones (TSNs)", ("backbone", "topology"),
                   tuple(GridRow((BACKBONE_NAMES[b], TOPOLOGY_NAMES[t]), _design("tsn", t, backbone=b))
                         for t in ("2d", "2to3d") for b in BACKBONE_NAMES),
                   (2, 8), "table5_backbones.csv"),
    "table6": Grid("table6", "Table 6: resource consumption at r = 2", ("approach", "topology"),
                   tuple(GridRow((MECHANISM_NAMES[m], TOPOLOGY_NAMES[t]),
                                 _design(m, t, backbone=_tsn_backbone(t) if m == "tsn" else "unet"), ratio=2)
                         for m in ("repmode", "dodnet", "tsn") for t in ("3d", "2d", "2to3d", "3to2d")),
                   None, "table6_resources.csv"),
    "table7": Grid("table7", "Table 7: per structure, the best configuration against Multi-Net (r = 1)",
                   ("method",),
                   (GridRow(("Multi-Net",), _design("multinet", "3d"), ratio=1),
                    GridRow(("Tgnet-3-to-2D",), _design("tgnet", "3to2d"))),
                   (2, 4, 8), "table7_structures.csv"),
    "fig4": Grid("fig4", "Fig. 4: R2 against the sparse ratio, 3D and 3-to-2D", ("approach", "topology"),
                 tuple(GridRow((MECHANISM_NAMES[m], TOPOLOGY_NAMES[t]), _design(m, t))
                       for m in MECHANISM_NAMES for t in ("3d", "3to2d")),
                 (2, 3, 4, 5, 6, 7, 8), "table3_topologies.csv"),
}
"""The paper's tables and Fig. 4 as grids (labels as the paper writes them)."""


def method_row(conditioning: str, topology: str) -> Row:
    """A cell of the ``methods`` grid (and of configs/paper/methods/): TSNs' 2D encoders are ResNet-18 (as in the
    paper); a Multi-Net off the 3D topology has members of our skeleton (the paper's pytorch_fnet member is 3D
    only)."""
    row: Row = {"model.conditioning": conditioning, "model.topology": topology}
    if conditioning == "tsn":
        row["model.backbone"] = _tsn_backbone(topology)
    if conditioning == "multinet" and topology != "3d":
        row["model.conditioning_options"] = {"member": "sparsessp"}
    return row


def _plain(name: str, title: str, rows: Sequence[Row]) -> Grid:
    keys = tuple(rows[0])
    columns = tuple(k.rsplit(".", 1)[-1] for k in keys)
    return Grid(name, title, columns, tuple(GridRow(tuple(value_text(r[k]) for k in keys), r) for r in rows))


GRIDS: dict[str, Grid] = {
    "topologies": _plain("topologies", "Topologies", [{"model.topology": t} for t in TOPOLOGIES]),
    "methods": Grid("methods", "Task conditioning x topology", ("conditioning", "topology"),
                    tuple(GridRow((m, t), method_row(m, t)) for m in METHODS for t in TOPOLOGIES)),
    "backbones": _plain("backbones", "2D backbones (TSNs)",
                        [{"model.backbone": b, "model.topology": t, "model.conditioning": "tsn"}
                         for b in BACKBONES for t in ("2d", "2to3d")]),
    "sparsity": Grid("sparsity", "Sparse ratio", (), (GridRow((), {}),), SPARSE_RATIOS),
    **PAPER_GRIDS,
}
"""Every named grid: ``bench --grid`` and ``ablate --grid`` choices."""


def parse_ratios(text: str) -> tuple[int, ...]:
    """``"2,4,8"`` -> ``(2, 4, 8)``; each a whole number >= 1, none twice."""
    try:
        ratios = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ConfigError(f"--ratios expects whole numbers separated by commas, e.g. 2,4,8; got {text!r}") from None
    if not ratios or min(ratios) < 1 or len(set(ratios)) != len(ratios):
        raise ConfigError(f"--ratios: give distinct whole numbers >= 1, got {text!r}")
    return ratios


def cells(grid: Grid, ratios: Sequence[int] | None = None) -> list[Cell]:
    """The grid's cells, row by row: one per ratio (``ratios``, else the grid's) for rows without their own."""
    chosen = tuple(ratios) if ratios is not None else grid.ratios
    out = []
    for row in grid.rows:
        labels = dict(zip(grid.columns, row.labels))
        if row.ratio is not None:
            out.append(Cell(labels, dict(row.changes), row.ratio))
        elif chosen is None:
            out.append(Cell(labels, dict(row.changes)))
        else:
            out += [Cell(labels, dict(row.changes), r) for r in chosen]
    return out


def axes_grid(rows: Sequence[Row]) -> Grid:
    """A grid of ``--axis`` product rows, each labelled ``key=value`` per axis."""
    keys = tuple(rows[0])
    columns = tuple(k.rsplit(".", 1)[-1] for k in keys)
    labelled = (GridRow(tuple(f"{c}={value_text(r[k])}" for c, k in zip(columns, keys)), r) for r in rows)
    return Grid("axes", "Axes", columns, tuple(labelled))


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


def cell_config(base: Config, cell: Cell) -> Config:
    """The base config with the cell's keys overridden (validated; a one-line error names the cell)."""
    tree = base.model_dump(mode="json")
    try:
        return config_from_dict(tree, [f"{k}={value_text(v)}" for k, v in cell.all_changes.items()])
    except ConfigError as exc:
        raise ConfigError(f"{cell.name or 'base'}: {exc}") from None


def cell_configs(base: Config, grid_cells: Sequence[Cell]) -> list[tuple[str, Config]]:
    """``(name, config)`` per cell, every one validated before any is used."""
    return [(cell.name, cell_config(base, cell)) for cell in grid_cells]


def grid_configs(base: Config, grid: str, ratios: Sequence[int] | None = None) -> list[tuple[str, Config]]:
    """The configurations of a named grid over the base config (at ``ratios`` when given)."""
    if grid not in GRIDS:
        raise ConfigError(f"unknown grid {grid!r}; choose one of {', '.join(GRIDS)}")
    return cell_configs(base, cells(GRIDS[grid], ratios))
