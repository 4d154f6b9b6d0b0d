"""Reading and writing microscopy volumes: OME-TIFF, ImageJ hyperstacks, plain TIFF, CZI and OME-Zarr.

Every reader returns an :class:`Image` whose ``data`` is always 4D ``(C, Z, Y, X)`` float32 (one timepoint,
the chosen channels), with physical voxel sizes in micrometres. ``Image.volume()`` gives the ``(Z, Y, X)``
array of a single-channel image. Anything wrong with a user's file (corrupt, truncated, 2D, ambiguous
axes, constant, NaN/Inf) is a one-line :class:`~sparsessp.errors.InputError` naming the file.

TIFF files are read with tifffile. CZI needs the optional extra ``czi`` (bioio + bioio-czi) and OME-Zarr
the extra ``zarr`` (bioio + bioio-ome-zarr); both are imported only when such a file is read.
"""

from __future__ import annotations

import contextlib
import logging
import re
import struct
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sparsessp.errors import InputError, UserError
from sparsessp.fileio import atomic_path

PhysicalSizes = tuple[float | None, float | None, float | None]
"""Voxel size (z, y, x) in micrometres; None where the file does not say."""

ChannelChoice = int | str | Sequence[int | str] | None

_UNIT_TO_UM: dict[str, float] = {
    "m": 1e6,
    "cm": 1e4,
    "mm": 1e3,
    "um": 1.0,
    "µm": 1.0,  # micro sign
    "μm": 1.0,  # Greek mu
    "\\u00b5m": 1.0,  # ImageJ writes the escape literally
    "micron": 1.0,
    "microns": 1.0,
    "micrometer": 1.0,
    "micrometre": 1.0,
    "nm": 1e-3,
    "nanometer": 1e-3,
    "pm": 1e-6,
    "å": 1e-4,
    "angstrom": 1e-4,
    "inch": 25400.0,
    "in": 25400.0,
}

_TIFF_EXTENSIONS = (".tif", ".tiff", ".btf", ".tf8", ".tf2")


@dataclass
class Image:
    """One timepoint of a microscopy file: ``data`` (C, Z, Y, X) float32 plus its metadata."""

    data: np.ndarray
    physical_sizes: PhysicalSizes = (None, None, None)
    channel_names: list[str] = field(default_factory=list)
    path: Path | None = None

    def __post_init__(self) -> None:
        if self.data.ndim != 4:
            raise ValueError(f"Image.data must be (C, Z, Y, X), got shape {self.data.shape}")
        if not self.channel_names:
            self.channel_names = [f"C{i}" for i in range(self.data.shape[0])]

    @property
    def num_channels(self) -> int:
        return int(self.data.shape[0])

    def volume(self) -> np.ndarray:
        """The (Z, Y, X) array of a single-channel image; several channels need a choice (``--channel``)."""
        if self.num_channels != 1:
            names = ", ".join(self.channel_names)
            raise InputError(
                f"{_name(self.path)} has {self.num_channels} channels ({names}); choose one with --channel"
            )
        return self.data[0]


def _name(path: Path | None) -> str:
    return str(path) if path is not None else "image"


def unit_to_um(unit: str | None) -> float | None:
    """Micrometres per ``unit`` (an OME or ImageJ length unit); None for unknown units such as 'pixel'."""
    if unit is None:
        return 1.0
    return _UNIT_TO_UM.get(unit.strip().lower().replace(" ", ""))


