"""Sliding-window inference: positions, weighting, equivalence with whole-volume prediction, predict_volume."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sparsessp.errors import InputError
from sparsessp.inference import (
    predict_volume,
    released_weight_map,
    sliding_window,
    to_model_grid,
    weight_map,
    window_starts,
    windows_per_call,
)

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "official"


class Toy(torch.nn.Module):
    """Translation-equivariant stand-in: nearest z up-sampling (as prefix interpolation) and a pointwise map."""

    def __init__(self, ratio: int, patch: tuple[int, int, int] = (8, 16, 16), structures: tuple[str, ...] = ("a", "b")):
        super().__init__()
        self.sparse_ratio = ratio
        self.patch = patch
        self.structures = list(structures)
        self.scale = torch.nn.Parameter(torch.tensor(2.0))
        self.calls: list[int] = []

    def forward(self, x: torch.Tensor, task_ids: torch.Tensor) -> torch.Tensor:
        self.calls.append(int(x.shape[0]))
        up = torch.repeat_interleave(x, self.sparse_ratio, dim=2)
        return torch.tanh(up) * self.scale + task_ids.view(-1, 1, 1, 1, 1).float() * 0.5


def whole(model: Toy, sparse: torch.Tensor, task: int) -> torch.Tensor:
    return model(sparse, torch.tensor([task]))


def test_released_positions_of_the_fixture_volume() -> None:
    # fixture: dense volume 32 x 48 x 56, window 16 x 32 x 32, overlap 0.5, r = 4 (z on the sparse grid 8 / 4)
    assert [4 * s for s in window_starts(8, 4, 0.5)] == [0, 8, 16]
    assert window_starts(48, 32, 0.5) == [0, 16]
    assert window_starts(56, 32, 0.5) == [0, 16, 24]  # the last window clamped to the end
    assert window_starts(32, 32, 0.5) == [0]
    assert window_starts(100, 32, 0.0) == [0, 32, 64, 68]
    assert window_starts(33, 32, 0.99) == [0, 1]
    starts = window_starts(1000, 7, 0.9)
    assert starts[:2] == [0, 1] and starts[-1] == 993 and len(starts) == len(set(starts)) == 994


def test_released_weight_map_values() -> None:
    w = released_weight_map((16, 32, 32))
    assert w.dtype == torch.float32 and w.shape == (16, 32, 32)
    assert float(w.max()) == 1.0 and float(w[8, 16, 16]) == 1.0
    z, y, x = torch.meshgrid(torch.arange(16.0), torch.arange(32.0), torch.arange(32.0), indexing="ij")
    analytic = torch.exp(-((z - 8) ** 2) / (2 * 2.0**2) - ((y - 16) ** 2 + (x - 16) ** 2) / (2 * 4.0**2))
    assert torch.allclose(w, analytic, rtol=1e-4, atol=1e-12)
    assert math.isclose(float(w[0, 16, 16]), math.exp(-8), rel_tol=1e-4)


def test_zero_weights_replaced_by_smallest_nonzero() -> None:
    from scipy.ndimage import gaussian_filter

    delta = np.zeros((16, 16, 16))
    delta[8, 8, 8] = 1
    raw = gaussian_filter(delta, 16 * 0.02, mode="constant")  # sigma 0.32: the truncated kernel leaves zeros
    raw = (raw / raw.max()).astype(np.float32)
    assert (raw == 0).any()
    w = released_weight_map((16, 16, 16), sigma_scale=0.02).numpy()
    smallest = raw[raw > 0].min()
    assert (w > 0).all() and w.min() == smallest
    np.testing.assert_array_equal(w[raw > 0], raw[raw > 0])
    assert (w[raw == 0] == smallest).all()


def test_monai_blend_map_values() -> None:
    w = weight_map((8, 16, 15), "monai")
    z, y, x = torch.meshgrid(torch.arange(8.0), torch.arange(16.0), torch.arange(15.0), indexing="ij")
    analytic = torch.exp(-((z - 3.5) ** 2) / (2 * 1.0**2) - (y - 7.5) ** 2 / (2 * 2.0**2) - (x - 7) ** 2 / 2 / 1.875**2)
    torch.testing.assert_close(w, analytic.clamp(min=1e-3), rtol=1e-5, atol=1e-7)
    assert float(w.min()) == pytest.approx(1e-3) and float(w.max()) < 1.0


@pytest.mark.slow
def test_monai_blend_is_monai_map_on_output_window() -> None:
    from monai.data.utils import compute_importance_map

    for window in [(8, 16, 16), (16, 32, 32), (6, 9, 5)]:
        w = weight_map(window, "monai", sigma_scale=0.125)
        assert torch.equal(w, compute_importance_map(window, mode="gaussian", sigma_scale=0.125))
    assert not torch.allclose(weight_map((8, 16, 16), "monai"), released_weight_map((8, 16, 16)))


@pytest.mark.parametrize("blend", ["released", "monai", "constant"])
@pytest.mark.parametrize(("shape", "ratio", "window"), [
    ((5, 37, 29), 3, (6, 16, 16)),   # odd sizes
    ((3, 16, 16), 2, (4, 16, 16)),   # several z windows, exact fit in xy
    ((1, 7, 5), 4, (8, 16, 16)),     # smaller than the window on every axis
    ((2, 40, 9), 1, (2, 8, 16)),
])
def test_sliding_window_equals_whole_volume(blend: str, shape: tuple[int, int, int], ratio: int,
                                            window: tuple[int, int, int]) -> None:
    torch.manual_seed(0)
    model = Toy(ratio, window)
    sparse = torch.randn(1, 1, *shape)
    out = sliding_window(model, sparse, 1, window, ratio, overlap=0.5, blend=blend, batch_size=3)
    assert out.shape == (1, 1, shape[0] * ratio, shape[1], shape[2])
    torch.testing.assert_close(out, whole(model, sparse, 1), rtol=1e-5, atol=1e-5)


def test_windows_are_batched_and_batch_size_does_not_change_the_result() -> None:
    torch.manual_seed(1)
    model = Toy(2, (4, 8, 8))
    sparse = torch.randn(1, 1, 6, 20, 20)  # starts z (sparse) 0, 1, 2, 3, 4; y and x 0, 4, 8, 12
    one = sliding_window(model, sparse, 0, (4, 8, 8), 2, batch_size=1)
    n_windows = len(model.calls)
    model.calls.clear()
    many = sliding_window(model, sparse, 0, (4, 8, 8), 2, batch_size=5)
    assert max(model.calls) == 5 and sum(model.calls) == n_windows == 5 * 4 * 4
    torch.testing.assert_close(one, many)


def test_windows_per_call_follow_the_window_size() -> None:
    assert windows_per_call((32, 64, 64)) == 16  # the quickstart's window
    assert windows_per_call((32, 128, 128)) == 4  # the paper's patch: the old fixed default
    assert windows_per_call((64, 232, 344)) == 1  # the released full-size window
    assert windows_per_call((4, 8, 8)) == 16  # capped
    assert windows_per_call((32, 64, 64), 3) == 3  # asked for


def test_automatic_windows_per_call_give_the_one_window_result() -> None:
    torch.manual_seed(2)
    model = Toy(2, (4, 8, 8))
    sparse = torch.randn(1, 1, 6, 20, 20)
    one = sliding_window(model, sparse, 1, (4, 8, 8), 2, batch_size=1)
    model.calls.clear()
    auto = sliding_window(model, sparse, 1, (4, 8, 8), 2)
    assert model.calls == [16, 16, 16, 16, 16]  # 80 windows, 16 per call
    torch.testing.assert_close(one, auto, rtol=1e-6, atol=1e-6)


def test_window_depth_must_hold_one_sparse_interval() -> None:
    with pytest.raises(ValueError, match="at most the window depth"):
        sliding_window(Toy(3), torch.zeros(1, 1, 4, 8, 8), 0, (2, 8, 8), 3)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    zs=st.integers(1, 6), ys=st.integers(1, 40), xs=st.integers(1, 40), ratio=st.integers(1, 8),
    k=st.integers(1, 3), h=st.sampled_from([4, 8, 16]), w=st.sampled_from([4, 8, 16]),
    overlap=st.floats(0.0, 0.9), batch=st.integers(1, 6),
)
def test_property_any_shape_any_ratio(zs: int, ys: int, xs: int, ratio: int, k: int, h: int, w: int,
                                      overlap: float, batch: int) -> None:
    window = (ratio * k, h, w)
    model = Toy(ratio, window)
    sparse = torch.randn(1, 1, zs, ys, xs)
    out = sliding_window(model, sparse, 0, window, ratio, overlap=overlap, batch_size=batch)
    assert out.shape == (1, 1, zs * ratio, ys, xs)
    assert bool(torch.isfinite(out).all())
    torch.testing.assert_close(out, whole(model, sparse, 0), rtol=1e-5, atol=1e-5)


def test_to_model_grid_ratios(caplog: pytest.LogCaptureFixture) -> None:
    tl = np.arange(17, dtype=np.float32)[:, None, None] * np.ones((1, 3, 3), np.float32)
    assert to_model_grid(tl, None, 4) is tl
    assert to_model_grid(tl, 1.16, 4) is tl
    np.testing.assert_array_equal(to_model_grid(tl, 0.29, 4)[:, 0, 0], [0, 4, 8, 12, 16])
    np.testing.assert_array_equal(to_model_grid(tl, 0.58, 4)[:, 0, 0], [0, 2, 4, 6, 8, 10, 12, 14, 16])
    with caplog.at_level("WARNING", logger="sparsessp"):
        resampled = to_model_grid(tl, 1.0, 4)  # ratio 3.45: not whole, resampled to 1.16 um
    assert "resampled" in caplog.text
    np.testing.assert_allclose(resampled[:, 0, 0], np.arange(14) * 1.16)
    with caplog.at_level("WARNING", logger="sparsessp"):
        np.testing.assert_allclose(to_model_grid(tl, 0.87, 4)[:, 0, 0], np.arange(13) * 4 / 3, rtol=1e-6)
    with pytest.raises(InputError, match="sparser than the model"):
        to_model_grid(tl, 2.32, 4)
    with pytest.raises(InputError, match="positive"):
        to_model_grid(tl, -1.0, 4)


def test_predict_volume_shapes_and_errors() -> None:
    model = Toy(4, (8, 16, 16), ("dna", "lamin_b1"))
    rng = np.random.default_rng(0)
    tl = rng.normal(size=(5, 20, 23)).astype(np.float32) * 3 + 7
    out = predict_volume(model, tl, "lamin_b1", z_step_um=1.16)
    assert out.shape == (20, 20, 23) and out.dtype == np.float32
    z = (tl - tl.mean()) / tl.std()
    np.testing.assert_allclose(out[::4], np.tanh(z) * 2 + 0.5, rtol=1e-4, atol=1e-5)
    assert predict_volume(model, rng.normal(size=(17, 9, 9)), "dna", z_step_um=0.29).shape == (20, 9, 9)
    assert predict_volume(model, tl, "dna").shape == (20, 20, 23)
    with pytest.raises(InputError, match="does not know structure 'tom20'"):
        predict_volume(model, tl, "tom20")
    with pytest.raises(InputError, match="3D stack"):
        predict_volume(model, tl[0], "dna")
    with pytest.raises(InputError, match="constant"):
        predict_volume(model, np.ones((4, 8, 8)), "dna")
    bad = tl.copy()
    bad[1, 2, 3] = np.nan
    with pytest.raises(InputError, match="NaN"):
        predict_volume(model, bad, "dna")


def test_predict_volume_reads_inference_settings_from_config() -> None:
    model = Toy(2, (4, 8, 8))
    model.config = SimpleNamespace(inference=SimpleNamespace(overlap=0.0, blend="constant", window_batch=2,
                                                             sigma_scale=0.125))
    out = predict_volume(model, np.random.default_rng(1).normal(size=(4, 16, 16)), "a")
    assert out.shape == (8, 16, 16)
    assert model.calls == [2, 2, 2, 2]  # no overlap: 2 x 2 x 2 windows, two per batch


def test_released_sliding_window_fixture() -> None:
    """The released Gaussian sliding window of the tiny released model reproduces `y_sliding_window`."""
    io_path = FIXTURES / "sparsessp_repmode_3to2d_tiny.io.pth"
    if not io_path.is_file():
        pytest.skip(f"shared fixtures not found at {FIXTURES}")
    compat = pytest.importorskip("sparsessp.models.compat")
    if not hasattr(compat, "import_weights"):
        pytest.skip("sparsessp.models.compat.import_weights is not available yet")
    io = torch.load(io_path, weights_only=True)
    model = compat.import_weights(FIXTURES / "sparsessp_repmode_3to2d_tiny.ckpt.pth", source="sparsessp-released",
                                  sparse_ratio=int(io["sparse_ratio"]))
    r = int(io["sparse_ratio"])
    sparse = io["volume"][:, :, ::r]
    out = sliding_window(model.eval(), sparse, int(io["sliding_window_task"]), (16, 32, 32), r,
                         overlap=0.5, blend="released", batch_size=int(io["sliding_window_batch"]))
    ref = io["y_sliding_window"]
    rel = float(torch.linalg.vector_norm(out - ref) / torch.linalg.vector_norm(ref))
    assert rel < 1e-5


def test_quickstart_model_predicts_the_same_with_4_or_16_windows_per_call() -> None:
    """The automatic windows per call (16 for the quickstart's window) against the old fixed 4, fp32."""
    from sparsessp.cli.quickstart import quickstart_config
    from sparsessp.models.registry import build_model

    torch.manual_seed(0)
    model = build_model(quickstart_config(["train.accelerator=cpu"])).eval()
    tl = np.random.default_rng(3).normal(size=(12, 96, 96)).astype(np.float32)
    auto = predict_volume(model, tl, model.structures[0])
    four = predict_volume(model, tl, model.structures[0], window_batch=4)
    assert np.linalg.norm(auto - four) / np.linalg.norm(four) < 1e-5
