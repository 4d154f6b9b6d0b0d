"""`sparsessp simulate`: write a SynthCell-12 dataset (and optionally a preview panel)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from sparsessp.errors import InputError
from sparsessp.structures import STRUCTURES

HELP = "write a SynthCell-12 synthetic dataset (OME-TIFF + RepMode split lists)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="dataset folder to write")
    parser.add_argument(
        "--size",
        type=int,
        nargs=3,
        default=(64, 192, 192),
        metavar=("Z", "Y", "X"),
        help="field of view in voxels of 0.29 um (default: 64 192 192)",
    )
    parser.add_argument("--count", type=int, default=4, help="fields of view per structure (default: 4)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument(
        "--photons", type=float, default=200.0, help="expected fluorescence photons per unit density (default: 200)"
    )
    parser.add_argument(
        "--structures", default=",".join(STRUCTURES), help="comma-separated structures (default: all twelve)"
    )
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all CPUs)")
    parser.add_argument("--preview", type=Path, default=None, help="also write a PNG panel of projections")
    parser.add_argument("--overwrite", action="store_true", help="replace a dataset already in --out")


def run(args: argparse.Namespace) -> int:
    from sparsessp.data.synthcell import generate, write_preview

    out: Path = args.out
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not args.overwrite:
        raise InputError(f"--out {out} exists and is not empty; pass --overwrite to replace the dataset there")
    if args.workers is not None and args.workers < 1:
        raise InputError(f"--workers must be at least 1, got {args.workers}")
    names = [s.strip() for s in args.structures.split(",") if s.strip()]
    start = time.perf_counter()
    generate(
        out,
        size=args.size,
        count=args.count,
        seed=args.seed,
        photons=args.photons,
        structures=names,
        workers=args.workers,
    )
    elapsed = time.perf_counter() - start
    files = len(list((out / "images").glob("*.ome.tif")))
    print(
        f"wrote {files} fields of view ({len(names)} structures, {args.size[0]}x{args.size[1]}x{args.size[2]}) "
        f"to {out} in {elapsed:.1f} s"
    )
    if args.preview is not None:
        ordered = [s for s in STRUCTURES if s in names]
        write_preview(out, args.preview, ordered)
        print(f"preview: {args.preview}")
    return 0
