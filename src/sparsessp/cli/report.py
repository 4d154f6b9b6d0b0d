"""`sparsessp report`: Markdown/HTML report with metric tables and MIP panels of evaluated runs."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "Markdown/HTML report of evaluated runs: metric tables, R2-vs-sparsity plot, MIP panels"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", type=Path, nargs="+", metavar="RUN_DIR", help="evaluated run folders")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder for report.md/.html and PNGs")
    parser.add_argument("--split", default="test", choices=["train", "val", "test"], help="evaluated split to show")


def run(args: argparse.Namespace) -> int:
    from sparsessp.report import build_report

    path = build_report(args.runs, args.out, split=args.split)
    print(f"report: {path}")
    print(f"html: {path.with_suffix('.html')}")
    return 0
