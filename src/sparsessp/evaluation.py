"""Evaluate a run on a split: sliding-window prediction of every volume, metrics, tables and JSON.

For each volume the dense z-scored TL is sparse-sampled (every r-th slice, r = the model's sparse ratio),
predicted with the Gaussian sliding window (:mod:`sparsessp.inference`) and compared with the dense target
after cropping both to their common depth. Files written (all atomically):

- ``RUN_DIR/metrics.json`` (split ``test``; ``metrics_<split>.json`` otherwise), exactly
  ``{"overall": {"MSE", "MAE", "R2", "pearson"}, "per_structure_mean": {same keys},
  "per_structure": {name: {same keys}}}``: ``overall`` is the mean over all volumes (the paper's "All"
  row), ``per_structure_mean`` the mean of the per-structure means (each structure counts once);
- ``RUN_DIR/evaluation/<split>/volumes.csv``: one row per volume (SSIM included);
- ``RUN_DIR/evaluation/<split>/summary.md``: the per-structure table with both means (and the improvement,
  if a baseline);
- ``RUN_DIR/evaluation/<split>/improvement.json``: relative improvement over ``--baseline`` (if given);
- ``RUN_DIR/evaluation/<split>/mips.npz``: XY and XZ max-intensity projections of TL, prediction and
  truth of the first volume of each structure (read by the report);
- ``RUN_DIR/evaluation/<split>/info.json``: checkpoint, sparse ratio, window, inference settings, time.
"""

from __future__ import annotations

import csv
import io
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sparsessp.errors import CheckpointError, InputError, UserError
from sparsessp.fileio import atomic_path, atomic_write_text
from sparsessp.metrics import CORE_METRICS, OVERALL_KEYS, aggregate, improvement, volume_metrics

EXTRA_METRICS: tuple[str, ...] = ("SSIM",)
TABLE_METRICS: tuple[str, ...] = (*CORE_METRICS, *EXTRA_METRICS)
VOLUME_COLUMNS: tuple[str, ...] = ("structure", "source", "depth", "height", "width", *TABLE_METRICS, "seconds")
MIP_KINDS: tuple[str, ...] = ("tl", "prediction", "truth")
MEAN_LABELS: dict[str, str] = {
    "overall": "**all volumes** (overall, paper)",
    "per_structure_mean": "**mean over structures**",
}
"""Row labels of the two means in the summary tables."""


def metrics_path(run_dir: Path, split: str = "test") -> Path:
    """Where the evaluation of ``split`` puts its ``metrics.json``."""
    return Path(run_dir) / ("metrics.json" if split == "test" else f"metrics_{split}.json")


def evaluation_dir(run_dir: Path, split: str = "test") -> Path:
    """The folder of an evaluation's per-volume CSV, table, projections and info."""
    return Path(run_dir) / "evaluation" / split


def checkpoint_path(run_dir: Path, checkpoint: str | Path = "best") -> Path:
    """Resolve ``best`` / ``last`` to the run's checkpoint files; anything else is a path."""
    name = str(checkpoint)
    path = Path(run_dir) / "checkpoints" / f"{name}.ckpt" if name in ("best", "last") else Path(name)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    return path


def mip_key(structure: str, kind: str, projection: str) -> str:
    """Key of one projection in ``mips.npz`` (``projection`` is ``xy`` or ``xz``)."""
    return f"{structure}__{kind}__{projection}"


