"""Reports of evaluated runs: Markdown and HTML tables plus PNG panels, every number read from the run's files.

Per run it reads ``config.yaml``, ``metrics.json``, and from ``evaluation/<split>/`` the per-volume
``volumes.csv`` (volume counts, SSIM), ``improvement.json`` (if evaluated against a baseline) and
``mips.npz`` (max-intensity projections for the panels). Writes ``report.md``, ``report.html``,
``<run>_mips.png`` per run and, when the runs span several sparse ratios, ``r2_vs_sparsity.png``.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sparsessp.errors import UserError
from sparsessp.fileio import atomic_write_text
from sparsessp.report.document import Document
from sparsessp.report.figures import save_line_plot, save_mip_panel

METRIC_KEYS: tuple[str, ...] = ("MSE", "MAE", "R2", "pearson")
MIP_COLUMNS: tuple[tuple[str, str], ...] = (("tl", "TL"), ("prediction", "prediction"), ("truth", "truth"))


@dataclass
class RunResults:
    """The evaluation files of one run folder."""

    name: str
    path: Path
    config: dict[str, Any]
    metrics: dict[str, Any]
    volumes: list[dict[str, str]] = field(default_factory=list)
    improvement: dict[str, Any] | None = None
    mips: dict[str, np.ndarray] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def setting(self, section: str, key: str) -> str:
        """A config value as text (``?`` when the run has no config)."""
        value = (self.config.get(section) or {}).get(key)
        return "?" if value is None else str(value)

    def structures(self) -> list[str]:
        return list(self.metrics["per_structure"])

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for row in self.volumes:
            out[row["structure"]] = out.get(row["structure"], 0) + 1
        return out

    def ssim(self) -> tuple[dict[str, float], float]:
        """Mean SSIM per structure and over all volumes (as ``overall``), from ``volumes.csv`` (NaN where absent)."""
        groups: dict[str, list[float]] = {}
        for row in self.volumes:
            value = _number(row.get("SSIM"))
            if not math.isnan(value):
                groups.setdefault(row["structure"], []).append(value)
        per = {name: float(np.mean(v)) for name, v in groups.items()}
        every = [v for values in groups.values() for v in values]
        return per, float(np.mean(every)) if every else float("nan")


def _number(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return float("nan")


def _fmt(value: object) -> str:
    number = _number(value)
    return "n/a" if math.isnan(number) else f"{number:.4f}"


def load_run(run_dir: str | Path, split: str = "test") -> RunResults:
    """Read one evaluated run; a run without ``metrics.json`` is a one-line :class:`UserError`."""
    import yaml

    from sparsessp.evaluation import evaluation_dir, metrics_path, read_metrics

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run folder not found: {run_dir}")
    metrics = read_metrics(metrics_path(run_dir, split))
    config: dict[str, Any] = {}
    if (run_dir / "config.yaml").is_file():
        loaded = yaml.safe_load((run_dir / "config.yaml").read_text())
        config = loaded if isinstance(loaded, dict) else {}
    ev = evaluation_dir(run_dir, split)
    volumes: list[dict[str, str]] = []
    if (ev / "volumes.csv").is_file():
        with open(ev / "volumes.csv", newline="") as fh:
            volumes = list(csv.DictReader(fh))
    gains = json.loads((ev / "improvement.json").read_text()) if (ev / "improvement.json").is_file() else None
    info = json.loads((ev / "info.json").read_text()) if (ev / "info.json").is_file() else {}
    mips: dict[str, np.ndarray] = {}
    if (ev / "mips.npz").is_file():
        with np.load(ev / "mips.npz", allow_pickle=False) as data:
            mips = {k: data[k] for k in data.files}
    name = run_dir.resolve().name
    return RunResults(name, run_dir, config, metrics, volumes, gains, mips, info)


def _unique_names(runs: Sequence[RunResults]) -> None:
    seen: dict[str, int] = {}
    for run in runs:
        count = seen.get(run.name, 0)
        seen[run.name] = count + 1
        if count:
            run.name = f"{run.name}-{count + 1}"


def mip_rows(run: RunResults) -> list[tuple[str, list[tuple[str, np.ndarray, np.ndarray]]]]:
    """Panel rows (one per structure with projections) from a run's ``mips.npz``."""
    from sparsessp.evaluation import mip_key

    rows = []
    for structure in run.structures():
        cols = [
            (title, run.mips[mip_key(structure, kind, "xy")], run.mips[mip_key(structure, kind, "xz")])
            for kind, title in MIP_COLUMNS
            if mip_key(structure, kind, "xy") in run.mips and mip_key(structure, kind, "xz") in run.mips
        ]
        if cols:
            rows.append((structure, cols))
    return rows


