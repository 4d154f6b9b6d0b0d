"""Microscopy I/O: TIFF flavours round trip with sizes and channels; every bad input is a one-line InputError."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from sparsessp.data import io as sio
from sparsessp.data.io import Image, read_volume, write_ome_tiff
from sparsessp.errors import InputError, UserError


def _vol(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


def _one_line(exc: pytest.ExceptionInfo[BaseException]) -> str:
    text = str(exc.value)
    assert "\n" not in text and text
    return text


def test_ome_round_trip(tmp_path: Path) -> None:
    data = _vol(3, 4, 8, 10)
    path = write_ome_tiff(tmp_path / "a.ome.tif", data, (0.29, 0.108, 0.1), ["TL", "DNA", "lamin"], description="x")
    image = read_volume(path)
    np.testing.assert_array_equal(image.data, data)
    assert image.physical_sizes == pytest.approx((0.29, 0.108, 0.1))
    assert image.channel_names == ["TL", "DNA", "lamin"]
    assert image.path == path
    picked = read_volume(path, channel=["lamin", 0])
    np.testing.assert_array_equal(picked.data, data[[2, 0]])
    assert picked.channel_names == ["lamin", "TL"]
    np.testing.assert_array_equal(read_volume(path, channel="1").volume(), data[1])
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left


def test_ome_units_are_converted(tmp_path: Path) -> None:
    path = tmp_path / "nm.ome.tif"
    meta = {"axes": "ZYX", "PhysicalSizeZ": 290.0, "PhysicalSizeZUnit": "nm", "PhysicalSizeX": 0.108,
            "PhysicalSizeY": 0.108}
    tifffile.imwrite(path, _vol(3, 6, 6), ome=True, metadata=meta)
    assert read_volume(path).physical_sizes == pytest.approx((0.29, 0.108, 0.108))


def test_imagej_hyperstack_round_trip(tmp_path: Path) -> None:
    data = _vol(3, 5, 2, 8, 8)  # T Z C Y X
    path = tmp_path / "ij.tif"
    tifffile.imwrite(path, data, imagej=True, resolution=(1 / 0.108, 1 / 0.108),
                     metadata={"axes": "TZCYX", "spacing": 0.5, "unit": "um"})
    image = read_volume(path, timepoint=2)
    assert image.data.shape == (2, 5, 8, 8)
    np.testing.assert_array_equal(image.data, data[2].transpose(1, 0, 2, 3))
    z, y, x = image.physical_sizes
    assert z == pytest.approx(0.5) and y == pytest.approx(0.108, rel=1e-3) and x == pytest.approx(0.108, rel=1e-3)
    with pytest.raises(InputError) as exc:
        read_volume(path)
    assert "--timepoint" in _one_line(exc)
    with pytest.raises(InputError, match="out of range"):
        read_volume(path, timepoint=3)
    with pytest.raises(InputError) as exc:
        read_volume(path, timepoint=0).volume()
    assert "--channel" in _one_line(exc)


def test_plain_multipage_tiff(tmp_path: Path) -> None:
    data = (_vol(5, 8, 8) * 1000).astype(np.uint16)
    path = tmp_path / "plain.tif"
    with tifffile.TiffWriter(path) as tw:
        for plane in data:
            tw.write(plane, resolution=(1e4 / 0.25, 1e4 / 0.25), resolutionunit="CENTIMETER", metadata=None)
    image = read_volume(path)
    assert image.data.dtype == np.float32 and image.data.shape == (1, 5, 8, 8)
    np.testing.assert_array_equal(image.volume(), data.astype(np.float32))
    assert image.physical_sizes[0] is None
    assert image.physical_sizes[1:] == pytest.approx((0.25, 0.25))
    shaped = tmp_path / "shaped.tif"
    tifffile.imwrite(shaped, data)
    assert read_volume(shaped).physical_sizes == (None, None, None)


def test_axes_override_for_ambiguous_tiff(tmp_path: Path) -> None:
    data = _vol(2, 5, 8, 8)
    path = tmp_path / "cz.tif"
    tifffile.imwrite(path, data)  # stored without axis names: QQYX
    with pytest.raises(InputError) as exc:
        read_volume(path)
    assert "Z" in _one_line(exc)
    np.testing.assert_array_equal(read_volume(path, axes="CZYX").data, data)


def test_truncated_tiff(tmp_path: Path) -> None:
    full = tmp_path / "full.ome.tif"
    write_ome_tiff(full, _vol(2, 6, 16, 16), (0.29, 0.29, 0.29))
    raw = full.read_bytes()
    for cut in (len(raw) // 2, 40, 5):
        path = tmp_path / f"cut{cut}.tif"
        path.write_bytes(raw[:cut])
        with pytest.raises(InputError) as exc:
            read_volume(path)
        assert str(path) in _one_line(exc)
    packed = tmp_path / "zlib.tif"
    tifffile.imwrite(packed, _vol(6, 16, 16), compression="zlib", photometric="minisblack", metadata={"axes": "ZYX"})
    raw = bytearray(packed.read_bytes())
    raw[len(raw) // 2 : len(raw) // 2 + 40] = b"\xff" * 40
    packed.write_bytes(bytes(raw))
    with pytest.raises(InputError) as exc:
        read_volume(packed)
    assert "corrupt" in _one_line(exc)


def test_2d_image_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "flat.tif"
    tifffile.imwrite(path, _vol(16, 16))
    with pytest.raises(InputError) as exc:
        read_volume(path)
    assert "2D" in _one_line(exc)
    assert read_volume(path, min_z=1).data.shape == (1, 1, 16, 16)


def test_constant_and_nonfinite_volumes(tmp_path: Path) -> None:
    constant = write_ome_tiff(tmp_path / "c.ome.tif", np.full((3, 4, 4), 7, np.float32))
    with pytest.raises(InputError) as exc:
        read_volume(constant)
    assert "constant" in _one_line(exc)
    bad = _vol(2, 3, 4, 4)
    bad[1, 2, 1, 3] = np.nan
    bad[1, 2, 2, 0] = np.inf
    path = write_ome_tiff(tmp_path / "n.ome.tif", bad, channel_names=["TL", "DNA"])
    with pytest.raises(InputError) as exc:
        read_volume(path)
    message = _one_line(exc)
    assert "'DNA'" in message and "(2, 1, 3)" in message and "2 NaN/Inf" in message
    assert read_volume(path, channel=0).data.shape == (1, 3, 4, 4)  # the bad channel not chosen


def test_channel_errors_and_missing_files(tmp_path: Path) -> None:
    path = write_ome_tiff(tmp_path / "a.ome.tif", _vol(2, 3, 4, 4), channel_names=["TL", "DNA"])
    with pytest.raises(InputError, match="no channel named 'x'"):
        read_volume(path, channel="x")
    with pytest.raises(InputError, match="out of range"):
        read_volume(path, channel=5)
    with pytest.raises(InputError, match="not found"):
        read_volume(tmp_path / "missing.tif")
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    with pytest.raises(InputError, match="unsupported file type"):
        read_volume(other)


def test_write_refuses_existing_and_leaves_nothing_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_ome_tiff(tmp_path / "a.ome.tif", _vol(3, 4, 4))
    with pytest.raises(UserError, match="--overwrite"):
        write_ome_tiff(path, _vol(3, 4, 4))
    write_ome_tiff(path, _vol(2, 3, 4, 4, seed=1), overwrite=True)
    assert read_volume(path).data.shape == (2, 3, 4, 4)

    def broken(target: Path, *args: object, **kwargs: object) -> None:
        Path(target).write_bytes(b"II*\0partial")
        raise OSError("device error")

    monkeypatch.setattr(tifffile, "imwrite", broken)
    with pytest.raises(OSError):
        write_ome_tiff(tmp_path / "b.ome.tif", _vol(3, 4, 4))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.ome.tif"]


def test_image_dataclass() -> None:
    image = Image(np.zeros((2, 3, 4, 4), np.float32))
    assert image.channel_names == ["C0", "C1"] and image.num_channels == 2
    with pytest.raises(ValueError):
        Image(np.zeros((3, 4, 4), np.float32))


@pytest.mark.parametrize("name", ["a.czi", "a.zarr"])
def test_broken_czi_and_zarr_are_one_line(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    if name.endswith(".zarr"):
        path.mkdir()
        (path / ".zattrs").write_text('{"multiscales": [{"axes": [], "datasets": []}]}')
    else:
        path.write_bytes(b"ZISRAWFILE")
    with pytest.raises(InputError) as exc:
        read_volume(path)
    line = _one_line(exc)
    assert str(path) in line and "0x" not in line and "list index" not in line


def test_unit_table() -> None:
    assert sio.unit_to_um("nm") == pytest.approx(1e-3)
    assert sio.unit_to_um("micron") == 1.0
    assert sio.unit_to_um(None) == 1.0
    assert sio.unit_to_um("pixel") is None


def test_czi_reader(tmp_path: Path) -> None:
    pytest.importorskip("bioio_czi", reason="optional extra 'czi' not installed")
    pyczi = pytest.importorskip("pylibCZIrw.czi", reason="pylibCZIrw (to write a test CZI) not installed")
    data = (_vol(2, 4, 16, 20) * 1000).astype(np.uint16)
    path = tmp_path / "a.czi"
    with pyczi.create_czi(str(path), exist_ok=True) as doc:
        for c in range(2):
            for z in range(4):
                doc.write(data=data[c, z], plane={"C": c, "Z": z, "T": 0})
        doc.write_metadata(channel_names={0: "TL", 1: "DNA"}, scale_x=0.108e-6, scale_y=0.108e-6, scale_z=0.29e-6)
    image = read_volume(path)
    np.testing.assert_array_equal(image.data, data.astype(np.float32))
    assert image.physical_sizes == pytest.approx((0.29, 0.108, 0.108))
    assert image.channel_names == ["TL", "DNA"]
    cut = tmp_path / "cut.czi"
    cut.write_bytes(path.read_bytes()[:3000])
    with pytest.raises(InputError) as exc:
        read_volume(cut)
    assert "corrupt" in _one_line(exc)


def test_ome_zarr_reader(tmp_path: Path) -> None:
    pytest.importorskip("bioio_ome_zarr", reason="optional extra 'zarr' not installed")
    from bioio_ome_zarr.writers import Channel, OMEZarrWriter

    data = _vol(2, 2, 4, 16, 20)  # T C Z Y X
    path = tmp_path / "a.zarr"
    writer = OMEZarrWriter(
        str(path), level_shapes=[data.shape], dtype=data.dtype, axes_names=list("tczyx"),
        axes_types=["time", "channel", "space", "space", "space"],
        axes_units=[None, None, "micrometer", "micrometer", "micrometer"], physical_pixel_size=[1, 1, 0.29, 0.2, 0.2],
        channels=[Channel(label="TL", color="FFFFFF"), Channel(label="DNA", color="FF0000")],
    )
    writer.write_full_volume(data)
    with pytest.raises(InputError) as exc:
        read_volume(path)
    assert "--timepoint" in _one_line(exc)
    image = read_volume(path, channel="DNA", timepoint=1)
    np.testing.assert_array_equal(image.volume(), data[1, 1])
    assert image.physical_sizes == pytest.approx((0.29, 0.2, 0.2))
