"""Writes configs/paper/ (the paper's settings) and configs/cpu/ (CPU-sized variants) from one table.

Run from the repository root: `python scripts/gen_paper_configs.py` (`--check` only compares). The YAML
files are committed; tests/test_configs.py checks that this script's output equals them and that every
file loads, so a paper setting changes here and nowhere else.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from sparsessp.grids import method_row

ROOT = Path(__file__).resolve().parents[1] / "configs"
EPOCHS = {"3d": 1000, "3to2d": 3000, "2to3d": 3000, "2d": 7000}
TOPOLOGIES = ("3d", "2d", "3to2d", "2to3d")
METHODS = ("tsn", "condnet", "dodnet", "repmode", "tgnet")
BACKBONES = {  # Table 5: name -> how the paper names it (and the timm model where it is not obvious)
    "resnet18": "ResNet-18",
    "swin_base": "Swin-B (swin_base_patch4_window7_224)",
    "vit_base": "ViT-B (vit_base_patch16_224)",
    "dinov2_base": "DINOv2-B (vit_base_patch14_dinov2)",
    "vit_large": "ViT-L (vit_large_patch16_224)",
}
HEADER = (
    "# {what}\n# Paper settings (SparseSSP, ECCV 2024): patch 32 x 128 x 128, batch 8, Adam, MSE, validation every\n"
    "# 20 epochs. Data: AllenCell prepared with `sparsessp prepare` (or any dataset root: --set data.root=DIR).\n"
)
BACKBONE_HEADER = (
    "# {what}\n# Paper settings (SparseSSP, ECCV 2024): patch 32 x 128 x 128, batch 8, Adam, MSE, validation every\n"
    "# 20 epochs, sparse ratio 8 (Table 5 also reports r = 2: --set data.sparse_ratio=2). The backbone is built\n"
    "# from timm without weights; give a local file with --set model.backbone_weights=PATH.\n"
    "# Data: AllenCell prepared with `sparsessp prepare` (or any dataset root: --set data.root=DIR).\n"
)
CPU_HEADER = (
    "# {what}\n# CPU-sized variant (small widths, 16 x 64 x 64 patch, r = 4) of configs/paper/{path}, used by tests\n"
    "# and quick comparisons; written by scripts/gen_paper_configs.py.\n"
)


def paper(
    topology: str, interpolation: str, projection: str, conditioning: str, backbone: str = "unet", ratio: int = 8
) -> dict:
    return {
        "data": {"root": "data/allencell", "patch": [32, 128, 128], "sparse_ratio": ratio},
        "model": {
            "topology": topology,
            "interpolation": interpolation,
            "prefix_mode": "nearest",
            "projection": projection,
            "conditioning": conditioning,
            "backbone": backbone,
            "channels": [32, 64, 128, 256, 256],
            "embed_dim": 256,
        },
        "train": {"batch_size": 8, "lr": 1e-4, "epochs": EPOCHS[topology], "val_every": 20, "precision": "16-mixed"},
    }


def cpu(cfg: dict) -> dict:
    """The CPU size of a paper config: four levels; level 0 has 16 channels so that 2-to-3D with projection
    in 3D can split every level's channels over its depth (16, 8, 4, 2 slices after prefix at D = 16)."""
    small = yaml.safe_load(yaml.safe_dump(cfg))
    small["data"].update({"root": "data/synthcell", "patch": [16, 64, 64], "sparse_ratio": 4})
    small["model"].update({"channels": [16, 16, 32, 32], "embed_dim": 32})
    small["train"].update({"batch_size": 4, "lr": 1e-3, "epochs": 50, "val_every": 5, "precision": "32-true"})
    return small


def dump(header: str, cfg: dict) -> str:
    return header + yaml.safe_dump(cfg, sort_keys=False)


def design_space() -> list[tuple[str, str, str]]:
    """Every valid (topology, interpolation, projection): `none` needs a 2D decoder; projection only for hybrids."""
    rows = []
    for topology in TOPOLOGIES:
        interps = ("prefix", "postfix", "none") if topology in ("2d", "3to2d") else ("prefix", "postfix")
        projections = ("3d", "2d") if topology in ("3to2d", "2to3d") else ("3d",)
        rows += [(topology, i, p) for i in interps for p in projections]
    return rows


def paper_configs() -> dict[str, tuple[str, dict]]:
    """configs/paper/: relative path -> (first header line, config tree)."""
    out: dict[str, tuple[str, dict]] = {}
    for topology, interp, proj in design_space():
        name = f"{topology}_{interp}" + (f"_proj{proj}" if topology in ("3to2d", "2to3d") else "")
        what = f"Design space (Tables 1-2): topology {topology}, {interp} interpolation, projection {proj}, DoDNet."
        out[f"design/{name}.yaml"] = (what, paper(topology, interp, proj, "dodnet"))
    for method in (*METHODS, "multinet"):
        for topology in TOPOLOGIES:
            row = method_row(method, topology)  # the methods grid's rules: TSNs' encoder, Multi-Net members
            backbone = row.get("model.backbone", "unet")
            what = f"Table 3: {method} on the {topology} topology, prefix nearest, 3D projection."
            if backbone != "unet":
                what += f" TSNs' ResNet-18 2D encoder (= Table 5's {backbone} row)."
            cfg = paper(topology, "prefix", "3d", method, backbone)
            if "model.conditioning_options" in row:
                what += " Members of our skeleton (the paper's pytorch_fnet member is 3D only)."
                cfg["model"]["conditioning_options"] = row["model.conditioning_options"]
            out[f"methods/{method}_{topology}.yaml"] = (what, cfg)
    for backbone, label in BACKBONES.items():
        for topology in ("2d", "2to3d"):
            what = (
                f"Table 5: TSNs with the {label} 2D backbone on the {topology} topology, prefix nearest, 3D projection."
            )
            out[f"backbones/{backbone}_{topology}.yaml"] = (what, paper(topology, "prefix", "3d", "tsn", backbone))
    return out


def render() -> dict[Path, str]:
    """Every generated file (path relative to configs/) and its text: the paper's, and the CPU size of the
    design and methods tables (the Table 5 backbones are paper-size models only)."""
    files: dict[Path, str] = {}
    for rel, (what, cfg) in paper_configs().items():
        header = BACKBONE_HEADER if rel.startswith("backbones/") else HEADER
        files[Path("paper") / rel] = dump(header.format(what=what), cfg)
        if not rel.startswith("backbones/"):
            files[Path("cpu") / rel] = dump(CPU_HEADER.format(what=what, path=rel), cpu(cfg))
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report files that differ (exit 1 if any)")
    args = parser.parse_args(argv)
    files = render()
    if args.check:
        stale = [str(r) for r, text in files.items() if not (ROOT / r).is_file() or (ROOT / r).read_text() != text]
        for rel in stale:
            print(f"differs: configs/{rel}")
        return 1 if stale else 0
    for rel, text in files.items():
        (ROOT / rel).parent.mkdir(parents=True, exist_ok=True)
        (ROOT / rel).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
