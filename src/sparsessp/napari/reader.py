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
    """Layers of each file: its channels with their names, the file's voxel size (um) as scale.

    Read lazily (a dask array), so a long time-lapse opens at once; a file with several timepoints keeps its
    T axis (scaled by the time increment in seconds, where the file gives one).
    """
    from sparsessp.data.io import open_image

    layers: list[LayerData] = []
    for item in [path] if isinstance(path, str) else path:
        image = open_image(Path(item))
        spatial = tuple(float(s) if s else 1.0 for s in image.physical_sizes)
        timepoints = image.shape[0]
        for index, name in enumerate(image.channel_names):
            data = image.array[:, index]
            scale: tuple[float, ...] = (float(image.time_increment or 1.0), *spatial)
            if timepoints == 1:
                data, scale = data[0], spatial
            meta = {"name": name, "scale": scale, "metadata": {"path": str(item), "channel": name}}
            layers.append((data, meta, "image"))
    return layers
