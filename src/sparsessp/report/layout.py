"""Ablation results laid out as the paper's tables: its rows, a column group per sparse ratio with MSE, MAE
and R2 (the best of each column in bold), the paper's own numbers beside ours; Table 7 per structure with
the relative improvement over Multi-Net at r = 1; R2 against r as a plot (the paper's Fig. 4).

Input: the result rows of :mod:`sparsessp.ablation` (``labels``, ``extra``, ``ratio``, ``overall``,
``per_structure``); every number of ours comes from the runs' ``metrics.json`` through them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sparsessp.grids import Grid
from sparsessp.metrics import LOWER_IS_BETTER, improvement, relative_improvement
from sparsessp.report import paper
from sparsessp.report.document import Document
from sparsessp.report.figures import save_line_panels

TABLE_METRICS = ("MSE", "MAE", "R2")
"""The paper's three metrics, in its column order."""
BASELINE_METHOD = "Multi-Net"
"""Table 7's baseline row (label of the ``method`` column), trained at r = 1."""

Result = Mapping[str, Any]


def _key(row: Result) -> tuple[str, ...]:
    """A table row's identity: its labels, then its extra changes (e.g. ``seed=1``) as one more label."""
    extra = ", ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in (row.get("extra") or {}).items())
    return (*row.get("labels", {}).values(), *([extra] if extra else []))


def _fmt(value: float | None) -> str:
    return "—" if value is None or math.isnan(value) else f"{value:.4f}"


def _best(values: Sequence[float | None], metric: str) -> float | None:
    finite = [v for v in values if v is not None and not math.isnan(v)]
    if not finite:
        return None
    return min(finite) if metric in LOWER_IS_BETTER else max(finite)


def _bold_best(columns: list[list[float | None]], metrics: Sequence[str]) -> list[list[str]]:
    """Format columns of numbers (one metric each, cycling through ``metrics``), the best of each in bold."""
    out = []
    for i, column in enumerate(columns):
        best = _best(column, metrics[i % len(metrics)])
        out.append([f"**{_fmt(v)}**" if v is not None and v == best else _fmt(v) for v in column])
    return out


def _evaluated(rows: Sequence[Result]) -> list[Result]:
    return [r for r in rows if r.get("overall")]


def ratio_table(
    rows: Sequence[Result], grid: Grid, paper_rows: Mapping[tuple[str, ...], paper.PaperMetrics] | None,
    metrics: Sequence[str] = TABLE_METRICS,
) -> tuple[list[tuple[str, int]], list[str], list[list[str]]]:
    """(header groups, headers, body) of a table with one row per label set and a column group per ratio.

    Each group holds ours (``metrics``) and, where ``paper_rows`` has the row and ratio, the paper's.
    """
    done = _evaluated(rows)
    keys = list(dict.fromkeys(_key(r) for r in rows))
    ratios = sorted({r["ratio"] for r in rows})
    ours = {(_key(r), r["ratio"]): r["overall"] for r in done}
    width = max((len(k) for k in keys), default=0)
    label_columns = list(grid.columns) + ["variant"] * (width - len(grid.columns))
    paper_ratios = {ratio for per in (paper_rows or {}).values() for ratio in per}
    columns: list[list[float | None]] = []
    groups: list[tuple[str, int]] = [("", len(label_columns))]
    headers = list(label_columns)
    for ratio in ratios:
        with_paper = ratio in paper_ratios
        groups.append((f"r = {ratio}", len(metrics) * (2 if with_paper else 1)))
        headers += list(metrics)
        for m in metrics:
            columns.append([_num((ours.get((k, ratio)) or {}).get(m)) for k in keys])
        if with_paper:
            headers += [f"paper {m}" for m in metrics]
            for m in metrics:
                columns.append([_num(((paper_rows or {}).get(k[: len(grid.columns)]) or {}).get(ratio, {}).get(m))
                                for k in keys])
    formatted = _bold_best(columns, list(metrics))
    body = [[*k, *([""] * (width - len(k))), *(col[i] for col in formatted)] for i, k in enumerate(keys)]
    return groups, headers, body


def _num(value: Any) -> float | None:
    return None if value is None else float(value)


