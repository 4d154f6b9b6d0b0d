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


def test_aggregate_overall_is_the_mean_over_volumes() -> None:
    rows = [  # structure a has three volumes, b one: the means over volumes and over structures differ
        {"structure": "a", "MSE": 1.0, "MAE": 1.0, "R2": 0.0, "pearson": 0.1},
        {"structure": "a", "MSE": 3.0, "MAE": 1.0, "R2": 0.5, "pearson": float("nan")},
        {"structure": "a", "MSE": 2.0, "MAE": 4.0, "R2": 0.25, "pearson": 0.4},
        {"structure": "b", "MSE": 8.0, "MAE": 2.0, "R2": 1.0, "pearson": 0.3},
    ]
    result = M.aggregate(rows)
    assert list(result) == ["overall", "per_structure_mean", "per_structure"]
    per = result["per_structure"]
    assert list(per) == ["a", "b"]
    assert per["a"] == {"MSE": 2.0, "MAE": 2.0, "R2": 0.25, "pearson": pytest.approx(0.25)}
    assert result["overall"] == {"MSE": 3.5, "MAE": 2.0, "R2": 0.4375, "pearson": pytest.approx(0.8 / 3)}
    assert result["per_structure_mean"] == {"MSE": 5.0, "MAE": 2.0, "R2": 0.625, "pearson": pytest.approx(0.275)}


def _table7() -> dict[tuple[str, int, str], dict[str, float]]:
    import csv

    path = Path(__file__).resolve().parents[2] / "shared" / "paper" / "tables" / "table7_structures.csv"
    if not path.is_file():
        pytest.skip(f"the paper's tables not found at {path}")
    with open(path) as fh:
        return {(r["method"], int(r["ratio"]), r["structure"]): {k: float(r[k]) for k in ("MSE", "MAE", "R2")}
                for r in csv.DictReader(fh)}


def test_relative_improvement_reproduces_paper_table7_from_its_all_rows() -> None:
    rows = _table7()
    base = rows[("Multi-Net", 1, "All")]
    # Table 7's improvement column (tables/README.md); r = 4 and 8 have their last digits cut in the paper
    printed = {2: {"MSE": 6.4782, "MAE": 3.6543, "R2": 8.2084}, 4: {"MSE": 3.4263, "MAE": 2.4127, "R2": 4.357},
               8: {"MSE": -0.8425, "MAE": 0.8901, "R2": -1.037}}
    for ratio, expected in printed.items():
        ours = rows[("Tgnet-3-to-2D", ratio, "All")]
        for key, value in expected.items():
            got = M.relative_improvement(ours[key], base[key], key)
            assert math.isclose(got, value, abs_tol=1e-3 if ratio == 2 or key != "R2" else 1e-2), (ratio, key, got)
    # through improvement(): the paper's figure is the one of the "All" (per-volume) rows, not of the
    # structure means, which differ from the "All" rows (the paper's structures have unequal volume counts)
    per = {s: v for (m, r, s), v in rows.items() if m == "Multi-Net" and s != "All"}
    ours_per = {s: v for (m, r, s), v in rows.items() if m == "Tgnet-3-to-2D" and r == 2 and s != "All"}
    assert len(per) == len(ours_per) == 12

    def structure_mean(table: dict[str, dict[str, float]]) -> dict[str, float]:
        return {k: float(np.mean([v[k] for v in table.values()])) for k in ("MSE", "MAE", "R2")}

    gains = M.improvement(
        {"overall": rows[("Tgnet-3-to-2D", 2, "All")], "per_structure_mean": structure_mean(ours_per),
         "per_structure": ours_per},
        {"overall": base, "per_structure_mean": structure_mean(per), "per_structure": per},
    )
    for key, value in printed[2].items():
        assert math.isclose(gains["overall"][key], value, abs_tol=5e-4), (key, gains["overall"][key])
    assert abs(gains["per_structure_mean"]["MSE"] - printed[2]["MSE"]) > 0.05
    assert math.isclose(gains["per_structure"]["DNA"]["MSE"], 100 * (0.5806 - 0.4873) / 0.5806, rel_tol=1e-9)


def test_improvement_layout() -> None:
    ours = {"overall": {"MSE": 0.5, "R2": 0.6}, "per_structure": {"a": {"MSE": 0.5, "R2": 0.6}}}
    base = {"overall": {"MSE": 1.0, "R2": 0.5}, "per_structure": {"a": {"MSE": 1.0, "R2": None}, "b": {}}}
    gains = M.improvement(ours, base)
    assert gains["overall"] == {"MSE": 50.0, "R2": pytest.approx(20.0)}
    assert list(gains["per_structure"]) == ["a"] and math.isnan(gains["per_structure"]["a"]["R2"])
    assert "per_structure_mean" not in gains
