"""Entry point: dispatches to one module per command, importing only the command that runs.

Each command module defines ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``.
A :class:`~sparsessp.errors.UserError` anywhere becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from importlib import import_module

from sparsessp import __version__
from sparsessp.errors import UserError

COMMANDS: dict[str, str] = {
    "quickstart": "sparsessp.cli.quickstart",
    "simulate": "sparsessp.cli.simulate",
    "prepare": "sparsessp.cli.prepare",
    "train": "sparsessp.cli.train",
    "evaluate": "sparsessp.cli.evaluate",
    "predict": "sparsessp.cli.predict",
    "export": "sparsessp.cli.export",
    "bench": "sparsessp.cli.bench",
    "ablate": "sparsessp.cli.ablate",
    "report": "sparsessp.cli.report",
    "import-weights": "sparsessp.cli.import_weights",
}


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sparsessp",
        description="Predict 3D fluorescence from sparse-view transmitted-light z-stacks.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="commands:\n"
        + "\n".join(f"  {name:<15} {import_module(mod).HELP}" for name, mod in COMMANDS.items())
        + "\n\n`sparsessp COMMAND --help` shows a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"sparsessp {__version__}")
    parser.add_argument("command", choices=list(COMMANDS), metavar="COMMAND")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        _top_parser().parse_args(argv or ["--help"])
        return 2
    name, rest = argv[0], argv[1:]
    module = import_module(COMMANDS[name])
    parser = argparse.ArgumentParser(prog=f"sparsessp {name}", description=module.HELP)
    module.add_arguments(parser)
    args = parser.parse_args(rest)
    try:
        return int(module.run(args) or 0)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