def structure_table(
    rows: Sequence[Result], paper_rows: Mapping[tuple[str, int], Mapping[str, Mapping[str, float]]] | None,
) -> tuple[list[tuple[str, int]], list[str], list[list[str]], str]:
    """Table 7: one row per structure plus ``All`` and the improvement over Multi-Net (r = 1), a column group per
    variant (ours and, where the paper lists it, the paper's). In each row, our best value of each metric
    across the variants is bold. Returns groups, headers, body and a note."""
    done = _evaluated(rows)
    structures = list(dict.fromkeys(name for r in done for name in r.get("per_structure", {})))
    baseline = next((r for r in done if r["labels"].get("method") == BASELINE_METHOD and r["ratio"] == 1), None)
    note = "Δ: relative improvement (%) over Multi-Net at r = 1 from the overall metrics (positive = better)."
    if baseline is None:
        note += " No evaluated Multi-Net r = 1 run: Δ is not available."
    paper_base = (paper_rows or {}).get((BASELINE_METHOD, 1), {}).get("All")
    groups: list[tuple[str, int]] = [("", 1)]
    headers = ["structure"]
    columns: list[tuple[str, bool, list[float | None]]] = []  # (metric, ours?, values per structure + All + Δ)
    for r in done:
        theirs = (paper_rows or {}).get((r["labels"].get("method", r["name"]), r["ratio"]))
        groups.append((f"{' '.join(_key(r))} (r = {r['ratio']})", len(TABLE_METRICS) * (2 if theirs else 1)))
        gains = improvement(r, baseline)["overall"] if baseline is not None else {}
        headers += list(TABLE_METRICS)
        for m in TABLE_METRICS:
            per = [_num((r["per_structure"].get(s) or {}).get(m)) for s in structures]
            columns.append((m, True, [*per, _num(r["overall"].get(m)), gains.get(m)]))
        if theirs:
            headers += [f"paper {m}" for m in TABLE_METRICS]
            for m in TABLE_METRICS:
                all_value = _num((theirs.get("All") or {}).get(m))
                gain = (relative_improvement(all_value, paper_base[m], m)
                        if paper_base is not None and all_value is not None else None)
                per = [_num((theirs.get(s) or {}).get(m)) for s in structures]
                columns.append((m, False, [*per, all_value, gain]))
    body = []
    for i, name in enumerate([*structures, "All"]):
        best = {m: _best([v[i] for mm, o, v in columns if o and mm == m], m) for m in TABLE_METRICS}
        body.append([name, *(f"**{_fmt(v[i])}**" if o and v[i] is not None and v[i] == best[m] else _fmt(v[i])
                             for m, o, v in columns)])
    body.append(["Δ over Multi-Net r = 1 (%)", *(_fmt(v[-1]) for _, _, v in columns)])
    return groups, headers, body, note


def _series_style(name: str) -> dict[str, object]:
    """The paper's Fig. 4 colours: 3-to-2D blue, 3D orange; others from matplotlib's cycle."""
    if "3-to-2D" in name:
        return {"color": "tab:blue"}
    if name.endswith(" 3D") or name == "3D":
        return {"color": "tab:orange"}
    return {}


def r2_plot(rows: Sequence[Result], path: Path, paper_rows: Mapping[tuple[str, ...], paper.PaperMetrics] | None,
            grid: Grid) -> Path:
    """R2 against the sparse ratio, one line per table row: ours, and the paper's beside where it has them."""
    ours: dict[str, tuple[list[float], list[float]]] = {}
    for r in _evaluated(rows):
        xs, ys = ours.setdefault(" ".join(_key(r)) or "base", ([], []))
        xs.append(float(r["ratio"]))
        ys.append(float(r["overall"]["R2"]))
    panels = [("ours", ours)]
    if paper_rows:
        theirs: dict[str, tuple[list[float], list[float]]] = {}
        for key in dict.fromkeys(tuple(_key(r)[: len(grid.columns)]) for r in rows):
            per = paper_rows.get(key)
            if per:
                ratios = sorted(per)
                theirs[" ".join(key)] = ([float(x) for x in ratios], [per[x]["R2"] for x in ratios])
        panels.append(("paper (AllenCell; Table 3 values)" if grid.paper_csv == "table3_topologies.csv"
                       else "paper (AllenCell)", theirs))
    styles = {name: {**_series_style(name), "linestyle": "-" if i % 2 == 0 else "--"}
              for panel in panels for i, name in enumerate(panel[1])}
    return save_line_panels(path, panels, "sparse ratio r", "R2 (overall)", styles=styles,
                            title="R2 against the sparse ratio")


def _status_lines(rows: Sequence[Result]) -> list[list[str]]:
    return [[r["name"], r["status"], "" if r.get("steps") is None else str(r["steps"]),
             "" if r.get("train_s") is None else f"{r['train_s']:.0f}"] for r in rows]


def results_document(rows: Sequence[Result], grid: Grid, out: Path, paper_dir: Path | None) -> Document:
    """The ablation's results as the paper lays out ``grid`` (plots written into ``out``)."""
    doc = Document()
    doc.heading(1, f"{grid.title} — results (test split)")
    doc.para("Overall metrics from each run's `metrics.json` (its `overall`); the best value of each column in bold.")
    if grid.paper_csv and paper_dir is None:
        doc.para("The paper's numbers are not shown: `../shared/paper/tables` is not beside this repository.")
    elif grid.paper_csv:
        doc.para(f"Columns `paper …`: the paper's numbers on AllenCell ({grid.paper_csv}).")
    if grid.name == "table7":
        groups, headers, body, note = structure_table(rows, paper.structure_table(paper_dir))
        doc.table(headers, body, groups)
        doc.para(note)
    else:
        paper_rows = (paper.metric_table(paper_dir, grid.paper_csv, grid.columns)
                      if grid.paper_csv and grid.name != "table6" else None)
        metrics = ("R2",) if grid.name == "fig4" else TABLE_METRICS
        groups, headers, body = ratio_table(rows, grid, paper_rows, metrics)
        doc.table(headers, body, groups)
        if len({r["ratio"] for r in _evaluated(rows)}) > 1:
            plot = r2_plot(rows, out / "r2_vs_ratio.png", paper_rows, grid)
            doc.image(plot, "R2 against the sparse ratio")
    doc.heading(2, "Runs")
    doc.table(["variant", "status", "steps", "train s"], _status_lines(rows))
    return doc
