"""`sparsessp ablate`: train and evaluate a grid of configurations with one budget each; one results table.

Variants are the ``--config`` files (each one variant), or a named ``--grid`` (the paper's tables: ``table1``
... ``table7``, ``fig4``) / ``--axis`` products laid over one base config (default: the packaged quickstart
config, SynthCell-12 on the CPU); ``--ratios`` runs each at the given sparse ratios. Results are laid out
as the paper's tables, with its numbers beside ours when ``../shared/paper/tables`` is beside the repository.
``--minutes``, ``--steps`` and ``--epochs`` set every variant's budget. Running the same command again continues an
interrupted ablation (see :mod:`sparsessp.ablation`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "train + evaluate a grid of configs (paper tables, --axis products) with a budget each; one results table"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from sparsessp.grids import GRIDS

    parser.add_argument("--config", type=Path, nargs="+", action="extend", default=[], metavar="FILE",
                        help="config file(s): each is one variant, or the one base of --grid / --axis "
                             "(a shell glob works: --config configs/cpu/design/*.yaml)")
    parser.add_argument("--grid", choices=list(GRIDS),
                        help="a named grid over the base config: the paper's table1|table2|table3|table5|table7|fig4, "
                             "or topologies|methods|backbones|sparsity")
    parser.add_argument("--ratios", metavar="R1,R2,...",
                        help="sparse ratios to run every variant at (default: the grid's own, e.g. 2,4,8 for table1)")
    parser.add_argument("--axis", action="append", default=[], metavar="KEY=[V1,V2,...]",
                        help="vary KEY over a YAML list; several --axis make a product, e.g. data.sparse_ratio=[2,4,8]")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override applied to every variant (repeatable)")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder for runs/, results and report/")
    parser.add_argument("--runs", type=Path, default=None, metavar="DIR",
                        help="run folders (default OUT/runs); ablations sharing one train their common cells once")
    parser.add_argument("--minutes", type=float, default=None, metavar="M", help="training budget per variant, minutes")
    parser.add_argument("--steps", type=int, default=None, metavar="N", help="training budget per variant, steps")
    parser.add_argument("--epochs", type=int, default=None, metavar="E", help="training budget per variant, epochs")
    parser.add_argument("--jobs", type=int, default=1, metavar="N",
                        help="variants trained at the same time (processes; they share the CPU cores or one GPU)")
    parser.add_argument("--no-report", action="store_true", help="skip report/ (tables and MIP panels of every run)")


def _budget_overrides(args: argparse.Namespace) -> list[str]:
    from sparsessp.errors import ConfigError

    out = []
    budgets = (
        ("--minutes", "train.max_minutes", args.minutes),
        ("--steps", "train.max_steps", args.steps),
        ("--epochs", "train.epochs", args.epochs),
    )
    for flag, key, value in budgets:
        if value is None:
            continue
        if not value > 0:
            raise ConfigError(f"{flag} must be positive, got {value}")
        out.append(f"{key}={value}")
    return out


def run(args: argparse.Namespace) -> int:
    from sparsessp.ablation import print_table, run_ablation, variants_from
    from sparsessp.cli.quickstart import quickstart_config
    from sparsessp.config import load_config
    from sparsessp.engine.trainer import Interrupted
    from sparsessp.errors import ConfigError
    from sparsessp.grids import GRIDS, axes_grid, parse_axes, parse_ratios
    from sparsessp.report.paper import tables_dir

    if args.jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {args.jobs}")
    if args.grid and args.axis:
        raise ConfigError("give --grid or --axis, not both")
    overrides = [*args.overrides, *_budget_overrides(args)]
    if args.config:
        configs = [(path.stem, load_config(path, overrides)) for path in args.config]
    else:
        configs = [("quickstart", quickstart_config(overrides))]
    grid = GRIDS[args.grid] if args.grid else axes_grid(parse_axes(args.axis)) if args.axis else None
    ratios = parse_ratios(args.ratios) if args.ratios else None
    variants = variants_from(configs, grid, ratios)
    print(f"ablation: {len(variants)} variant(s) -> {args.out}", flush=True)
    try:
        results = run_ablation(variants, args.out, jobs=args.jobs, report=not args.no_report, grid=grid,
                               runs=args.runs, paper_dir=tables_dir())
    except Interrupted as exc:
        if exc.rank == 0:
            print(f"{exc}\nrun the same command again to continue the ablation", file=sys.stderr)
        return exc.exit_code
    print()
    print_table(results)
    print()
    failed = sum(r["status"].startswith("failed") for r in results)
    if failed:
        print(f"{failed} of {len(results)} variant(s) failed; see the status column", file=sys.stderr)
    print(f"results: {args.out / 'results.json'}")
    return 1 if failed else 0