def read_volume(
    path: str | Path,
    channel: ChannelChoice = None,
    timepoint: int | None = None,
    *,
    axes: str | None = None,
    min_z: int = 2,
    validate: bool = True,
) -> Image:
    """Read one timepoint of a microscopy file as an :class:`Image`.

    ``channel``: an index or a channel name, or a list of them (kept in that order); None keeps every
    channel. ``timepoint`` must be given when the file holds several. ``axes`` overrides the axis letters
    of a TIFF (e.g. ``"CZYX"`` for a plain TIFF that stores channels first). ``min_z`` is the smallest
    z-depth accepted (2: a stack is needed). With ``validate``, the returned channels are checked for
    NaN/Inf and constant values.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"input not found: {path}")
    kind = _file_kind(path)
    if kind == "tiff":
        tczyx, sizes, names = _read_tiff(path, axes)
        data = _pick_timepoint(tczyx, timepoint, path)
    else:
        plugin = "bioio_czi" if kind == "czi" else "bioio_ome_zarr"
        data, sizes, names = _read_bioio(path, plugin, kind, timepoint)
    names = _channel_names(names, data.shape[0])
    index = _channel_indices(channel, names, path)
    data = np.asarray(data[index], dtype=np.float32)
    names = [names[i] for i in index]
    if data.shape[1] < min_z:
        raise InputError(
            f"{path} is a 2D image ({data.shape[2]} x {data.shape[3]}); a z-stack of at least {min_z} slices is needed"
        )
    if validate:
        for i, name in enumerate(names):
            check_volume(data[i], f"channel {name!r} of {path}")
    return Image(np.ascontiguousarray(data), sizes, names, path)


def check_volume(volume: np.ndarray, what: str) -> None:
    """Raise :class:`InputError` when ``volume`` has NaN/Inf voxels (saying where) or is constant."""
    finite = np.isfinite(volume)
    if not finite.all():
        bad = np.argwhere(~finite)
        first = tuple(int(v) for v in bad[0])
        raise InputError(f"{what} has {len(bad)} NaN/Inf voxels, the first at (z, y, x) = {first}")
    if volume.size == 0 or float(volume.std(dtype=np.float64)) == 0.0:
        value = float(volume.flat[0]) if volume.size else float("nan")
        raise InputError(f"{what} is constant (every voxel = {value:g}); it carries no signal")


def _file_kind(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".czi"):
        return "czi"
    if name.endswith(".zarr") or (path.is_dir() and ((path / ".zattrs").exists() or (path / "zarr.json").exists())):
        return "zarr"
    if path.is_dir():
        raise InputError(f"{path} is a folder, not an image file (OME-Zarr folders end in .zarr)")
    if name.endswith(_TIFF_EXTENSIONS):
        return "tiff"
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic[:2] in (b"II", b"MM"):
        return "tiff"
    if magic[:4] == b"ZISR":
        return "czi"
    raise InputError(f"{path}: unsupported file type (read: OME-TIFF, ImageJ or plain TIFF, CZI, OME-Zarr)")


@contextlib.contextmanager
def _captured_logs(name: str, level: int) -> Iterator[list[str]]:
    """Collect a reader library's log records (tifffile logs, then silently drops, corrupt pages) unprinted."""
    messages: list[str] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    logger = logging.getLogger(name)
    handler = _Collect(level=level)
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield messages
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def _read_tiff(path: Path, axes: str | None) -> tuple[np.ndarray, PhysicalSizes, list[str]]:
    import tifffile

    try:
        with _captured_logs("tifffile", logging.ERROR) as logged, tifffile.TiffFile(path) as tif:
            if not tif.series:
                raise InputError(f"{path}: no image data found (corrupt or truncated TIFF?)")
            series = tif.series[0]
            _check_extent(series, path)
            data = series.asarray()
            series_axes = series.axes
            sizes, names = _tiff_metadata(tif)
            if logged:
                raise InputError(f"{path} is corrupt or truncated ({_log_detail(logged[0])})")
    except UserError:
        raise
    except MemoryError:
        raise InputError(f"{path} is too large to load into memory") from None
    except (tifffile.TiffFileError, ValueError, struct.error, OSError, EOFError, IndexError, KeyError,
            zlib.error, RuntimeError, TypeError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise InputError(f"{path} is corrupt or truncated and cannot be read ({detail})") from None
    if axes is not None:
        axes = axes.upper()
        if len(axes) != data.ndim:
            raise InputError(f"axes {axes!r} do not match {path}'s {data.ndim} dimensions {data.shape}")
        series_axes = axes
    return _to_tczyx(data, series_axes, path), sizes, names


def _log_detail(message: str) -> str:
    """tifffile's log line without object reprs, e.g. 'invalid value offset 12066'."""
    text = re.sub(r"<[^>]*>\s*", "", message.splitlines()[0]).strip()
    return re.sub(r"^raised \w+\('?(.*?)'?\)$", r"\1", text) or "unreadable page"


def _check_extent(series: Any, path: Path) -> None:
    """A TIFF whose pages point past the end of their file was cut short."""
    for page in series.pages:
        if page is None:
            raise InputError(f"{path} is corrupt or truncated (a page of the image is missing)")
        size = page.parent.filehandle.size
        offsets = getattr(page, "dataoffsets", ())
        counts = getattr(page, "databytecounts", ())
        for offset, count in zip(offsets, counts):
            if offset + count > size:
                raise InputError(f"{path} is truncated: image data runs to byte {offset + count}, file has {size}")


def _tiff_metadata(tif: Any) -> tuple[PhysicalSizes, list[str]]:
    if tif.is_ome and tif.ome_metadata:
        return _ome_metadata(tif.ome_metadata)
    page = tif.pages[0]
    if tif.is_imagej and tif.imagej_metadata is not None:
        meta = tif.imagej_metadata
        unit = meta.get("unit")
        scale = unit_to_um(str(unit)) if unit else None  # no unit: sizes are in pixels
        xy = _resolution_um(page, scale)
        z = float(meta["spacing"]) * scale if scale is not None and "spacing" in meta else None
        labels = meta.get("Labels")
        channels = int(meta.get("channels", 1))
        names = [str(v) for v in labels[:channels]] if isinstance(labels, list) and len(labels) == channels else []
        return (z, xy[0], xy[1]), names
    unit = page.tags.get("ResolutionUnit")
    unit_value = int(unit.value) if unit is not None else 2
    scale = {2: 25400.0, 3: 10000.0}.get(unit_value)  # inch, centimetre; 1 = no unit
    y, x = _resolution_um(page, scale)
    return (None, y, x), []


def _resolution_um(page: Any, scale: float | None) -> tuple[float | None, float | None]:
    """(y, x) pixel size in um from the TIFF resolution tags (pixels per unit), None if absent or unitless."""
    out: list[float | None] = []
    for tag in ("YResolution", "XResolution"):
        value = page.tags.get(tag)
        if value is None or scale is None:
            out.append(None)
            continue
        num, den = value.value
        out.append(scale * den / num if num and den and (num, den) != (1, 1) else None)
    return out[0], out[1]


def _ome_metadata(xml: str) -> tuple[PhysicalSizes, list[str]]:
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return (None, None, None), []
    pixels = root.find("{*}Image/{*}Pixels")
    if pixels is None:
        return (None, None, None), []
    sizes: list[float | None] = []
    for axis in "ZYX":
        value = pixels.get(f"PhysicalSize{axis}")
        factor = unit_to_um(pixels.get(f"PhysicalSize{axis}Unit"))
        try:
            sizes.append(float(value) * factor if value is not None and factor is not None else None)
        except ValueError:
            sizes.append(None)
    names = [ch.get("Name") or f"C{i}" for i, ch in enumerate(pixels.findall("{*}Channel"))]
    return (sizes[0], sizes[1], sizes[2]), names


def _to_tczyx(data: np.ndarray, axes: str, path: Path) -> np.ndarray:
    """Reorder an array with tifffile axis letters to (T, C, Z, Y, X); unknown axes of size 1 are dropped."""
    axes = axes.upper()
    if "Y" not in axes or "X" not in axes:
        raise InputError(f"{path} has axes {axes!r} without Y and X; it is not an image stack")
    if "S" in axes:
        if "C" not in axes:
            axes = axes.replace("S", "C")
        elif data.shape[axes.index("S")] == 1:
            data, axes = data.squeeze(axes.index("S")), axes.replace("S", "")
        else:
            raise InputError(f"{path} has both colour samples and channels (axes {axes!r}); split them first")
    for letter in [a for a in axes if a not in "TCZYX"]:
        i = axes.index(letter)
        if data.shape[i] == 1:
            data, axes = data.squeeze(i), axes[:i] + axes[i + 1 :]
    unknown = [i for i, a in enumerate(axes) if a not in "TCZYX"]
    if unknown:
        if len(unknown) == 1 and "Z" not in axes:
            axes = axes.replace(axes[unknown[0]], "Z")
        else:
            sizes = ", ".join(str(data.shape[i]) for i in unknown)
            raise InputError(
                f"{path}: cannot tell which of the unlabelled axes (sizes {sizes}) of axes {axes!r} is Z; "
                "save it as OME-TIFF or an ImageJ hyperstack"
            )
    if len(set(axes)) != len(axes):
        raise InputError(f"{path} has repeated axes {axes!r}")
    for letter in "TCZ":
        if letter not in axes:
            data, axes = data[np.newaxis], letter + axes
    return np.transpose(data, [axes.index(a) for a in "TCZYX"])


def _pick_timepoint(tczyx: np.ndarray, timepoint: int | None, path: Path) -> np.ndarray:
    count = tczyx.shape[0]
    if timepoint is None:
        if count > 1:
            raise InputError(f"{path} has {count} timepoints; choose one with --timepoint (0..{count - 1})")
        return tczyx[0]
    if not 0 <= timepoint < count:
        raise InputError(f"{path} has {count} timepoint(s); --timepoint {timepoint} is out of range")
    return tczyx[timepoint]


def _channel_names(names: list[str], count: int) -> list[str]:
    return list(names) if len(names) == count else [f"C{i}" for i in range(count)]


def _channel_indices(channel: ChannelChoice, names: list[str], path: Path) -> list[int]:
    if channel is None:
        return list(range(len(names)))
    choices = [channel] if isinstance(channel, (int, str, np.integer)) else list(channel)
    out: list[int] = []
    listed = ", ".join(names)
    for choice in choices:
        if isinstance(choice, str) and not choice.lstrip("-").isdigit():
            if choice not in names:
                raise InputError(f"{path} has no channel named {choice!r} (channels: {listed})")
            out.append(names.index(choice))
            continue
        index = int(choice)
        if not 0 <= index < len(names):
            raise InputError(f"{path} has {len(names)} channel(s) ({listed}); --channel {index} is out of range")
        out.append(index)
    return out


def _read_bioio(
    path: Path, plugin: str, extra: str, timepoint: int | None
) -> tuple[np.ndarray, PhysicalSizes, list[str]]:
    """Read one timepoint of a CZI / OME-Zarr through bioio and its plugin (optional extras) as (C, Z, Y, X)."""
    try:
        from importlib import import_module

        from bioio import BioImage

        reader = import_module(plugin).Reader
    except ImportError:
        raise InputError(
            f"reading {path.name} needs the optional extra '{extra}': pip install 'sparsessp[{extra}]'"
        ) from None
    with _captured_logs("bioio", logging.WARNING) as logged:
        try:
            image = BioImage(path, reader=reader)
            dims = image.dims
            count = int(dims.T)
            if timepoint is None and count > 1:
                raise InputError(f"{path} has {count} timepoints; choose one with --timepoint (0..{count - 1})")
            t = 0 if timepoint is None else timepoint
            if not 0 <= t < count:
                raise InputError(f"{path} has {count} timepoint(s); --timepoint {t} is out of range")
            order = "CZYXS" if "S" in dims.order and int(dims.S) > 1 else "CZYX"
            data = np.asarray(image.get_image_data(order, T=t))
            if order.endswith("S"):
                if data.shape[0] > 1:
                    raise InputError(f"{path} has both colour samples and channels; split them first")
                data = np.moveaxis(data[0], -1, 0)
            pps = image.physical_pixel_sizes
            z, y, x = (float(f"{v:.9g}") if v is not None and v > 0 else None for v in (pps.Z, pps.Y, pps.X))
            names = [str(n) for n in (image.channel_names or [])]
        except UserError:
            raise
        except Exception as exc:  # any reader failure on a user's file is an input problem
            detail = logged[0] if logged else str(exc)
            detail = detail.strip().splitlines()[0] if detail.strip() else exc.__class__.__name__
            raise InputError(f"{path} is corrupt or unreadable ({detail.split('error=')[-1]})") from None
    return data, (z, y, x), names


def write_ome_tiff(
    path: str | Path,
    data: np.ndarray,
    physical_sizes: PhysicalSizes = (None, None, None),
    channel_names: Sequence[str] | None = None,
    description: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``data`` (C, Z, Y, X) or (Z, Y, X) as an OME-TIFF with physical sizes (um) and channel names.

    Written atomically (no partial file on error); an existing file is refused unless ``overwrite``.
    float64 is stored as float32; other dtypes (float32, uint16, uint8, ...) are kept.
    """
    import tifffile

    path = Path(path)
    if path.exists() and not overwrite:
        raise UserError(f"{path} exists; refusing to overwrite it (use --overwrite)")
    array = np.asarray(data)
    if array.ndim == 3:
        array = array[np.newaxis]
    if array.ndim != 4:
        raise ValueError(f"write_ome_tiff expects (C, Z, Y, X) or (Z, Y, X) data, got shape {array.shape}")
    if array.dtype == np.float64:
        array = array.astype(np.float32)
    metadata: dict[str, object] = {"axes": "CZYX"}
    for axis, size in zip("ZYX", physical_sizes):
        if size is not None:
            metadata[f"PhysicalSize{axis}"] = float(size)
            metadata[f"PhysicalSize{axis}Unit"] = "µm"
    if channel_names is not None:
        names = [str(n) for n in channel_names]
        if len(names) != array.shape[0]:
            raise ValueError(f"{len(names)} channel names for {array.shape[0]} channels")
        metadata["Channel"] = {"Name": names}
    if description:
        metadata["Description"] = description
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, np.ascontiguousarray(array), ome=True, metadata=metadata, photometric="minisblack")
    return path
