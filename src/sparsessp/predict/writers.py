"""Outputs written as blocks finish: a hidden partial Zarr store per output, then OME-Zarr or OME-TIFF.

Each output first lives in ``.<name>.partial`` beside it: level 0 of an OME-Zarr (T, C, Z, Y, X),
float32, chunked one plane and 256 x 256 pixels at a time, so a block of any size is written without
holding the field, and several processes write different timepoints at once. ``done/<t>`` marks a
finished timepoint (``--resume`` skips it). When every timepoint is done the output is finished: for
OME-Zarr the pyramid (2x in y-x per level, computed region by region) and the NGFF metadata are added
and the folder renamed into place; for OME-TIFF the planes stream into a temp file renamed into place.
Either way an output is complete or absent.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sparsessp.fileio import atomic_dir, atomic_path

CHUNK_YX = 256
PYRAMID_MIN = 256
"""Pyramid levels halve y-x until the largest side is at most this many pixels."""
UINT16_SAMPLE = 4_000_000
"""Voxels (at most) per channel the uint16 scaling's percentiles are estimated from."""
COLORS = ("00FF00", "FF00FF", "00FFFF", "FFFF00", "FF0000", "0000FF", "FFFFFF")


@dataclass
class OutputMeta:
    """What an output's metadata says: sizes (um), time increment (s), channel names, description."""

    sizes: tuple[float | None, float | None, float | None]
    time_increment: float | None
    channels: list[str]
    description: str


def _open_group(path: Path, mode: str) -> Any:
    import zarr

    return zarr.open_group(str(path), mode=mode, zarr_format=2)


def create_partial(path: Path, shape: Sequence[int], key: str, resume: bool) -> None:
    """Create (or, with ``resume`` and the same ``key``, keep) the partial store of one output."""
    info = path / "sparsessp-partial.json"
    if resume and info.is_file():
        try:
            same = json.loads(info.read_text()).get("key") == key
        except (OSError, ValueError):
            same = False
        if same:
            return
    if path.exists():
        shutil.rmtree(path)
    group = _open_group(path, "w")
    t, c, z, y, x = (int(v) for v in shape)
    group.create_array("0", shape=(t, c, z, y, x), chunks=(1, 1, 1, min(y, CHUNK_YX), min(x, CHUNK_YX)),
                       dtype="float32", fill_value=0.0)
    (path / "done").mkdir()
    info.write_text(json.dumps({"key": key}) + "\n")


def finished_timepoints(path: Path) -> set[int]:
    folder = path / "done"
    return {int(p.name) for p in folder.iterdir()} if folder.is_dir() else set()


def write_block(path: Path, t_index: int, channel: int, y: slice, x: slice, data: np.ndarray) -> None:
    """Write one finished block ``(Z, h, w)`` of one channel and timepoint into the partial store."""
    _open_group(path, "r+")["0"][t_index, channel, :, y, x] = np.asarray(data, dtype=np.float32)


def mark_done(path: Path, t_index: int) -> None:
    (path / "done" / str(t_index)).touch()


