"""`sparsessp prepare`: read a dataset's manifests, normalise and resample its volumes, and cache them."""

from __future__ import annotations

import argparse
from pathlib import Path

from sparsessp.cli.common import add_config_arguments, config_from_args

HELP = "read a dataset manifest, z-score and resample volumes to the 0.29 um grid, and cache them for training"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--root", type=Path, help="dataset root (default: data.root of the config)")
    parser.add_argument("--splits", default="train,val,test", help="comma-separated splits to prepare")
    parser.add_argument("--from-pth", type=Path, action="append", default=[], metavar="FILE",
                        help="import a RepMode packed .pth split into the root first (repeatable)")
    parser.add_argument("--split", choices=["train", "val", "test"],
                        help="split of the --from-pth file(s) (default: the file name, e.g. train.pth)")
    parser.add_argument("--trust-pickle", action="store_true",
                        help="allow unpickling --from-pth files (this can run code: only for files you trust)")
    parser.add_argument("--overwrite", action="store_true", help="replace manifests that --from-pth would write")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from sparsessp.data.manifest import SPLITS, ManifestEntry
    from sparsessp.data.prepare import import_pth, prepare_dataset
    from sparsessp.errors import InputError

    cfg = config_from_args(args)
    root = Path(args.root) if args.root is not None else Path(cfg.data.root)
    splits = [s.strip() for s in args.splits.split(",") if s.strip()]
    unknown = [s for s in splits if s not in SPLITS]
    if unknown or not splits:
        raise InputError(f"--splits: unknown split(s) {', '.join(unknown) or '(none given)'}; use {', '.join(SPLITS)}")
    console = Console(stderr=True)
    structures = None
    if args.from_pth:
        imported: dict[str, int] = {}
        for path in args.from_pth:
            counts = import_pth(path, root, split=args.split, trust_pickle=args.trust_pickle, overwrite=args.overwrite)
            for name, count in counts.items():
                imported[name] = imported.get(name, 0) + count
            console.print(f"imported {sum(counts.values())} volumes from {path}")
        structures = sorted(imported)
        splits = sorted({args.split or Path(p).stem for p in args.from_pth}, key=SPLITS.index)
    elif not root.is_dir():
        raise InputError(f"dataset root not found: {root} (make one with `sparsessp simulate`, or give --root)")
    with console.status("preparing volumes") as status:

        def progress(entry: ManifestEntry, cached: bool) -> None:
            status.update(f"preparing volumes: {entry.structure} {entry.split} {entry.path.name}")

        summary = prepare_dataset(cfg, splits, root=root, structures=structures, on_volume=progress)
    for (structure, split), count in summary.volumes.items():
        print(f"{structure:<20} {split:<5} {count:4d} volumes")
    print(f"{summary.total} volumes ready ({summary.prepared} prepared now, {summary.cached} from the cache) "
          f"in {summary.cache_dir}")
    return 0
