"""Metrics: the released MSE / MAE / R2 on the shared fixture, Pearson, SSIM, aggregation, improvement."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from sparsessp import metrics as M

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "official"


def test_metrics_match_released_fixture() -> None:
    if not (FIXTURES / "metrics.io.pth").is_file():
        pytest.skip(f"shared fixtures not found at {FIXTURES}")
    import torch

    data = torch.load(FIXTURES / "metrics.io.pth", weights_only=True)
    expected = json.loads((FIXTURES / "MANIFEST.json").read_text())["metrics"]
    pred, target = data["pred"].numpy(), data["target"].numpy()
    got = M.volume_metrics(pred, target, with_ssim=False)
    for key in ("MSE", "MAE", "R2"):
        assert math.isclose(got[key], expected[key], rel_tol=1e-5), (key, got[key], expected[key])


def test_r2_is_sklearn_style_and_asymmetric() -> None:
    rng = np.random.default_rng(0)
    t = rng.normal(size=(4, 5, 6))
    p = t * 0.5 + rng.normal(size=t.shape) * 0.1
    ss_res = ((t - p) ** 2).sum()
    ss_tot = ((t - t.mean()) ** 2).sum()
    assert math.isclose(M.r2(p, t), 1 - ss_res / ss_tot, rel_tol=1e-12)
    assert not math.isclose(M.r2(p, t), M.r2(t, p))
    assert M.r2(t, t) == 1.0
    assert M.r2(np.zeros(3), np.ones(3)) == 0.0 and M.r2(np.ones(3), np.ones(3)) == 1.0
    assert math.isclose(M.pearson(p, t), float(np.corrcoef(p.ravel(), t.ravel())[0, 1]), rel_tol=1e-12)
    assert math.isnan(M.pearson(np.ones(5), np.arange(5.0)))
    with pytest.raises(ValueError, match="differ"):
        M.mse(np.zeros(3), np.zeros(4))


def test_ssim_perfect_and_small_volumes() -> None:
    rng = np.random.default_rng(1)
    t = rng.normal(size=(12, 16, 16)).astype(np.float32)
    assert math.isclose(M.ssim(t, t), 1.0, rel_tol=1e-5)
    assert M.ssim(t + rng.normal(size=t.shape).astype(np.float32), t) < 0.9
    small = rng.normal(size=(3, 4, 20)).astype(np.float32)  # axes shorter than the 11-voxel window
    assert math.isclose(M.ssim(small, small), 1.0, rel_tol=1e-5)
    assert math.isnan(M.ssim(small, np.zeros_like(small)))


@pytest.mark.slow
def test_ssim_equals_monai_ssim_metric() -> None:
    import torch
    from monai.metrics import SSIMMetric

    rng = np.random.default_rng(2)
    t = rng.normal(size=(14, 20, 18)).astype(np.float32)
    p = (t * 0.7 + rng.normal(size=t.shape) * 0.5).astype(np.float32)
    ref = SSIMMetric(spatial_dims=3, data_range=float(t.max() - t.min()))(torch.from_numpy(p)[None, None],
                                                                          torch.from_numpy(t)[None, None])
    assert math.isclose(M.ssim(p, t), float(ref.mean()), rel_tol=1e-4)


def test_aggregate_means_per_structure_then_over_structures() -> None:
    rows = [
        {"structure": "a", "MSE": 1.0, "MAE": 1.0, "R2": 0.0, "pearson": 0.1},
        {"structure": "a", "MSE": 3.0, "MAE": 1.0, "R2": 0.5, "pearson": float("nan")},
        {"structure": "b", "MSE": 8.0, "MAE": 2.0, "R2": 1.0, "pearson": 0.3},
    ]
    overall, per = M.aggregate(rows)
    assert per["a"] == {"MSE": 2.0, "MAE": 1.0, "R2": 0.25, "pearson": 0.1}
    assert overall["MSE"] == 5.0 and overall["R2"] == 0.625 and math.isclose(overall["pearson"], 0.2)
    assert list(per) == ["a", "b"]


def test_relative_improvement_reproduces_paper_table7() -> None:
    # Table 7, Tgnet-3-to-2D r = 8 vs Multi-Net (means over structures): Δimp -0.8425 / 0.8901 / -1.037 %
    assert math.isclose(M.relative_improvement(0.5386, 0.5341, "MSE"), -0.8425, abs_tol=1e-4)
    assert math.isclose(M.relative_improvement(0.4231, 0.4269, "MAE"), 0.8901, abs_tol=1e-4)
    assert math.isclose(M.relative_improvement(0.4292, 0.4337, "R2"), -1.037, abs_tol=1e-3)
    ours = {"overall": {"MSE": 0.5, "R2": 0.6}, "per_structure": {"a": {"MSE": 0.5, "R2": 0.6}}}
    base = {"overall": {"MSE": 1.0, "R2": 0.5}, "per_structure": {"a": {"MSE": 1.0, "R2": None}, "b": {}}}
    gains = M.improvement(ours, base)
    assert gains["overall"] == {"MSE": 50.0, "R2": pytest.approx(20.0)}
    assert list(gains["per_structure"]) == ["a"] and math.isnan(gains["per_structure"]["a"]["R2"])
