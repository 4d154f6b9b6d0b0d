"""`sparsessp evaluate`: sliding-window prediction of a run's test volumes, metrics per volume/structure/overall."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "Gaussian sliding-window evaluation of a run: MSE, MAE, R2, Pearson r (CSV, JSON, Markdown table)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", type=Path, required=True, metavar="RUN_DIR", help="run folder written by train")
    parser.add_argument("--checkpoint", default="best", metavar="best|last|PATH",
                        help="which checkpoint: the run's best (default) or last, or a checkpoint file")
    parser.add_argument("--split", default="test", choices=["train", "val", "test"], help="split to evaluate")
    parser.add_argument("--baseline", type=Path, metavar="RUN",
                        help="an evaluated Multi-Net run: adds the relative improvement over it (paper's Δimp)")
    parser.add_argument("--no-ssim", action="store_true", help="skip SSIM (the slowest metric)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a key of the run's config, e.g. --set data.root=DIR (repeatable)")


def run(args: argparse.Namespace) -> int:
    from sparsessp.errors import UserError
    from sparsessp.evaluation import evaluate_run

    if args.device and args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise UserError("--device cuda: no CUDA device is available here")
    result = evaluate_run(args.run, checkpoint=args.checkpoint, split=args.split, baseline=args.baseline,
                          overrides=args.overrides, with_ssim=not args.no_ssim, device=args.device)
    print(result.table)
    print(f"per-volume metrics: {result.out_dir / 'volumes.csv'}")
    print(f"results: {result.metrics_file}")
    return 0
