"""`sparsessp import-weights`: a released weights file (SparseSSP, RepMode, pytorch_fnet) -> our checkpoint.

The released network is rebuilt exactly (its widths read from the weights), checked to load, and saved
in our checkpoint layout with an ``architecture`` entry, so ``evaluate``, ``predict`` and ``load_model``
take it like a trained checkpoint. The output is written atomically; an existing file is refused
unless ``--overwrite``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sparsessp.models.compat import SOURCES

HELP = "convert released SparseSSP / RepMode / pytorch_fnet weights into a sparsessp checkpoint"


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("weights", type=Path, metavar="IN", help="released weights file (.pth / .p / .ckpt)")
    parser.add_argument("out", type=Path, metavar="OUT", help="sparsessp checkpoint to write")
    parser.add_argument("--source", required=True, choices=SOURCES, help="which release the weights come from")
    parser.add_argument("--sparse-ratio", type=int, metavar="R",
                        help="z-step of the TL input in target slices (default: 8 for sparsessp-released, else 1)")
    parser.add_argument("--structures", metavar="A,B",
                        help="task names in gate order (default: RepMode's saved list, else the twelve AllenCell "
                        "structures; fnet needs its one structure)")
    parser.add_argument("--patch", type=_ints, metavar="D,H,W",
                        help="training window on the target grid (default: the head's depth x 128 x 128)")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")


def run(args: argparse.Namespace) -> int:
    from sparsessp.engine.checkpoint import imported_state, save_checkpoint
    from sparsessp.errors import UserError
    from sparsessp.models.compat import import_weights

    if args.out.exists() and not args.overwrite:
        raise UserError(f"{args.out} exists; pass --overwrite to replace it")
    if args.sparse_ratio is not None and args.sparse_ratio < 1:
        raise UserError(f"--sparse-ratio must be a positive integer, got {args.sparse_ratio}")
    structures = [s.strip() for s in args.structures.split(",") if s.strip()] if args.structures else None
    model = import_weights(args.weights, args.source, args.sparse_ratio, structures, patch=args.patch)
    save_checkpoint(args.out, imported_state(model))
    params = sum(p.numel() for p in model.parameters())
    print(
        f"wrote {args.out}: {model.architecture}, {params:,} parameters, {len(model.structures)} task(s), "
        f"patch {'x'.join(map(str, model.patch))}, sparse ratio {model.sparse_ratio}"
    )
    return 0
