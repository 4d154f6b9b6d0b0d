"""The napari plugin without a display: manifest, prediction layers in a ViewerModel, sample data, reader."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("napari", reason="the napari extra is not installed (pip install 'sparsessp[napari]')")

from napari.components import ViewerModel

from sparsessp.config import load_config
from sparsessp.engine.checkpoint import base_state, save_checkpoint
from sparsessp.errors import UserError
from sparsessp.inference import predict_volume
from sparsessp.models.registry import build_model
from sparsessp.napari import layers, reader, sample

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "src" / "sparsessp" / "napari" / "napari.yaml"
QUICKSTART = ROOT / "src" / "sparsessp" / "configs" / "quickstart.yaml"
SMALL = ["data.structures=[dna,lamin_b1]", "data.patch=[32,64,64]", "model.channels=[4,8]", "model.embed_dim=8"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small quickstart-topology model (2D, TSNs, sparse ratio 4), random weights: the plumbing, not quality."""
    cfg = load_config(QUICKSTART, SMALL)
    path = tmp_path_factory.mktemp("napari") / "small.ckpt"
    save_checkpoint(path, base_state(cfg, build_model(cfg).state_dict()))
    return path


def test_npe2_validate_accepts_the_manifest_and_pyproject_registers_it() -> None:
    import tomllib

    npe2 = Path(sys.executable).with_name("npe2")
    result = subprocess.run([str(npe2), "validate", str(MANIFEST), "--imports"], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0 and "valid" in result.stdout, result.stdout + result.stderr
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["entry-points"]["napari.manifest"]["sparsessp"] == "sparsessp.napari:napari.yaml"
    assert "napari/napari.yaml" in project["tool"]["setuptools"]["package-data"]["sparsessp"]


def test_prediction_layers_are_scaled_to_the_029_um_grid_over_the_tl(checkpoint: Path) -> None:
    viewer = ViewerModel()
    tl_data, tl_meta, _ = sample.synthcell_sample()[0]
    tl = viewer.add_image(tl_data[:, :64, :64], name="TL", scale=tl_meta["scale"], translate=(2.0, 5.0, 7.0))
    step = layers.z_step_from_scale(tl.scale)
    assert step == pytest.approx(1.16)
    model = layers.load_model(checkpoint)
    seen: list[tuple[int, int]] = []
    added = layers.predict_into_viewer(viewer, model, layers.request_from_layer(tl, ["dna", "lamin_b1"], step),
                                       progress=lambda done, total: seen.append((done, total)))
    assert seen == [(1, 2), (2, 2)]
    assert [layer.name for layer in viewer.layers] == ["TL", "dna (sparsessp)", "lamin_b1 (sparsessp)"]
    for layer, structure in zip(added, ["dna", "lamin_b1"]):
        np.testing.assert_allclose(layer.scale, (0.29, 0.29, 0.29))
        np.testing.assert_allclose(layer.translate, (2.0, 5.0, 7.0))
        assert layer.blending == "additive" and layer.metadata["sparsessp"]["structure"] == structure
        assert layer.data.shape == (4 * tl_data.shape[0], 64, 64)
        np.testing.assert_array_equal(layer.data, predict_volume(model, tl.data, structure, z_step_um=step))
    # the first and last predicted planes span the TL's extent in world coordinates (sparse plane k -> 4k)
    assert added[0].data_to_world((4 * (tl_data.shape[0] - 1), 0, 0))[0] == pytest.approx(
        tl.data_to_world((tl_data.shape[0] - 1, 0, 0))[0])


def test_a_layer_without_physical_scale_gets_a_proportional_z_scale(checkpoint: Path) -> None:
    viewer = ViewerModel()
    tl_data = sample.synthcell_sample()[0][0][:, :32, :32]
    tl = viewer.add_image(tl_data, name="TL")
    assert layers.z_step_from_scale(tl.scale) is None  # napari's default scale says nothing
    model = layers.load_model(checkpoint)
    (added,) = layers.predict_into_viewer(viewer, model, layers.request_from_layer(tl, ["dna"], 1.16))
    np.testing.assert_allclose(added.scale, (0.25, 1.0, 1.0))  # 4 predicted planes per TL plane


def test_bad_requests_are_one_line_errors(checkpoint: Path) -> None:
    viewer = ViewerModel()
    tl = viewer.add_image(np.random.default_rng(0).normal(size=(8, 32, 32)), name="TL")
    model = layers.load_model(checkpoint)
    with pytest.raises(UserError, match="does not know structure 'tom20'"):
        layers.predict_into_viewer(viewer, model, layers.request_from_layer(tl, ["dna", "tom20"], 1.16))
    with pytest.raises(UserError, match="sparser than the model"):
        layers.predict_into_viewer(viewer, model, layers.request_from_layer(tl, ["dna"], 2.32))
    flat = viewer.add_image(np.zeros((32, 32)), name="2D")
    with pytest.raises(UserError, match="a \\(Z, Y, X\\) stack is needed"):
        layers.request_from_layer(flat, ["dna"], 1.16)
    assert [layer.name for layer in viewer.layers] == ["TL", "2D"]  # nothing added


def test_synthcell_sample_is_sparse_tl_and_truth() -> None:
    (tl, tl_meta, kind), (dna, dna_meta, _), (target, target_meta, _) = sample.synthcell_sample()
    assert kind == "image" and tl.shape == (8, 128, 128) and dna.shape == target.shape == (32, 128, 128)
    assert tl_meta["scale"] == pytest.approx((1.16, 0.29, 0.29)) and dna_meta["scale"] == (0.29, 0.29, 0.29)
    assert target_meta["name"] == "lamin_b1 (truth)" and tl.std() > 0 and target.std() > 0


def test_quickstart_sample_needs_the_quickstart_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      checkpoint: Path) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="run `sparsessp quickstart` first"):
        sample.quickstart_sample()
    assert layers.default_checkpoint() is None
    target = tmp_path / layers.QUICKSTART_CHECKPOINT
    target.parent.mkdir(parents=True)
    target.write_bytes(checkpoint.read_bytes())
    assert layers.default_checkpoint() == layers.QUICKSTART_CHECKPOINT
    names = [meta["name"] for _, meta, _ in sample.quickstart_sample()]
    assert names == ["TL (SynthCell)", "dna (truth)", "lamin_b1 (truth)", "dna (sparsessp)", "lamin_b1 (sparsessp)"]