def _level_shapes(shape: Sequence[int]) -> list[tuple[int, ...]]:
    shapes = [tuple(int(v) for v in shape)]
    while max(shapes[-1][-2:]) > PYRAMID_MIN:
        *lead, y, x = shapes[-1]
        shapes.append((*lead, (y + 1) // 2, (x + 1) // 2))
    return shapes


def _downsample(source: Any, target: Any) -> None:
    """Level k+1 from level k: 2x2 mean in y-x, one plane and one 512-pixel band of rows at a time."""
    t_count, c_count, z_count, y_count, _ = source.shape
    band = 2 * CHUNK_YX
    for t in range(t_count):
        for c in range(c_count):
            for z in range(z_count):
                for y0 in range(0, y_count, band):
                    rows = np.asarray(source[t, c, z, y0 : y0 + band, :], dtype=np.float32)
                    if rows.shape[0] % 2:
                        rows = np.concatenate([rows, rows[-1:]])
                    if rows.shape[1] % 2:
                        rows = np.concatenate([rows, rows[:, -1:]], axis=1)
                    pooled = rows.reshape(rows.shape[0] // 2, 2, rows.shape[1] // 2, 2).mean(axis=(1, 3))
                    target[t, c, z, y0 // 2 : y0 // 2 + pooled.shape[0], :] = pooled


def _ngff(meta: OutputMeta, shapes: list[tuple[int, ...]], name: str) -> dict[str, Any]:
    dz, dy, dx = (v if v is not None else 1.0 for v in meta.sizes)
    dt = meta.time_increment or 1.0
    space = {"type": "space", "unit": "micrometer"}
    axes = [{"name": "t", "type": "time", **({"unit": "second"} if meta.time_increment else {})},
            {"name": "c", "type": "channel"}, {"name": "z", **space}, {"name": "y", **space}, {"name": "x", **space}]
    datasets = []
    for level, shape in enumerate(shapes):
        fy, fx = shapes[0][3] / shape[3], shapes[0][4] / shape[4]
        datasets.append({"path": str(level), "coordinateTransformations": [
            {"type": "scale", "scale": [dt, 1.0, dz, dy * fy, dx * fx]}]})
    channels = [{"label": n, "color": COLORS[i % len(COLORS)], "active": True,
                 "window": {"start": -2.0, "end": 6.0, "min": -10.0, "max": 30.0}}
                for i, n in enumerate(meta.channels)]
    return {
        "multiscales": [{"version": "0.4", "name": name, "axes": axes, "datasets": datasets,
                         "metadata": {"description": meta.description}}],
        "omero": {"name": name, "version": "0.4", "channels": channels,
                  "rdefs": {"defaultT": 0, "defaultZ": shapes[0][2] // 2, "model": "color"}},
    }


def finish_ome_zarr(partial: Path, final: Path, meta: OutputMeta) -> None:
    """Add the pyramid and NGFF 0.4 metadata to a complete partial store and rename it to ``final``."""
    group = _open_group(partial, "r+")
    shapes = _level_shapes(group["0"].shape)
    for level in range(1, len(shapes)):
        name = str(level)
        if name in group:
            del group[name]
        shape = shapes[level]
        target = group.create_array(name, shape=shape, chunks=(1, 1, 1, min(shape[3], CHUNK_YX),
                                    min(shape[4], CHUNK_YX)), dtype="float32", fill_value=0.0)
        _downsample(group[str(level - 1)], target)
    group.attrs.update(_ngff(meta, shapes, final.name))
    shutil.rmtree(partial / "done")
    (partial / "sparsessp-partial.json").unlink()
    with atomic_dir(final) as tmp:
        tmp.rmdir()
        os.replace(partial, tmp)


def _uint16_ranges(level0: Any) -> list[tuple[float, float]]:
    """Per channel (lo, hi) = the 0.1 and 99.9 percentiles, from at most UINT16_SAMPLE voxels (whole planes)."""
    t_count, c_count, z_count, y_count, x_count = level0.shape
    planes = [(t, z) for t in range(t_count) for z in range(z_count)]
    keep = max(1, min(len(planes), UINT16_SAMPLE // max(1, y_count * x_count)))
    picked = [planes[i] for i in np.linspace(0, len(planes) - 1, keep).round().astype(int)]
    ranges = []
    for c in range(c_count):
        values = np.concatenate([np.asarray(level0[t, c, z]).ravel() for t, z in picked])
        lo, hi = (float(v) for v in np.percentile(values, [0.1, 99.9]))
        ranges.append((lo, hi))
    return ranges


def finish_ome_tiff(partial: Path, final: Path, meta: OutputMeta, dtype: str) -> None:
    """Stream a complete partial store plane by plane into an OME-TIFF at ``final`` (TCZYX) and remove it."""
    import tifffile

    level0 = _open_group(partial, "r")["0"]
    shape = tuple(int(v) for v in level0.shape)
    description = meta.description
    ranges: list[tuple[float, float]] = []
    if dtype == "uint16":
        ranges = _uint16_ranges(level0)
        description += ("; stored as uint16 = 65535 * (value - lo) / (hi - lo) clipped, per channel (lo, hi) = "
                        + ", ".join(f"({lo:.6g}, {hi:.6g})" for lo, hi in ranges)
                        + " (0.1/99.9 percentiles)")

    def planes() -> Iterator[np.ndarray]:
        for t in range(shape[0]):
            for c in range(shape[1]):
                for z in range(shape[2]):
                    plane = np.asarray(level0[t, c, z], dtype=np.float32)
                    if ranges:
                        lo, hi = ranges[c]
                        span = hi - lo if hi > lo else 1.0
                        plane = np.rint(np.clip((plane - lo) / span, 0.0, 1.0) * 65535.0).astype(np.uint16)
                    yield plane

    metadata: dict[str, Any] = {"axes": "TCZYX", "Channel": {"Name": list(meta.channels)}, "Description": description}
    for axis, size in zip("ZYX", meta.sizes):
        if size is not None:
            metadata[f"PhysicalSize{axis}"] = float(size)
            metadata[f"PhysicalSize{axis}Unit"] = "µm"
    if meta.time_increment:
        metadata["TimeIncrement"] = float(meta.time_increment)
        metadata["TimeIncrementUnit"] = "s"
    out_dtype = np.uint16 if ranges else np.float32
    nbytes = int(np.prod(shape)) * np.dtype(out_dtype).itemsize
    with atomic_path(final) as tmp:
        tifffile.imwrite(tmp, planes(), shape=shape, dtype=out_dtype, ome=True, metadata=metadata,
                         photometric="minisblack", bigtiff=nbytes > 2**31)
    shutil.rmtree(partial)


def save_preview(path: Path, title: str, rows: list[tuple[str, list[tuple[str, np.ndarray, np.ndarray]]]]) -> None:
    from sparsessp.report.figures import save_mip_panel

    save_mip_panel(path, rows, title=title)
