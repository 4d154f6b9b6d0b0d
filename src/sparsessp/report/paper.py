"""The paper's own numbers, to print beside ours: its tables as CSV in ``../shared/paper/tables``.

The folder sits beside the repository (``<repo>/../shared/paper/tables``); an installed package or a
checkout without it simply has no paper columns (:func:`tables_dir` returns None and reports say so).
Columns ``X_rK`` hold metric X at sparse ratio K; Table 7 lists rows per structure with ``allencell_name``,
the structure names sparsessp uses.
"""

from __future__ import annotations

import csv
from pathlib import Path

PaperMetrics = dict[int, dict[str, float]]
"""Sparse ratio -> {metric: value}."""


def tables_dir() -> Path | None:
    """``<repo>/../shared/paper/tables`` when this package runs from a checkout that has it, else None."""
    repo = Path(__file__).resolve().parents[3]
    folder = repo.parent / "shared" / "paper" / "tables"
    return folder if folder.is_dir() else None


def _read(folder: Path | None, file: str) -> list[dict[str, str]] | None:
    if folder is None or not (folder / file).is_file():
        return None
    with open(folder / file, newline="") as fh:
        return list(csv.DictReader(fh))


def metric_table(
    folder: Path | None, file: str, columns: tuple[str, ...]
) -> dict[tuple[str, ...], PaperMetrics] | None:
    """A ratio-grouped table (Tables 1, 2, 3, 5): row labels (``columns``) -> ratio -> metric -> value.

    None when the file is absent.
    """
    rows = _read(folder, file)
    if rows is None:
        return None
    out: dict[tuple[str, ...], PaperMetrics] = {}
    for row in rows:
        per: PaperMetrics = {}
        for key, text in row.items():
            metric, sep, ratio = key.rpartition("_r")
            if sep and ratio.isdigit() and text:
                per.setdefault(int(ratio), {})[metric] = float(text)
        out[tuple(row[c] for c in columns)] = per
    return out


def resource_table(
    folder: Path | None, file: str = "table6_resources.csv"
) -> dict[tuple[str, str], dict[str, float]] | None:
    """Table 6: (approach, topology) -> {column: value}; None when absent."""
    rows = _read(folder, file)
    if rows is None:
        return None
    return {(r["approach"], r["topology"]): {k: float(v) for k, v in r.items() if k not in ("approach", "topology")}
            for r in rows}


def structure_table(
    folder: Path | None, file: str = "table7_structures.csv"
) -> dict[tuple[str, int], dict[str, dict[str, float]]] | None:
    """Table 7: (method, ratio) -> structure (our name; ``All`` for the overall row) -> metric -> value."""
    rows = _read(folder, file)
    if rows is None:
        return None
    out: dict[tuple[str, int], dict[str, dict[str, float]]] = {}
    for r in rows:
        name = r["allencell_name"] or r["structure"]
        out.setdefault((r["method"], int(r["ratio"])), {})[name] = {k: float(r[k]) for k in ("MSE", "MAE", "R2")}
    return out
