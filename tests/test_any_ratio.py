"""Any integer sparse ratio r >= 1: ceil(D/r) sparse planes per window, sparse plane k at dense k*r.

Unit checks of the contract (prefix, postfix, the dataset's crops, the sliding window's placement), then
r = 3 and r = 5 through the CLI: train a few steps, evaluate, predict.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import tiny_train_config
from sparsessp.cli.main import main
from sparsessp.config import load_config
from sparsessp.data.dataset import PatchDataset, VolumeRecord
from sparsessp.data.io import read_volume, write_ome_tiff
from sparsessp.design import sparse_depth
from sparsessp.errors import ConfigError
from sparsessp.inference import sliding_window
from sparsessp.models.interpolation import PostfixDeconv, prefix_interpolate
from sparsessp.models.registry import build_model

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize(("depth", "ratio", "planes"), [(8, 3, 3), (8, 5, 2), (16, 6, 3), (16, 7, 3), (8, 8, 1)])
def test_window_holds_ceil_d_over_r_planes(depth: int, ratio: int, planes: int) -> None:
    assert sparse_depth(depth, ratio) == planes
    x = torch.arange(planes, dtype=torch.float32).view(1, 1, planes, 1, 1).expand(1, 1, planes, 2, 2)
    nearest = prefix_interpolate(x, ratio, "nearest", depth)[0, 0, :, 0, 0]
    assert nearest.tolist() == [float(z // ratio) for z in range(depth)]
    aligned = prefix_interpolate(x, ratio, "aligned", depth)[0, 0, :, 0, 0]
    assert aligned[:: ratio].tolist() == list(map(float, range(planes)))
    assert prefix_interpolate(x, ratio, "trilinear", depth).shape[2] == depth
    assert PostfixDeconv(ratio, depth)(x).shape == (1, 1, depth, 2, 2)


@pytest.mark.parametrize("ratio", [3, 5, 6, 7])
@pytest.mark.parametrize(("topology", "interpolation"), [("3d", "prefix"), ("2to3d", "postfix"), ("3to2d", "none")])
def test_every_family_builds_and_runs_at_ratios_not_dividing_the_depth(
    ratio: int, topology: str, interpolation: str
) -> None:
    cfg = load_config(
        None,
        [
            f"model.topology={topology}",
            f"model.interpolation={interpolation}",
            "model.projection=2d",
            "model.channels=[4,4,8]",
            "model.embed_dim=8",
            "model.conditioning=tsn",
            "data.patch=[16,16,16]",
            f"data.sparse_ratio={ratio}",
        ],
    )
    model = build_model(cfg)
    y = model(torch.randn(2, 1, sparse_depth(16, ratio), 16, 16), torch.tensor([0, 1]))
    assert y.shape == (2, 1, 16, 16, 16)
    y.sum().backward()


def test_patch_depth_below_the_ratio_is_refused() -> None:
    with pytest.raises(ConfigError, match="sparse_ratio"):
        load_config(None, ["data.patch=[4,16,16]", "data.sparse_ratio=5"])


@pytest.mark.parametrize("ratio", [3, 5])
def test_dataset_keeps_the_planes_at_multiples_of_r_inside_the_window(ratio: int) -> None:
    z = np.arange(23, dtype=np.float32)[:, None, None] * np.ones((1, 8, 8), np.float32)
    record = VolumeRecord("dna", 0, z, z + 100, Path("x"))
    data = PatchDataset([record], (8, 8, 8), ratio, flip=False, samples_per_epoch=20, seed=1)
    starts = set()
    for i in range(len(data)):
        item = data[i]
        dense = item["target"][0, :, 0, 0].numpy() - 100
        sparse = item["signal"][0, :, 0, 0].numpy()
        assert item["signal"].shape == (1, sparse_depth(8, ratio), 8, 8)
        np.testing.assert_array_equal(sparse, dense[::ratio])
        starts.add(int(dense[0]))
    assert len(starts) > 3  # the window starts at any z, not only at multiples of r


def _nearest_model(ratio: int, depth: int) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    def fn(x: torch.Tensor, _tasks: torch.Tensor) -> torch.Tensor:
        assert x.shape[2] == sparse_depth(depth, ratio)
        return prefix_interpolate(x, ratio, "nearest", depth)

    return fn


@pytest.mark.parametrize("overlap", [0.0, 0.5, 0.75])
@pytest.mark.parametrize(("ratio", "depth", "planes"), [(3, 8, 7), (5, 8, 9), (3, 16, 2), (7, 16, 11), (4, 16, 9)])
def test_sliding_window_places_sparse_plane_k_at_k_times_r(ratio: int, depth: int, planes: int, overlap: float) -> None:
    """With a model that repeats each sparse plane r times, the stitched volume is exactly that repetition:
    every dense plane of the n * r output is covered and sparse plane k lands at k * r."""
    sparse = torch.randn(1, 1, planes, 12, 12)
    out = sliding_window(_nearest_model(ratio, depth), sparse, 0, (depth, 8, 8), ratio, overlap=overlap)
    assert out.shape == (1, 1, planes * ratio, 12, 12)
    torch.testing.assert_close(out, sparse.repeat_interleave(ratio, dim=2))


@pytest.mark.parametrize("ratio", [3, 5])
def test_ratio_trains_evaluates_and_predicts_through_the_cli(
    ratio: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tiny_train_config(tmp_path, ["dna", "lamin_b1"], seed=ratio, samples_per_epoch=4, max_steps=3)
    tree = yaml.safe_load(config.read_text())
    tree["data"]["sparse_ratio"] = ratio
    config.write_text(yaml.safe_dump(tree))
    run = tmp_path / "run"
    assert main(["train", "--config", str(config), "--out", str(run)]) == 0, capsys.readouterr().err
    assert main(["evaluate", "--run", str(run)]) == 0, capsys.readouterr().err
    metrics = json.loads((run / "metrics.json").read_text())
    assert np.isfinite(metrics["overall"]["MSE"]) and np.isfinite(metrics["overall"]["R2"])

    tl = np.random.default_rng(0).normal(300, 50, size=(4, 20, 24)).astype(np.float32)
    src = tmp_path / "in" / "cell.ome.tif"
    write_ome_tiff(src, tl, (0.29 * ratio, 0.29, 0.29), ["TL"])
    out = tmp_path / "pred"
    ckpt = run / "checkpoints" / "best.ckpt"
    assert main(["predict", str(src), "--model", str(ckpt), "--structures", "dna", "--out", str(out)]) == 0
    image = read_volume(out / "cell_dna.ome.tif", validate=False)
    assert image.data.shape == (1, 4 * ratio, 20, 24) and np.isfinite(image.data).all()
