"""`sparsessp export`: one bioimage.io model package per structure, each tested by bioimage.io's own model test."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "export a trained model as bioimage.io model packages (one tested zip per structure)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path, metavar="CKPT",
                        help="sparsessp checkpoint (e.g. runs/x/checkpoints/best.ckpt)")
    parser.add_argument("--structures", required=True, metavar="A,B", help="comma-separated structure names")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    parser.add_argument("--format", choices=["bioimageio"], default="bioimageio", help="package format")
    parser.add_argument("--author", action="append", metavar="NAME",
                        help="author named in the packages (repeat for several; default: sparsessp)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing packages")


def run(args: argparse.Namespace) -> int:
    from sparsessp.export import export_bioimageio

    structures = [s.strip() for s in args.structures.split(",") if s.strip()]
    paths = export_bioimageio(args.checkpoint, structures, args.out, overwrite=args.overwrite,
                              authors=tuple(args.author or ("sparsessp",)))
    for structure, path in paths.items():
        print(f"wrote {path} ({structure}; bioimage.io model test passed)")
    return 0
