"""Per-volume metrics (MSE, MAE, R2, Pearson r, SSIM) and the paper's relative improvement over Multi-Net.

MSE, MAE and R2 follow the released evaluation: over all voxels of one volume, with the (z-scored)
target as the reference, R2 = 1 - SS_res / SS_tot as in sklearn's ``r2_score`` on flattened arrays.

Aggregation (:func:`aggregate`): the ``overall`` figure is the mean over all test VOLUMES, as the paper's
"All" row (Table 7) and both releases compute it, so a structure with more volumes weighs more; the mean
of the per-structure means (each structure counts once) is kept beside it as ``per_structure_mean``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

CORE_METRICS: tuple[str, ...] = ("MSE", "MAE", "R2", "pearson")
"""The keys of ``metrics.json``'s entries."""

LOWER_IS_BETTER: frozenset[str] = frozenset({"MSE", "MAE"})

SSIM_WINDOW = 11
"""Edge length of the SSIM Gaussian window (MONAI's and the SSIM paper's default)."""


def _pair(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(pred, dtype=np.float64).ravel()
    t = np.asarray(target, dtype=np.float64).ravel()
    if p.shape != t.shape:
        raise ValueError(f"prediction and target differ in size: {np.shape(pred)} vs {np.shape(target)}")
    if p.size == 0:
        raise ValueError("empty volume")
    return p, t


def mse(pred: np.ndarray, target: np.ndarray) -> float:
    """Mean squared error over all voxels."""
    p, t = _pair(pred, target)
    return float(np.mean((p - t) ** 2))


def mae(pred: np.ndarray, target: np.ndarray) -> float:
    """Mean absolute error over all voxels."""
    p, t = _pair(pred, target)
    return float(np.mean(np.abs(p - t)))


def r2(pred: np.ndarray, target: np.ndarray) -> float:
    """Coefficient of determination with ``target`` as truth (sklearn ``r2_score`` on flattened voxels).

    A constant target gives 1.0 for a perfect prediction and 0.0 otherwise, as sklearn does.
    """
    p, t = _pair(pred, target)
    ss_res = float(np.sum((t - p) ** 2))
    ss_tot = float(np.sum((t - t.mean()) ** 2))
    if ss_tot == 0.0:
        return 1.0 if ss_res == 0.0 else 0.0
    return 1.0 - ss_res / ss_tot


def pearson(pred: np.ndarray, target: np.ndarray) -> float:
    """Pearson correlation over all voxels; NaN when either volume is constant."""
    p, t = _pair(pred, target)
    pc, tc = p - p.mean(), t - t.mean()
    denom = math.sqrt(float(np.sum(pc * pc)) * float(np.sum(tc * tc)))
    return float(np.sum(pc * tc) / denom) if denom > 0 else float("nan")


def _gaussian_1d(size: int, sigma: float) -> np.ndarray:
    dist = np.arange((1 - size) / 2, (1 + size) / 2, 1.0)
    gauss = np.exp(-((dist / sigma) ** 2) / 2)
    return gauss / gauss.sum()


def ssim(pred: np.ndarray, target: np.ndarray, win_size: int = SSIM_WINDOW, sigma: float = 1.5) -> float:
    """Mean 3D SSIM with a Gaussian window (size 11, sigma 1.5, k1 0.01, k2 0.03), data range = target's range.

    The same quantity as MONAI's ``SSIMMetric(spatial_dims=3, data_range=...)`` (valid windows only, mean
    over them), computed with a separable filter so large volumes stay cheap and MONAI need not be imported.
    Axes shorter than the window use the largest odd window that fits; NaN for a constant target.
    """
    import torch
    from torch.nn import functional as F

    p = np.asarray(pred, dtype=np.float32)
    t = np.asarray(target, dtype=np.float32)
    if p.shape != t.shape or p.ndim != 3:
        raise ValueError(f"SSIM needs two 3D volumes of one shape, got {p.shape} and {t.shape}")
    data_range = float(t.max() - t.min())
    if data_range == 0.0:
        return float("nan")
    sizes = [min(win_size, s if s % 2 else s - 1) for s in t.shape]
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2

    def blur(x: torch.Tensor) -> torch.Tensor:
        for axis, size in enumerate(sizes):
            shape = [1, 1, 1, 1, 1]
            shape[2 + axis] = size
            kernel = torch.from_numpy(_gaussian_1d(size, sigma).astype(np.float32)).view(shape)
            x = F.conv3d(x, kernel)
        return x

    with torch.no_grad():
        x = torch.tensor(p)[None, None]
        y = torch.tensor(t)[None, None]
        mu_x, mu_y = blur(x), blur(y)
        sigma_x = blur(x * x) - mu_x * mu_x
        sigma_y = blur(y * y) - mu_y * mu_y
        sigma_xy = blur(x * y) - mu_x * mu_y
        contrast = (2 * sigma_xy + c2) / (sigma_x + sigma_y + c2)
        value = ((2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1)) * contrast
    return float(value.double().mean())


def volume_metrics(pred: np.ndarray, target: np.ndarray, with_ssim: bool = True) -> dict[str, float]:
    """All metrics of one predicted volume against its target (``SSIM`` only when ``with_ssim``)."""
    out = {"MSE": mse(pred, target), "MAE": mae(pred, target), "R2": r2(pred, target), "pearson": pearson(pred, target)}
    if with_ssim:
        out["SSIM"] = ssim(pred, target)
    return out


def _nanmean(values: Iterable[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else float("nan")


OVERALL_KEYS: tuple[str, ...] = ("overall", "per_structure_mean")
"""The two means of ``metrics.json``: over all volumes (the paper's) and over structures."""


def aggregate(
    rows: Sequence[Mapping[str, object]], keys: Sequence[str] = CORE_METRICS
) -> dict[str, dict[str, Any]]:
    """The ``metrics.json`` payload of per-volume ``rows`` (each with ``structure`` and the metric ``keys``).

    ``overall``: mean over all volumes (the paper's "All" row); ``per_structure``: mean over each
    structure's volumes, structures in first-seen order; ``per_structure_mean``: mean of those (each
    structure counts once). NaN values are left out of a mean.
    """
    groups: dict[str, list[Mapping[str, object]]] = {}
    for row in rows:
        groups.setdefault(str(row["structure"]), []).append(row)
    per_structure = {
        name: {k: _nanmean(float(r[k]) for r in members) for k in keys}  # type: ignore[arg-type]
        for name, members in groups.items()
    }
    return {
        "overall": {k: _nanmean(float(r[k]) for r in rows) for k in keys},  # type: ignore[arg-type]
        "per_structure_mean": {k: _nanmean(v[k] for v in per_structure.values()) for k in keys},
        "per_structure": per_structure,
    }


def relative_improvement(value: float, baseline: float, metric: str) -> float:
    """The paper's (and RepMode's) relative improvement over Multi-Net in percent, positive = better.

    ``100 * (baseline - value) / baseline`` for MSE and MAE, ``100 * (value - baseline) / baseline`` for
    R2 and Pearson r. The paper applies it to its "All" rows (the means over all volumes), e.g. MSE 0.4995
    against the Multi-Net's 0.5341 gives 6.4782 % (its Table 7, r = 2). NaN when the baseline is 0.
    """
    if baseline == 0 or math.isnan(baseline) or math.isnan(value):
        return float("nan")
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    return 100.0 * sign * (value - baseline) / abs(baseline)


def improvement(metrics: Mapping[str, Any], baseline: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Relative improvement of two results of the ``metrics.json`` shape, same layout.

    Returns ``{"overall": {metric: %}, "per_structure": {name: {metric: %}}}`` over the structures both
    results have and the metrics both hold, plus ``per_structure_mean`` when both results have one; the
    paper's figure is ``overall`` (means over all volumes). A JSON null (undefined metric) gives NaN.
    """
    def num(value: float | None) -> float:
        return float("nan") if value is None else float(value)

    def one(ours: Mapping[str, float], base: Mapping[str, float]) -> dict[str, float]:
        return {k: relative_improvement(num(ours[k]), num(base[k]), k) for k in ours if k in base}

    ours_ps = metrics.get("per_structure", {})
    base_ps = baseline.get("per_structure", {})
    out = {
        "overall": one(metrics["overall"], baseline["overall"]),
        "per_structure": {name: one(ours_ps[name], base_ps[name]) for name in ours_ps if name in base_ps},
    }
    if "per_structure_mean" in metrics and "per_structure_mean" in baseline:
        out["per_structure_mean"] = one(metrics["per_structure_mean"], baseline["per_structure_mean"])
    return out
