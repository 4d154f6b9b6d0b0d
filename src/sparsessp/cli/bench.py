"""`sparsessp bench`: parameters, MACs, training and inference memory and speed of configurations (Table 6)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "params, MACs, train it/s + memory, inference s/volume + memory of configs (Table 6), on CPU or GPU"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from sparsessp.grids import GRIDS

    parser.add_argument("--config", type=Path, nargs="+", action="extend", default=[], metavar="FILE",
                        help="config file(s); with --grid, the first is the base")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override applied to every config (repeatable)")
    parser.add_argument("--grid", choices=list(GRIDS),
                        help="measure a named grid of variations of the (first) config; table6 is the paper's")
    parser.add_argument("--ratios", metavar="R1,R2,...", help="sparse ratios to measure every config at")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--json", action="store_true", help="print a JSON list on stdout (table goes to stderr)")
    parser.add_argument("--no-timing", action="store_true", help="skip memory and timing (params and MACs only)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats after one warm-up (median)")


def run(args: argparse.Namespace) -> int:
    import dataclasses
    import sys

    from sparsessp.bench import format_table, paper_rows, run_bench
    from sparsessp.config import load_config
    from sparsessp.errors import UserError
    from sparsessp.grids import GRIDS, cell_configs, cells, parse_ratios
    from sparsessp.report.paper import tables_dir

    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise UserError("--device cuda: no CUDA device is available here")
    paths = args.config or [None]
    ratios = parse_ratios(args.ratios) if args.ratios else None
    paper = None
    if args.grid:
        grid_cells = cells(GRIDS[args.grid], ratios)
        configs = cell_configs(load_config(paths[0], args.overrides), grid_cells)
        if args.grid == "table6":
            paper = paper_rows(grid_cells, tables_dir())
    else:
        configs = [(Path(p).stem if p else "default", load_config(p, args.overrides)) for p in paths]
        if ratios:
            configs = [(f"{name}/r{r}", load_config(p, [*args.overrides, f"data.sparse_ratio={r}"]))
                       for (name, _), p in zip(configs, paths) for r in ratios]
    results = run_bench(configs, device=args.device, timing=not args.no_timing, repeats=args.repeats)
    table = format_table(results, paper)
    if args.json:
        print(table, file=sys.stderr)
        print(json.dumps([dataclasses.asdict(r) for r in results], indent=1))
    else:
        print(table)
    return 0
