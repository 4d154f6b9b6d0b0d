"""Writes configs/paper/ (the paper's settings) and configs/cpu/ (CPU-sized variants) from one table.

Run from the repository root: `python scripts/gen_paper_configs.py`. The YAML files are committed; this
script keeps them consistent when a paper setting changes.
"""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1] / "configs"
EPOCHS = {"3d": 1000, "3to2d": 3000, "2to3d": 3000, "2d": 7000}
TOPOLOGIES = ("3d", "2d", "3to2d", "2to3d")
METHODS = ("tsn", "condnet", "dodnet", "repmode", "tgnet")
HEADER = (
    "# {what}\n# Paper settings (SparseSSP, ECCV 2024): patch 32 x 128 x 128, batch 8, Adam, MSE, validation every\n"
    "# 20 epochs. Data: AllenCell prepared with `sparsessp prepare` (or any dataset root: --set data.root=DIR).\n"
)
CPU_HEADER = "# {what}\n# CPU-sized variant (tiny widths, small patch) used by tests and quick comparisons.\n"


def paper(topology: str, interpolation: str, projection: str, conditioning: str, ratio: int = 8) -> dict:
    return {
        "data": {"root": "data/allencell", "patch": [32, 128, 128], "sparse_ratio": ratio},
        "model": {
            "topology": topology,
            "interpolation": interpolation,
            "prefix_mode": "nearest",
            "projection": projection,
            "conditioning": conditioning,
            "backbone": "unet",
            "channels": [32, 64, 128, 256, 256],
            "embed_dim": 256,
        },
        "train": {"batch_size": 8, "lr": 1e-4, "epochs": EPOCHS[topology], "val_every": 20, "precision": "16-mixed"},
    }


def cpu(cfg: dict) -> dict:
    small = yaml.safe_load(yaml.safe_dump(cfg))
    small["data"].update({"root": "data/synthcell", "patch": [16, 64, 64], "sparse_ratio": 4})
    small["model"].update({"channels": [8, 16, 32, 32], "embed_dim": 32})
    small["train"].update({"batch_size": 4, "lr": 1e-3, "epochs": 50, "val_every": 5, "precision": "32-true"})
    return small


def write(path: Path, header: str, cfg: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + yaml.safe_dump(cfg, sort_keys=False))


def design_space() -> list[tuple[str, str, str]]:
    """Every valid (topology, interpolation, projection): `none` needs a 2D decoder; projection only for hybrids."""
    rows = []
    for topology in TOPOLOGIES:
        interps = ("prefix", "postfix", "none") if topology in ("2d", "3to2d") else ("prefix", "postfix")
        projections = ("3d", "2d") if topology in ("3to2d", "2to3d") else ("3d",)
        rows += [(topology, i, p) for i in interps for p in projections]
    return rows


def main() -> None:
    for topology, interp, proj in design_space():
        name = f"{topology}_{interp}" + (f"_proj{proj}" if topology in ("3to2d", "2to3d") else "")
        what = f"Design space (Tables 1-2): topology {topology}, {interp} interpolation, projection {proj}, DoDNet."
        cfg = paper(topology, interp, proj, "dodnet")
        write(ROOT / "paper" / "design" / f"{name}.yaml", HEADER.format(what=what), cfg)
        write(ROOT / "cpu" / "design" / f"{name}.yaml", CPU_HEADER.format(what=what), cpu(cfg))
    for method in (*METHODS, "multinet"):
        for topology in TOPOLOGIES:
            what = f"Table 3: {method} on the {topology} topology, prefix nearest, 3D projection."
            cfg = paper(topology, "prefix", "3d", method)
            write(ROOT / "paper" / "methods" / f"{method}_{topology}.yaml", HEADER.format(what=what), cfg)
            write(ROOT / "cpu" / "methods" / f"{method}_{topology}.yaml", CPU_HEADER.format(what=what), cpu(cfg))


if __name__ == "__main__":
    main()