def _run_section(doc: Document, run: RunResults, out_dir: Path) -> None:
    doc.heading(2, run.name)
    doc.para(
        f"Folder `{run.path}`; topology {run.setting('model', 'topology')}, conditioning "
        f"{run.setting('model', 'conditioning')}, interpolation {run.setting('model', 'interpolation')}, "
        f"sparse ratio {run.setting('data', 'sparse_ratio')}"
        + (f"; checkpoint `{run.info['checkpoint']}`" if run.info.get("checkpoint") else "") + "."
    )
    counts = run.counts()
    ssim_ps, ssim_all = run.ssim()
    rows = [
        [name, str(counts.get(name, "?")), *(_fmt(vals.get(k)) for k in METRIC_KEYS), _fmt(ssim_ps.get(name))]
        for name, vals in run.metrics["per_structure"].items()
    ]
    overall = run.metrics["overall"]
    rows.append(["**all volumes** (overall, paper)", str(sum(counts.values()) or "?"),
                 *(_fmt(overall.get(k)) for k in METRIC_KEYS), _fmt(ssim_all)])
    if "per_structure_mean" in run.metrics:
        rows.append(["**mean over structures**", str(sum(counts.values()) or "?"),
                     *(_fmt(run.metrics["per_structure_mean"].get(k)) for k in METRIC_KEYS),
                     _fmt(np.mean(list(ssim_ps.values())) if ssim_ps else None)])
    doc.table(["structure", "volumes", *METRIC_KEYS, "SSIM"], rows)
    if run.improvement:
        doc.para(f"Relative improvement (%) over the Multi-Net baseline `{run.improvement.get('baseline', '?')}` "
                 "(positive = better; MSE/MAE: (base - x) / base, R2/pearson: (x - base) / base):")
        keys = [k for k in METRIC_KEYS if k in run.improvement.get("overall", {})]
        gain_rows = [[name, *(_fmt(v.get(k)) for k in keys)]
                     for name, v in run.improvement.get("per_structure", {}).items()]
        gain_rows.append(["**all volumes** (overall, paper)", *(_fmt(run.improvement["overall"].get(k)) for k in keys)])
        doc.table(["structure", *(f"Δ{k} %" for k in keys)], gain_rows)
    rows_mip = mip_rows(run)
    if rows_mip:
        file = save_mip_panel(out_dir / f"{run.name}_mips.png", rows_mip,
                              title=f"{run.name}: max-intensity projections (z-scores)")
        doc.image(file, f"{run.name}: TL, prediction and truth")


def build_report(run_dirs: Sequence[str | Path], out_dir: str | Path, split: str = "test") -> Path:
    """Write ``report.md`` / ``report.html`` and the PNGs for evaluated runs into ``out_dir``; returns report.md."""
    if not run_dirs:
        raise UserError("give at least one run folder")
    runs = [load_run(r, split) for r in run_dirs]
    _unique_names(runs)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = Document()
    doc.heading(1, "sparsessp report")
    doc.para(f"Split `{split}`. Every number below is read from the runs' `metrics.json` and "
             "`evaluation/` files; predictions and targets are z-scores.")
    doc.heading(2, "Overall (means over all volumes, as the paper's \"All\")")
    summary = []
    for run in runs:
        _, ssim_all = run.ssim()
        summary.append([run.name, run.setting("model", "topology"), run.setting("model", "conditioning"),
                        run.setting("data", "sparse_ratio"), str(len(run.volumes) or "?"),
                        *(_fmt(run.metrics["overall"].get(k)) for k in METRIC_KEYS), _fmt(ssim_all)])
    doc.table(["run", "topology", "conditioning", "r", "volumes", *METRIC_KEYS, "SSIM"], summary)
    ratios = {run.setting("data", "sparse_ratio") for run in runs} - {"?"}
    if len(ratios) > 1:
        series: dict[str, tuple[list[float], list[float]]] = {}
        for run in runs:
            if run.setting("data", "sparse_ratio") == "?":
                continue
            label = f"{run.setting('model', 'topology')} / {run.setting('model', 'conditioning')}"
            xs, ys = series.setdefault(label, ([], []))
            xs.append(float(run.setting("data", "sparse_ratio")))
            ys.append(_number(run.metrics["overall"].get("R2")))
        plot = save_line_plot(out_dir / "r2_vs_sparsity.png", series, "sparse ratio r", "R2 (mean over all volumes)",
                              title="R2 against sparsity")
        doc.image(plot, "R2 against sparse ratio")
    for run in runs:
        _run_section(doc, run, out_dir)
    md, page = doc.render("sparsessp report")
    atomic_write_text(out_dir / "report.html", page)
    atomic_write_text(out_dir / "report.md", md)
    return out_dir / "report.md"
