"""`sparsessp train`: train a model from a YAML config into a run folder (resumable, multi-device).

A config with ``data.synthcell`` describes the SynthCell data it trains on: that data is made under
``data.root`` when missing (as ``quickstart`` does), so ``train --config configs/quickstart.yaml`` works
on a fresh clone.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sparsessp.cli.common import add_config_arguments

HELP = "train a model from a YAML config (+ --set overrides) into a run folder; resumable; --devices for DDP"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--out", type=Path, required=True, metavar="RUN_DIR", help="run folder to create or resume")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue RUN_DIR from checkpoints/last.ckpt (config: --config, else RUN_DIR/config.yaml)",
    )
    parser.add_argument("--devices", type=int, default=None, metavar="N", help="devices (processes) per node")
    parser.add_argument(
        "--accelerator", choices=["cpu", "gpu", "auto"], default=None, help="where to train (default: config)"
    )
    parser.add_argument("--num-nodes", type=int, default=None, metavar="M", help="number of nodes for DDP")
    parser.add_argument("--strategy", choices=["ddp", "ddp_spawn", "auto"], default=None, help="distribution strategy")


def run(args: argparse.Namespace) -> int:
    from sparsessp.config import load_config
    from sparsessp.engine.trainer import Interrupted, quiet_lightning, train

    quiet_lightning()
    config = args.config
    saved = args.out / "config.yaml"
    if config is None and args.resume and saved.is_file():
        config = saved
    cfg = load_config(config, args.overrides)
    if cfg.data.synthcell is not None and not args.resume:
        from sparsessp.data.synthcell import ensure_dataset

        print(ensure_dataset(cfg), flush=True)  # the config describes SynthCell data: make it, as quickstart does
    try:
        train(
            cfg,
            args.out,
            resume=args.resume,
            devices=args.devices,
            accelerator=args.accelerator,
            num_nodes=args.num_nodes,
            strategy=args.strategy,
        )
    except Interrupted as exc:
        if exc.rank == 0:
            print(exc, file=sys.stderr)
        return exc.exit_code
    return 0
