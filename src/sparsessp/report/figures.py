"""PNG figures with matplotlib's Agg backend: max-intensity-projection panels, line plots and bar charts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType

import numpy as np

from sparsessp.fileio import atomic_path

Column = tuple[str, np.ndarray, np.ndarray]
"""(title, XY projection (Y, X), XZ projection (Z, X))."""

Row = tuple[str, Sequence[Column]]
"""(row label, columns); all columns of a row share one contrast."""

_PANEL_WIDTH = 2.6
"""Width of one image column, inches; heights follow from the images' pixel counts."""
_GAP, _ROW_GAP, _LEFT, _MARGIN = 0.06, 0.12, 0.3, 0.1
_LABEL_SPACE, _TITLE_SPACE = 0.22, 0.45
"""Room in inches for each row's axes titles and for the figure title."""


def _pyplot() -> ModuleType:
    """matplotlib.pyplot on the non-interactive Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def row_contrast(images: Sequence[np.ndarray], low: float = 0.5, high: float = 99.8) -> tuple[float, float]:
    """Display range shared by a row: percentiles of all its finite pixels."""
    values = np.concatenate([np.asarray(im, dtype=np.float64).ravel() for im in images])
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 1.0
    vmin, vmax = (float(v) for v in np.percentile(values, [low, high]))
    return (vmin, vmin + 1.0) if vmax <= vmin else (vmin, vmax)


def save_mip_panel(path: str | Path, rows: Sequence[Row], title: str | None = None) -> Path:
    """Write a panel: per row the XY projections above the XZ projections, one column per image.

    Pixels are square (the 0.29 um grid is isotropic), so XZ panels show the true axial extent. Axes are
    placed in inches, so the figure is exactly as tall as its images and labels (no blank bands).
    """
    plt = _pyplot()
    ncols = max(len(cols) for _, cols in rows)
    widths = float(max(c[1].shape[1] for _, cols in rows for c in cols))
    scale = _PANEL_WIDTH / widths
    heights = [(cols[0][1].shape[0] * scale, max(cols[0][2].shape[0], 4) * scale) for _, cols in rows]
    head = _TITLE_SPACE if title else _MARGIN
    fig_w = _LEFT + ncols * _PANEL_WIDTH + (ncols - 1) * _GAP + _MARGIN
    fig_h = head + sum(_LABEL_SPACE + hxy + _GAP + hxz + _ROW_GAP for hxy, hxz in heights)
    fig = plt.figure(figsize=(fig_w, fig_h))

    def axes(x: float, y: float, w: float, h: float) -> object:
        """Axes at (x, y) inches from the top-left corner, w x h inches."""
        return fig.add_axes((x / fig_w, 1.0 - (y + h) / fig_h, w / fig_w, h / fig_h))

    top = head
    for (label, cols), (hxy, hxz) in zip(rows, heights):
        vmin, vmax = row_contrast([im for _, xy, xz in cols for im in (xy, xz)])
        top += _LABEL_SPACE
        for c, (name, xy, xz) in enumerate(cols):
            x = _LEFT + c * (_PANEL_WIDTH + _GAP)
            for image, proj, y, h in ((xy, "XY", top, hxy), (xz, "XZ", top + hxy + _GAP, hxz)):
                ax = axes(x, y, _PANEL_WIDTH, h)
                ax.imshow(image, cmap="gray", vmin=vmin, vmax=vmax, interpolation="nearest", aspect="auto")
                ax.set_xticks([])
                ax.set_yticks([])
                if proj == "XY":
                    ax.set_title(f"{label}: {name}" if c == 0 else name, fontsize=8)
                if c == 0:
                    ax.set_ylabel(proj, fontsize=7)
        top += hxy + _GAP + hxz + _ROW_GAP
    if title:
        fig.suptitle(title, fontsize=10, y=1.0 - 0.1 / fig_h, va="top")
    return _save_png(plt, fig, path)


def save_line_plot(
    path: str | Path, series: Mapping[str, tuple[Sequence[float], Sequence[float]]], xlabel: str, ylabel: str,
    title: str | None = None,
) -> Path:
    """Write a line plot with markers, one line per named series of (x, y) points."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    for name, (xs, ys) in series.items():
        order = np.argsort(np.asarray(xs, dtype=float))
        ax.plot(np.asarray(xs, dtype=float)[order], np.asarray(ys, dtype=float)[order], marker="o", label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    if len(series) > 1:
        ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _save_png(plt, fig, path)


def save_line_panels(
    path: str | Path, panels: Sequence[tuple[str, Mapping[str, tuple[Sequence[float], Sequence[float]]]]],
    xlabel: str, ylabel: str, styles: Mapping[str, Mapping[str, object]] | None = None, title: str | None = None,
) -> Path:
    """Write side-by-side line plots (one per ``(panel title, series)``); ``styles`` gives a series' matplotlib
    keywords (colour, marker, line style) so one series looks the same in every panel."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.6), squeeze=False)
    for ax, (panel_title, series) in zip(axes[0], panels):
        for name, (xs, ys) in series.items():
            x = np.asarray(xs, dtype=float)
            order = np.argsort(x)
            style = {"marker": "o", **(styles or {}).get(name, {})}
            ax.plot(x[order], np.asarray(ys, dtype=float)[order], label=name, **style)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(panel_title, fontsize=9)
        ax.grid(alpha=0.3)
        if series:
            ax.legend(fontsize=6)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save_png(plt, fig, path)


def save_bar_plot(path: str | Path, values: Mapping[str, float], xlabel: str, title: str | None = None) -> Path:
    """Write a horizontal bar chart, one bar per name, in the given order from top to bottom."""
    plt = _pyplot()
    names = list(values)
    fig, ax = plt.subplots(figsize=(5.5, 0.8 + 0.28 * len(names)))
    ax.barh(range(len(names)), [float(values[n]) for n in names], color="tab:blue")
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.invert_yaxis()
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_xlabel(xlabel)
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    return _save_png(plt, fig, path)


def _save_png(plt: ModuleType, fig: object, path: str | Path) -> Path:
    """Write ``fig`` as a PNG atomically and release it."""
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path
