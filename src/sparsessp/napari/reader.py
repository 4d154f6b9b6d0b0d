"""Reader for sparsessp's outputs (OME-TIFF, OME-Zarr): one image layer per channel, named and scaled."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

SUFFIXES: tuple[str, ...] = (".ome.tif", ".ome.tiff", ".ome.zarr")

LayerData = tuple[Any, dict[str, Any], str]


def get_reader(path: str | list[str]) -> Callable[[str | list[str]], list[LayerData]] | None:
    """npe2 reader hook: :func:`read` for OME-TIFF / OME-Zarr paths, None for anything else."""
    paths = [path] if isinstance(path, str) else list(path)
    if not paths or not all(str(p).lower().rstrip("/").endswith(SUFFIXES) for p in paths):
        return None
    return read


def read(path: str | list[str]) -> list[LayerData]:
    """Layers of each file: its channels with their names, the file's voxel size (um) as scale."""
    from sparsessp.data.io import read_volume

    layers: list[LayerData] = []
    for item in [path] if isinstance(path, str) else path:
        image = read_volume(Path(item), min_z=1, validate=False)
        scale = tuple(float(s) if s else 1.0 for s in image.physical_sizes)
        for name, channel in zip(image.channel_names, image.data):
            meta = {"name": name, "scale": scale, "metadata": {"path": str(item), "channel": name}}
            layers.append((channel, meta, "image"))
    return layers
