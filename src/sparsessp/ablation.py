"""Ablations: train and evaluate a set of configurations with one budget each, and collect one table.

Each variant gets a run folder ``OUT/runs/<folder>``. A variant whose folder already holds its evaluated
run (same configuration, same budget) is reused; one with ``last.ckpt`` is resumed (``check_same_model``
refuses a different model) and evaluated again; so running an interrupted or extended ablation again
continues where it stopped. Every variant is validated and every dataset checked before any training.

Results, rewritten after each variant so a long grid never loses finished work: ``OUT/results.json``
(one entry per variant: what it changes, status, steps, training seconds, test metrics overall and R2 per
structure), ``results.csv``, ``results.md``, ``r2.png`` (mean test R2 per variant) and, at the end,
``OUT/report/`` (`sparsessp report` of every evaluated run: tables, R2 against sparsity, MIP panels).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import redirect_stderr
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import yaml

from sparsessp.config import Config, differences
from sparsessp.errors import ConfigError, InputError, UserError
from sparsessp.fileio import atomic_write_text
from sparsessp.grids import Grid

METRICS = ("MSE", "MAE", "R2", "pearson")

RESUMABLE_KEYS = frozenset(
    {
        "train.epochs", "train.max_steps", "train.max_minutes", "train.val_every", "train.checkpoint_every",
        "train.devices", "train.accelerator", "train.num_nodes", "train.strategy", "data.num_workers",
    }
)
"""Keys a run may change between invocations and still be continued: budgets and launch options."""


@dataclass
class Variant:
    """One configuration of an ablation.

    ``changes`` are the keys it sets over the base (empty for a config file), ``labels`` what a table calls it
    (a grid's label columns; the paper's words for the paper's tables) and ``extra`` changes beyond its grid's
    (e.g. a second seed). ``folder`` is its run folder's name (default: the name, made path-safe).
    """

    name: str
    config: Config
    changes: dict[str, Any] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    folder: str = ""

    def __post_init__(self) -> None:
        if not self.folder:
            self.folder = re.sub(r"[^A-Za-z0-9._=-]+", "-", self.name).strip("-") or "variant"


def check_variants(variants: Sequence[Variant]) -> None:
    """Refuse an empty set, clashing run folders, and datasets that are neither present nor SynthCell-made."""
    from sparsessp.data.manifest import has_manifest

    if not variants:
        raise ConfigError("no variants: give config files, --grid or --axis")
    seen: dict[str, str] = {}
    for v in variants:
        if v.folder in seen:
            raise ConfigError(f"variants {seen[v.folder]!r} and {v.name!r} would share the run folder {v.folder!r}")
        seen[v.folder] = v.name
        root = Path(v.config.data.root)
        if v.config.data.synthcell is None and not has_manifest(root):
            raise InputError(f"variant {v.name}: data.root {root} holds no dataset manifest")


def run_variant(variant: Variant, run_dir: Path, device: str | None = None) -> dict[str, Any]:
    """Train (or resume, or reuse) one variant's run and evaluate it on the test split; returns its result row."""
    from sparsessp.engine.runfolder import RunFolder
    from sparsessp.engine.trainer import quiet_lightning, train
    from sparsessp.evaluation import evaluate_run, metrics_path

    folder = RunFolder(run_dir)
    wanted = variant.config.model_dump(mode="json")
    saved = yaml.safe_load(folder.config_path.read_text()) if folder.config_path.is_file() else None
    changed = differences(saved, wanted) if saved is not None else None
    if changed and (folder.last.is_file() or folder.best.is_file()):
        fixed = [k for k in changed if k not in RESUMABLE_KEYS]
        if fixed:
            raise UserError(
                f"{run_dir} holds a run of another configuration ({fixed[0]} differs); use another --out"
            )
    result_file = metrics_path(run_dir)
    if changed == [] and result_file.is_file():
        status = "reused"
    else:
        quiet_lightning()
        resume = folder.last.is_file()
        train(variant.config, run_dir, resume=resume)
        evaluate_run(run_dir, with_ssim=False, device=device, progress=lambda message: None)
        status = "resumed" if resume else "trained"
    result = json.loads(result_file.read_text())
    last = (folder.read_metrics() or [{}])[-1]
    steps = int(last["step"]) if last.get("step") else None
    seconds = float(last["seconds"]) if last.get("seconds") else None
    per = {name: float(values["R2"]) for name, values in result["per_structure"].items()}
    return {
        **_identity(variant),
        "status": status,
        "steps": steps,
        "train_s": seconds,
        "overall": {k: float(result["overall"][k]) for k in METRICS},
        "R2_positive": sum(v > 0 for v in per.values()),
        "structures": len(per),
        "per_structure_R2": per,
        "per_structure": {name: {k: _float(v.get(k)) for k in METRICS} for name, v in result["per_structure"].items()},
        **({"per_structure_mean": {k: _float(result["per_structure_mean"].get(k)) for k in METRICS}}
           if "per_structure_mean" in result else {}),
    }


def _float(value: Any) -> float | None:
    """A metrics.json number (None stays None: an undefined metric)."""
    return None if value is None else float(value)


def _identity(variant: Variant) -> dict[str, Any]:
    """The fields of a result row that say which variant it is."""
    return {"name": variant.name, "folder": variant.folder, "changes": variant.changes, "labels": variant.labels,
            "extra": variant.extra, "ratio": variant.config.data.sparse_ratio, "seed": variant.config.train.seed}


def stop_when_orphaned(parent: int, poll_s: float = 1.0) -> None:
    """SIGTERM this process once ``parent`` is no longer its parent (the ablation was killed).

    The trainer answers SIGTERM by saving ``last.ckpt`` and stopping, so a killed ``ablate --jobs`` leaves no
    worker training on, and running the ablation again resumes where each worker stopped.
    """

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="orphan-watch", daemon=True).start()


