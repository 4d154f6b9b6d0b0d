"""`sparsessp bench`: parameters, MACs, peak memory and speed of configurations (the paper's Table 6)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "parameters, MACs, peak memory, train it/s and inference s/volume of configs, on CPU or GPU"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from sparsessp.grids import GRIDS

    parser.add_argument("--config", type=Path, action="append", default=[], help="config file (repeatable)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override applied to every config (repeatable)")
    parser.add_argument("--grid", choices=list(GRIDS),
                        help="measure a named grid of variations of the (first) config")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--json", action="store_true", help="print a JSON list on stdout (table goes to stderr)")
    parser.add_argument("--no-timing", action="store_true", help="skip memory and timing (params and MACs only)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats after one warm-up (median)")


def run(args: argparse.Namespace) -> int:
    import dataclasses
    import sys

    from sparsessp.bench import format_table, run_bench
    from sparsessp.config import load_config
    from sparsessp.errors import UserError
    from sparsessp.grids import grid_configs

    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise UserError("--device cuda: no CUDA device is available here")
    paths = args.config or [None]
    if args.grid:
        configs = grid_configs(load_config(paths[0], args.overrides), args.grid)
    else:
        configs = [(Path(p).stem if p else "default", load_config(p, args.overrides)) for p in paths]
    results = run_bench(configs, device=args.device, timing=not args.no_timing, repeats=args.repeats)
    table = format_table(results)
    if args.json:
        print(table, file=sys.stderr)
        print(json.dumps([dataclasses.asdict(r) for r in results], indent=1))
    else:
        print(table)
    return 0
