"""`sparsessp quickstart`: SynthCell-12 -> train a small model on the CPU -> evaluate -> report, in one command.

The settings are the packaged ``configs/quickstart.yaml`` (a 2D model over the whole depth with TSNs
conditioning, sparse ratio 4) with
``--set`` overrides; ``--data`` and ``--minutes`` replace ``data.root`` and ``train.max_minutes``. The
dataset is simulated only when ``data.root`` does not already hold SynthCell-12 made with the same options
(its ``synthcell.json``); a folder holding another dataset (a manifest but no ``synthcell.json``) is used
as it is. The run folder must not hold a run yet.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

HELP = "simulate SynthCell-12, train a small multi-structure model for a few minutes, evaluate and report"

CONFIG_RESOURCE = "configs/quickstart.yaml"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help="run folder to create (default: runs/quickstart, or runs/quickstart-N if taken)")
    parser.add_argument("--data", type=Path, default=None, metavar="DIR",
                        help="dataset folder; SynthCell-12 is made there unless already present "
                             "(default: data.root of the quickstart config)")
    parser.add_argument("--minutes", type=float, default=None, metavar="M",
                        help="training time budget in minutes (default: the quickstart config's)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a key of the quickstart config, e.g. --set train.max_steps=50 (repeatable)")


def quickstart_config(overrides: list[str]) -> Any:
    """The packaged quickstart config with ``overrides`` applied."""
    from importlib.resources import files

    import yaml

    from sparsessp.config import config_from_dict

    text = (files("sparsessp") / CONFIG_RESOURCE).read_text()
    return config_from_dict(yaml.safe_load(text) or {}, overrides)


def _holds_run(folder: Path) -> bool:
    from sparsessp.engine.runfolder import RunFolder

    return RunFolder(folder).last.is_file() or RunFolder(folder).best.is_file()


def _free_run_folder(base: Path) -> Path:
    """``base``, or ``base-2``, ``base-3``, ... : the first that holds no run, so a second quickstart just works."""
    candidate, n = base, 1
    while _holds_run(candidate):
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


def stopped_early(cfg: Any, run_dir: Path) -> str:
    """A plain sentence when the wall-clock cap stopped training before its step budget, else ''."""
    from sparsessp.engine.checkpoint import load_checkpoint
    from sparsessp.engine.runfolder import RunFolder

    last = RunFolder(run_dir).last
    if not cfg.train.max_steps or not cfg.train.max_minutes or not last.is_file():
        return ""
    step = int(load_checkpoint(last).get("step", 0))
    if step >= cfg.train.max_steps:
        return ""
    return (f"training was stopped early by the {cfg.train.max_minutes:g}-minute wall-clock cap at step {step} of "
            f"{cfg.train.max_steps} (a busy or slow machine), so the results are below what the full run reaches; "
            f"rerun with a larger --minutes to train all {cfg.train.max_steps} steps")


def add_report_note(report_md: Path, note: str) -> None:
    """Put ``note`` at the top of the report (report.md and report.html beside it)."""
    import html

    from sparsessp.fileio import atomic_write_text

    text = report_md.read_text()
    head, _, rest = text.partition("\n")
    atomic_write_text(report_md, f"{head}\n\n> **Note:** {note}\n{rest}")
    page = report_md.with_suffix(".html")
    if page.is_file():
        body = page.read_text()
        tag = body.find("<body>")
        if tag >= 0:
            cut = tag + len("<body>")
            body = f"{body[:cut]}\n<p><strong>Note:</strong> {html.escape(note)}</p>{body[cut:]}"
            atomic_write_text(page, body)


def run(args: argparse.Namespace) -> int:
    import time

    from sparsessp.data.synthcell import ensure_dataset
    from sparsessp.engine.trainer import Interrupted, quiet_lightning, train
    from sparsessp.errors import UserError
    from sparsessp.evaluation import evaluate_run
    from sparsessp.report import build_report

    overrides = list(args.overrides)
    if args.data is not None:
        overrides.append(f"data.root={args.data}")
    if args.minutes is not None:
        if not args.minutes > 0:
            raise UserError(f"--minutes must be positive, got {args.minutes}")
        overrides.append(f"train.max_minutes={args.minutes}")
    cfg = quickstart_config(overrides)
    out = Path(args.out) if args.out is not None else _free_run_folder(Path("runs/quickstart"))
    if _holds_run(out):
        raise UserError(f"{out} already holds a run; choose another --out (or remove that folder)")

    started = time.perf_counter()
    print(f"[1/4] data: {', '.join(cfg.data.structures)} ({len(cfg.data.structures)} structures)", flush=True)
    print(f"      {ensure_dataset(cfg)}", flush=True)
    minutes = cfg.train.max_minutes
    print(f"[2/4] training a {cfg.model.topology} / {cfg.model.conditioning} model, sparse ratio "
          f"{cfg.data.sparse_ratio}" + (f", for up to {minutes:g} min" if minutes else "") + f" -> {out}", flush=True)
    quiet_lightning()
    try:
        train(cfg, out)
    except Interrupted as exc:
        if exc.rank == 0:
            print(exc, file=sys.stderr)
        return exc.exit_code
    cut = stopped_early(cfg, out)
    if cut:
        print(f"      {cut}", flush=True)
    print("[3/4] evaluating on the test split (Gaussian sliding window)", flush=True)
    result = evaluate_run(out)  # best.ckpt: the trainer always leaves one
    print("[4/4] writing the report", flush=True)
    report = build_report([out], out / "report")
    if cut:
        add_report_note(report, cut)
    print()
    print(result.table)
    print()
    if cut:
        print(f"NOTE: {cut}")
        print()
    print(f"run folder: {out}  (config.yaml, log.txt, metrics.csv, checkpoints/)")
    print(f"report: {report}  (and report.html, MIP panels)")
    print(f"total time: {time.perf_counter() - started:.0f} s")
    print(f"results: {result.metrics_file}")
    return 0