def _worker(variant: dict[str, Any], run_dir: str, threads: int) -> dict[str, Any]:
    """Process-pool entry: rebuild the variant from plain data and run it with ``threads`` CPU threads.

    The worker's console output (progress bar, log lines, warnings) goes to ``<run folder>.log`` beside the
    run folder, so parallel runs do not interleave on the terminal; the run's own ``log.txt`` is unchanged.
    """
    import torch

    stop_when_orphaned(os.getppid())
    torch.set_num_threads(threads)
    with open(f"{run_dir}.log", "a") as console, redirect_stderr(console):
        tree = variant.pop("config")
        return run_variant(Variant(config=Config.model_validate(tree), **variant), Path(run_dir))


def _plain_fields(variant: Variant) -> dict[str, Any]:
    """The variant's fields but its config (which travels to a worker as a JSON tree)."""
    return {f.name: getattr(variant, f.name) for f in dataclasses.fields(variant) if f.name != "config"}


def _failed(variant: Variant, exc: BaseException) -> dict[str, Any]:
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return {**_identity(variant), "status": f"failed: {reason}"}


def _changes_text(changes: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in changes.items()) or "(config file)"


def _number(value: float | None, fmt: str) -> str:
    return "" if value is None else format(value, fmt)


def results_table(rows: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Headers and text rows of the results table (one row per variant)."""
    headers = ["variant", "changes", "status", "steps", "train s", *METRICS, "R2 > 0"]
    body = []
    for row in rows:
        overall = row.get("overall") or {}
        body.append([
            row["name"], _changes_text(row["changes"]), row["status"], _number(row.get("steps"), "d"),
            _number(row.get("train_s"), ".1f"), *(_number(overall.get(k), ".4f") for k in METRICS),
            f"{row['R2_positive']} / {row['structures']}" if "R2_positive" in row else "",
        ])
    return headers, body


FILES_GRID = Grid("files", "Ablation", ("config",), ())
"""The layout of variants given as config files: one table row per file."""


def write_results(out: Path, rows: Sequence[Mapping[str, Any]], grid: Grid | None = None,
                  paper_dir: Path | None = None) -> Path:
    """Write results.json / .csv, r2.png and results.md / .html (laid out as ``grid``, the paper's numbers from
    ``paper_dir`` beside ours) for the rows so far; returns results.json."""
    from sparsessp.report.figures import save_bar_plot
    from sparsessp.report.layout import results_document

    out.mkdir(parents=True, exist_ok=True)
    headers, body = results_table(rows)
    atomic_write_text(out / "results.json", json.dumps(list(rows), indent=1) + "\n")
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(headers)
    writer.writerows(body)
    atomic_write_text(out / "results.csv", text.getvalue())
    doc = results_document(rows, grid or FILES_GRID, out, paper_dir)
    scored = {row["name"]: row["overall"]["R2"] for row in rows if row.get("overall")}
    if scored:
        plot = save_bar_plot(out / "r2.png", scored, "test R2 (overall)", title="Ablation: test R2 per variant")
        doc.image(plot, "test R2 per variant")
    doc.heading(2, "All results")
    doc.table(headers, body)
    md, page = doc.render((grid or FILES_GRID).title)
    atomic_write_text(out / "results.html", page)
    atomic_write_text(out / "results.md", md)
    return out / "results.json"


def run_ablation(
    variants: Sequence[Variant],
    out: str | Path,
    jobs: int = 1,
    report: bool = True,
    progress: Callable[[str], None] = lambda message: print(message, flush=True),
    grid: Grid | None = None,
    runs: str | Path | None = None,
    paper_dir: Path | None = None,
) -> list[dict[str, Any]]:
    """Run every variant into ``runs`` (default ``out/runs``; ``jobs`` at a time), writing the results after each
    (laid out as ``grid``: see :func:`write_results`); returns the rows.

    Ablations that share one ``runs`` folder train an experiment they have in common once (the paper's grids
    give identical cells identical folders). A variant that fails (bad data, a model that does not fit) is
    recorded as failed and the others go on; an interruption (SIGINT / SIGTERM) stops the ablation after the
    running variants saved their state.
    """
    from sparsessp.data.synthcell import ensure_dataset
    from sparsessp.engine.trainer import Interrupted

    check_variants(variants)
    out = Path(out)
    runs = Path(runs) if runs is not None else out / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    done_roots: set[str] = set()
    for v in variants:
        if v.config.data.synthcell is not None and v.config.data.root not in done_roots:
            progress(ensure_dataset(v.config))
            done_roots.add(v.config.data.root)
    rows: list[dict[str, Any] | None] = [None] * len(variants)
    total = len(variants)

    def record(index: int, row: dict[str, Any]) -> None:
        rows[index] = row
        overall = row.get("overall")
        outcome = (f"test R2 {overall['R2']:.4f} ({row['R2_positive']}/{row['structures']} above 0), "
                   f"{row['steps']} steps, {row['train_s']:.0f} s" if overall else "")
        progress(f"[{sum(r is not None for r in rows)}/{total}] {row['name']}: {row['status']} {outcome}".rstrip())
        write_results(out, [r for r in rows if r is not None], grid, paper_dir)

    if jobs <= 1:
        for i, v in enumerate(variants):
            progress(f"training {v.name} -> {runs / v.folder}")
            try:
                record(i, run_variant(v, runs / v.folder))
            except Interrupted:
                raise
            except Exception as exc:  # one variant's failure is a row of the table; the others go on
                record(i, _failed(v, exc))
    else:
        threads = max(1, (os.cpu_count() or 1) // jobs)
        with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
            futures = {
                pool.submit(_worker, {**_plain_fields(v), "config": v.config.model_dump(mode="json")},
                            str(runs / v.folder), threads): i
                for i, v in enumerate(variants)
            }
            for future in as_completed(futures):
                i = futures[future]
                try:
                    record(i, future.result())
                except Interrupted:
                    raise
                except Exception as exc:  # pickled back from the worker
                    record(i, _failed(variants[i], exc))
    finished = [r for r in rows if r is not None]
    if report:
        from sparsessp.report import build_report

        evaluated = [runs / r["folder"] for r in finished if r.get("overall")]
        if evaluated:
            path = build_report(evaluated, out / "report")
            progress(f"report: {path}")
    return finished


def variants_from(
    configs: Sequence[tuple[str, Config]], grid: Grid | None = None, ratios: Sequence[int] | None = None
) -> list[Variant]:
    """Variants from named configs (each at every ratio of ``ratios``, if given), or the cells of ``grid`` over
    one base config (at ``ratios`` instead of the grid's own, if given)."""
    from sparsessp.config import config_from_dict
    from sparsessp.grids import cell_config, cells

    if grid is None:
        out = []
        for name, cfg in configs:
            for ratio in ratios or [None]:
                if ratio is None:
                    out.append(Variant(name, cfg, labels={"config": name}))
                    continue
                changes = {"data.sparse_ratio": ratio}
                try:
                    at_ratio = config_from_dict(cfg.model_dump(mode="json"), [f"data.sparse_ratio={ratio}"])
                except ConfigError as exc:
                    raise ConfigError(f"{name}/r{ratio}: {exc}") from None
                out.append(Variant(f"{name}/r{ratio}", at_ratio, changes, labels={"config": name}))
        return out
    if len(configs) != 1:
        raise ConfigError(f"a grid varies one base config; got {len(configs)} configs")
    base = configs[0][1]
    return [Variant(c.name, cell_config(base, c), c.all_changes, c.labels, c.extra, c.folder)
            for c in cells(grid, ratios)]


def print_table(rows: Sequence[Mapping[str, Any]], stream: Any = None) -> None:
    """The results table as Markdown on ``stream`` (stdout by default)."""
    from sparsessp.report.tables import markdown_table

    print(markdown_table(*results_table(rows)), file=stream or sys.stdout)