def projections(volume: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Max-intensity projections of a ``(Z, Y, X)`` volume: XY (over z) and XZ (over y, rows = z)."""
    return volume.max(axis=0), volume.max(axis=1)


@dataclass
class Evaluation:
    """What :func:`evaluate_run` computed and where it wrote it."""

    rows: list[dict[str, Any]]
    overall: dict[str, float]
    per_structure: dict[str, dict[str, float]]
    table: str
    metrics_file: Path
    out_dir: Path
    improvement: dict[str, dict[str, Any]] | None = None
    extra_overall: dict[str, float] = field(default_factory=dict)
    per_structure_mean: dict[str, float] = field(default_factory=dict)


def format_number(value: float) -> str:
    """Four decimals; ``n/a`` for NaN."""
    return "n/a" if value != value else f"{value:.4f}"


def markdown_summary(
    summary: dict[str, Any],
    counts: dict[str, int],
    keys: Sequence[str] = TABLE_METRICS,
    gains: dict[str, dict[str, Any]] | None = None,
) -> str:
    """The per-structure Markdown table of an :func:`~sparsessp.metrics.aggregate` result, then its two means.

    The last rows are the mean over all volumes (``overall``, the paper's "All") and the mean over
    structures (``per_structure_mean``), each labelled, with the improvement % when ``gains`` are given.
    """
    from sparsessp.report.tables import markdown_table

    gain_keys = [k for k in CORE_METRICS if gains and k in gains.get("overall", {})]
    headers = ["structure", "volumes", *keys, *(f"Δ{k} %" for k in gain_keys)]

    def line(name: str, count: str, values: dict[str, float], delta: dict[str, float] | None) -> list[str]:
        row = [name, count, *(format_number(values.get(k, float("nan"))) for k in keys)]
        return row + [format_number((delta or {}).get(k, float("nan"))) for k in gain_keys]

    ps_gains = (gains or {}).get("per_structure", {})
    rows = [line(name, str(counts.get(name, 0)), vals, ps_gains.get(name))
            for name, vals in summary["per_structure"].items()]
    total = str(sum(counts.values()))
    rows += [line(MEAN_LABELS[key], total, summary[key], (gains or {}).get(key)) for key in OVERALL_KEYS]
    return markdown_table(headers, rows)


def evaluate_records(
    model: Any,
    records: Sequence[Any],
    *,
    inference: Any,
    device: str | None = None,
    with_ssim: bool = True,
    progress: Callable[[str], None] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """Predict and score each record; returns per-volume rows and the projections for the report."""
    import torch

    from sparsessp.inference import model_sparse_ratio, model_window, sliding_window, task_id_of

    ratio = model_sparse_ratio(model)
    window = model_window(model)
    rows: list[dict[str, Any]] = []
    mips: dict[str, np.ndarray] = {}
    for i, rec in enumerate(records, 1):
        start = time.perf_counter()
        task = task_id_of(model, rec.structure)
        signal = np.asarray(rec.signal, dtype=np.float32)
        target = np.asarray(rec.target, dtype=np.float32)
        sparse = torch.from_numpy(np.array(signal[::ratio]))[None, None]  # a writable copy, also at r = 1
        pred = sliding_window(
            model, sparse, task, window, ratio,
            overlap=inference.overlap, blend=inference.blend, batch_size=inference.window_batch,
            sigma_scale=inference.sigma_scale, device=device,
        )[0, 0].numpy()
        depth = min(pred.shape[0], target.shape[0])
        pred, target, signal = pred[:depth], target[:depth], signal[:depth]
        values = volume_metrics(pred, target, with_ssim=with_ssim)
        if not with_ssim:
            values["SSIM"] = float("nan")
        seconds = time.perf_counter() - start
        rows.append({
            "structure": rec.structure, "source": str(rec.source), "depth": depth,
            "height": int(target.shape[1]), "width": int(target.shape[2]), **values, "seconds": seconds,
        })
        if mip_key(rec.structure, "truth", "xy") not in mips:
            for kind, vol in zip(MIP_KINDS, (signal, pred, target)):
                mips[mip_key(rec.structure, kind, "xy")], mips[mip_key(rec.structure, kind, "xz")] = projections(vol)
        if progress is not None:
            progress(f"[{i}/{len(records)}] {rec.structure}: MSE {values['MSE']:.4f}  R2 {values['R2']:.4f}  "
                     f"({seconds:.1f} s)")
    return rows, mips


def _rows_csv(rows: Sequence[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(VOLUME_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.8g}" if isinstance(v, float) else v) for k, v in row.items()})
    return buf.getvalue()


def read_metrics(path: Path) -> dict[str, Any]:
    """Read a ``metrics.json``; a missing or malformed file is a one-line :class:`UserError`."""
    if not path.is_file():
        raise UserError(f"no evaluation results at {path}: run `sparsessp evaluate --run {path.parent}` first")
    try:
        data = json.loads(path.read_text())
        if not isinstance(data.get("overall"), dict) or not isinstance(data.get("per_structure"), dict):
            raise ValueError("missing 'overall' or 'per_structure'")
    except (ValueError, AttributeError) as exc:
        raise UserError(f"{path} is not a sparsessp metrics file ({exc})") from None
    return data


def load_checkpoint_model(path: Path) -> Any:
    """:func:`sparsessp.engine.checkpoint.load_model` without torch's pickle-protocol warning on stderr.

    A refused (pickled) file is reported as one line; torch's warning about the protocol would add two.
    """
    import warnings

    from sparsessp.engine.checkpoint import load_model

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
        return load_model(path)


def _json_safe(value: Any) -> Any:
    """NaN (an undefined metric, e.g. Pearson r of a constant prediction) becomes JSON null."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, float) and value != value:
        return None
    return value


def _run_config(run_dir: Path, model: Any, overrides: Sequence[str]) -> Any:
    from sparsessp.config import config_from_dict, load_config

    config_file = run_dir / "config.yaml"
    if config_file.is_file():
        return load_config(config_file, list(overrides))
    return config_from_dict(model.config.model_dump(mode="json"), list(overrides))


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def evaluate_run(
    run_dir: str | Path,
    checkpoint: str | Path = "best",
    split: str = "test",
    baseline: str | Path | None = None,
    overrides: Sequence[str] = (),
    with_ssim: bool = True,
    device: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> Evaluation:
    """Evaluate a run folder's checkpoint on ``split`` and write the result files (see module doc).

    The data come from the run's ``config.yaml`` (or the checkpoint's config) with ``overrides``
    (e.g. ``data.root=...``, ``inference.overlap=0.25``); the model from the checkpoint.
    """
    from sparsessp.data.dataset import load_split
    from sparsessp.inference import prepare_model

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run folder not found: {run_dir}")
    base = read_metrics(metrics_path(Path(baseline), split)) if baseline is not None else None
    ckpt = checkpoint_path(run_dir, checkpoint)
    model = load_checkpoint_model(ckpt)
    cfg = _run_config(run_dir, model, overrides)
    records = load_split(cfg, split)
    if not records:
        raise InputError(f"the {split} split of {cfg.data.root} holds no volumes")
    device = device or _default_device()
    prepare_model(model, device)
    started = time.perf_counter()
    report = progress if progress is not None else (lambda msg: print(msg, file=sys.stderr, flush=True))
    rows, mips = evaluate_records(model, records, inference=cfg.inference, device=device, with_ssim=with_ssim,
                                  progress=report)
    payload = aggregate(rows, CORE_METRICS)
    summary = aggregate(rows, TABLE_METRICS)
    per_structure = payload["per_structure"]
    counts = {name: sum(1 for r in rows if r["structure"] == name) for name in per_structure}
    gains = improvement(payload, base) if base is not None else None

    out_dir = evaluation_dir(run_dir, split)
    out_dir.mkdir(parents=True, exist_ok=True)
    table = markdown_summary(summary, counts, gains=gains)
    atomic_write_text(out_dir / "volumes.csv", _rows_csv(rows))
    atomic_write_text(out_dir / "summary.md", f"# {run_dir.name}: {split} split\n\n{table}\n")
    with atomic_path(out_dir / "mips.npz") as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **mips)
    info = {
        "checkpoint": str(ckpt), "split": split, "volumes": len(rows), "structures": list(per_structure),
        "sparse_ratio": int(getattr(model, "sparse_ratio", cfg.data.sparse_ratio)),
        "window": list(getattr(model, "patch", cfg.data.patch)), "inference": cfg.inference.model_dump(),
        "device": device, "seconds": round(time.perf_counter() - started, 3),
        "baseline": str(baseline) if baseline is not None else None,
    }
    atomic_write_text(out_dir / "info.json", json.dumps(info, indent=1) + "\n")
    if gains is not None:
        gain_doc = _json_safe({"baseline": str(baseline), **gains})
        atomic_write_text(out_dir / "improvement.json", json.dumps(gain_doc, indent=1) + "\n")
    result_file = metrics_path(run_dir, split)
    atomic_write_text(result_file, json.dumps(_json_safe(payload), indent=1) + "\n")
    return Evaluation(rows, payload["overall"], per_structure, table, result_file, out_dir, gains,
                      summary["overall"], payload["per_structure_mean"])