def test_reader_keeps_scale_and_channel_names_of_ome_tiff(tmp_path: Path) -> None:
    from sparsessp.data.io import write_ome_tiff

    data = np.random.default_rng(1).normal(size=(2, 6, 16, 16)).astype(np.float32)
    path = write_ome_tiff(tmp_path / "cell_dna.ome.tif", data, (0.29, 0.3, 0.31), ["dna", "TL"])
    assert reader.get_reader(str(tmp_path / "cell.tif")) is None
    read = reader.get_reader(str(path))
    assert read is not None
    viewer = ViewerModel()
    for layer_data in read(str(path)):
        layers.add_layer(viewer, layer_data)
    assert [layer.name for layer in viewer.layers] == ["dna", "TL"]
    np.testing.assert_allclose(viewer.layers["dna"].scale, (0.29, 0.3, 0.31))
    np.testing.assert_array_equal(viewer.layers["TL"].data, data[1])


def test_reader_keeps_scale_and_channel_names_of_ome_zarr(tmp_path: Path) -> None:
    pytest.importorskip("bioio_ome_zarr", reason="OME-Zarr needs the zarr extra (pip install 'sparsessp[zarr]')")
    from bioio_ome_zarr.writers import Channel, OMEZarrWriter

    data = np.random.default_rng(2).normal(size=(1, 2, 6, 16, 16)).astype(np.float32)
    path = tmp_path / "cell.ome.zarr"
    writer = OMEZarrWriter(
        str(path), level_shapes=[data.shape], dtype=data.dtype, axes_names=list("tczyx"),
        axes_types=["time", "channel", "space", "space", "space"],
        axes_units=[None, None, "micrometer", "micrometer", "micrometer"], physical_pixel_size=[1, 1, 0.29, 0.3, 0.31],
        channels=[Channel(label="lamin_b1", color="00FF00"), Channel(label="TL", color="FFFFFF")],
    )
    writer.write_full_volume(data)
    read = reader.get_reader(str(path))
    assert read is not None
    (_, meta, _), (second, meta2, _) = read(str(path))
    assert (meta["name"], meta2["name"]) == ("lamin_b1", "TL")
    assert meta["scale"] == pytest.approx((0.29, 0.3, 0.31))
    np.testing.assert_array_equal(second, data[0, 1])


def test_reader_keeps_the_time_axis_of_a_time_lapse(tmp_path: Path) -> None:
    import tifffile

    data = np.random.default_rng(3).normal(size=(3, 1, 6, 16, 16)).astype(np.float32)
    path = tmp_path / "movie_dna.ome.tif"
    tifffile.imwrite(path, data, ome=True, metadata={
        "axes": "TCZYX", "Channel": {"Name": ["dna"]}, "TimeIncrement": 30.0, "TimeIncrementUnit": "s",
        "PhysicalSizeZ": 0.29, "PhysicalSizeY": 0.3, "PhysicalSizeX": 0.31,
    })
    read = reader.get_reader(str(path))
    assert read is not None
    viewer = ViewerModel()
    for layer_data in read(str(path)):
        layers.add_layer(viewer, layer_data)
    layer = viewer.layers["dna"]
    assert layer.data.shape == (3, 6, 16, 16)
    np.testing.assert_allclose(layer.scale, (30.0, 0.29, 0.3, 0.31))
    np.testing.assert_array_equal(np.asarray(layer.data[2]), data[2, 0])
