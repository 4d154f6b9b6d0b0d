"""Reading and writing microscopy volumes: OME-TIFF, ImageJ hyperstacks, plain TIFF, CZI and OME-Zarr.

Every reader returns an :class:`Image` whose ``data`` is always 4D ``(C, Z, Y, X)`` float32 (one timepoint,
the chosen channels), with physical voxel sizes in micrometres. ``Image.volume()`` gives the ``(Z, Y, X)``
array of a single-channel image. Anything wrong with a user's file (corrupt, truncated, 2D, ambiguous
axes, constant, NaN/Inf) is a one-line :class:`~sparsessp.errors.InputError` naming the file.

:func:`open_image` opens a file lazily as a :class:`LazyImage` (T, C, Z, Y, X): nothing is read until a
plane or a region is asked for, so a time-lapse larger than memory can be predicted piece by piece.
TIFF (OME-TIFF, ImageJ hyperstacks, plain) is read through tifffile's Zarr store, OME-Zarr (NGFF 0.4 /
0.5; a folder with or without the ``.zarr`` suffix, or one pyramid level's path) through zarr, CZI
through bioio-czi; all are part of the default install.
"""

from __future__ import annotations

import contextlib
import logging
import re
import xml.etree.ElementTree as ET
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
    "meter": 1e6,
    "metre": 1e6,
    "centimeter": 1e4,
    "millimeter": 1e3,
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


TIME_UNITS: dict[str, float] = {
    "s": 1.0, "sec": 1.0, "second": 1.0, "seconds": 1.0, "ms": 1e-3, "millisecond": 1e-3, "min": 60.0,
    "minute": 60.0, "minutes": 60.0, "h": 3600.0, "hour": 3600.0, "hours": 3600.0, "µs": 1e-6, "us": 1e-6,
}
"""Seconds per time unit (OME, ImageJ, NGFF names)."""


@dataclass
class LazyImage:
    """A microscopy file opened lazily: ``array`` (T, C, Z, Y, X), a dask array read on demand, plus metadata.

    ``time_increment`` is in seconds (None where the file does not say); ``notes`` are things about the
    metadata a user should know (e.g. OME-Zarr axes without units, taken as micrometres).
    """

    array: Any
    physical_sizes: PhysicalSizes
    channel_names: list[str]
    path: Path
    time_increment: float | None = None
    notes: list[str] = field(default_factory=list)
    closer: Any = None

    @property
    def shape(self) -> tuple[int, int, int, int, int]:
        return tuple(int(v) for v in self.array.shape)  # type: ignore[return-value]

    def read(self, index: tuple[Any, ...]) -> np.ndarray:
        """``array[index]`` as float32 numpy; a read failure is a one-line :class:`InputError` naming the file."""
        with _captured_logs("tifffile", logging.ERROR) as logged:
            try:
                data = np.asarray(self.array[index].compute(scheduler="synchronous"), dtype=np.float32)
            except MemoryError:
                raise InputError(f"{self.path} is too large to load into memory") from None
            except Exception as exc:  # any failure of a reader library on a user's file is an input problem
                raise InputError(f"{self.path} is corrupt or truncated and cannot be read ({_detail(exc)})") from None
        if logged:
            raise InputError(f"{self.path} is corrupt or truncated ({_log_detail(logged[0])})")
        return data

    def close(self) -> None:
        if self.closer is not None:
            self.closer.close()
            self.closer = None

    def __enter__(self) -> LazyImage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _detail(exc: BaseException) -> str:
    text = str(exc).strip()
    return re.sub(r"<[^>]*>\s*", "", text.splitlines()[0]) if text else exc.__class__.__name__


def open_image(path: str | Path, *, axes: str | None = None) -> LazyImage:
    """Open a TIFF, CZI or OME-Zarr lazily; ``axes`` overrides a TIFF's axis letters (e.g. ``"CZYX"``)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"input not found: {path}")
    kind = _file_kind(path)
    if kind == "tiff":
        return _open_tiff(path, axes)
    if kind == "zarr":
        return _open_zarr(path)
    return _open_czi(path)


def read_volume(
    path: str | Path,
    channel: ChannelChoice = None,
    timepoint: int | None = None,
    *,
    axes: str | None = None,
    min_z: int = 2,
    validate: bool = True,
) -> Image:
    """Read one timepoint of a microscopy file into memory as an :class:`Image`.

    ``channel``: an index or a channel name, or a list of them (kept in that order); None keeps every
    channel. ``timepoint`` must be given when the file holds several. ``axes`` overrides the axis letters
    of a TIFF (e.g. ``"CZYX"`` for a plain TIFF that stores channels first). ``min_z`` is the smallest
    z-depth accepted (2: a stack is needed). With ``validate``, the returned channels are checked for
    NaN/Inf and constant values.
    """
    with open_image(path, axes=axes) as image:
        path = image.path
        t = pick_timepoint(image.shape[0], timepoint, path)
        names = _channel_names(image.channel_names, image.shape[1])
        index = _channel_indices(channel, names, path)
        check_depth(image, min_z)
        data = np.stack([image.read((t, i)) for i in index])
        sizes = image.physical_sizes
    names = [names[i] for i in index]
    if validate:
        for i, name in enumerate(names):
            check_volume(data[i], f"channel {name!r} of {path}")
    return Image(np.ascontiguousarray(data), sizes, names, path)


def check_depth(image: LazyImage, min_z: int = 2) -> None:
    """A z-stack of at least ``min_z`` slices is needed; a 2D image is a one-line :class:`InputError`."""
    if image.shape[2] < min_z:
        raise InputError(
            f"{image.path} is a 2D image ({image.shape[3]} x {image.shape[4]}); "
            f"a z-stack of at least {min_z} slices is needed"
        )


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
    if name.endswith(".zarr") or is_zarr(path):
        return "zarr"
    if path.is_dir():
        raise InputError(f"{path} is a folder, not an image file (nor an OME-Zarr)")
    if name.endswith(_TIFF_EXTENSIONS):
        return "tiff"
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic[:2] in (b"II", b"MM"):
        return "tiff"
    if magic[:4] == b"ZISR":
        return "czi"
    raise InputError(f"{path}: unsupported file type (read: OME-TIFF, ImageJ or plain TIFF, CZI, OME-Zarr)")


def is_zarr(path: Path) -> bool:
    """Whether ``path`` is a Zarr group or array folder (v2 or v3), whatever its name."""
    return path.is_dir() and any((path / f).exists() for f in (".zattrs", ".zgroup", ".zarray", "zarr.json"))


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


def _open_tiff(path: Path, axes: str | None) -> LazyImage:
    import dask.array as da
    import tifffile
    import zarr

    tif = None
    try:
        with _captured_logs("tifffile", logging.ERROR) as logged:
            tif = tifffile.TiffFile(path)
            if not tif.series:
                raise InputError(f"{path}: no image data found (corrupt or truncated TIFF?)")
            series = tif.series[0]
            _check_extent(series, path)
            array = da.from_zarr(zarr.open_array(series.aszarr(level=0), mode="r"))
            series_axes = series.axes
            sizes, names, increment = _tiff_metadata(tif)
            if logged:
                raise InputError(f"{path} is corrupt or truncated ({_log_detail(logged[0])})")
    except UserError:
        if tif is not None:
            tif.close()
        raise
    except Exception as exc:  # tifffile and zarr raise many kinds on a corrupt file
        if tif is not None:
            tif.close()
        raise InputError(f"{path} is corrupt or truncated and cannot be read ({_detail(exc)})") from None
    if axes is not None:
        axes = axes.upper()
        if len(axes) != array.ndim:
            tif.close()
            raise InputError(f"axes {axes!r} do not match {path}'s {array.ndim} dimensions {array.shape}")
        series_axes = axes
    try:
        tczyx = _to_tczyx(array, series_axes, path)
    except UserError:
        tif.close()
        raise
    return LazyImage(tczyx, sizes, names, path, increment, closer=tif)


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


def _tiff_metadata(tif: Any) -> tuple[PhysicalSizes, list[str], float | None]:
    """Voxel sizes (um), channel names and time increment (s) of an OME, ImageJ or plain TIFF."""
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
        # ImageJ slice labels run channel-fastest over every plane: the first `channels` name the channels
        fits = isinstance(labels, list) and len(labels) >= channels and len(labels) % channels == 0
        names = [str(v) for v in labels[:channels]] if fits else []
        tunit = TIME_UNITS.get(str(meta.get("tunit", "s")).strip().lower(), 1.0)
        interval = meta.get("finterval")
        increment = float(interval) * tunit if isinstance(interval, (int, float)) and interval > 0 else None
        return (z, xy[0], xy[1]), names, increment
    unit = page.tags.get("ResolutionUnit")
    unit_value = int(unit.value) if unit is not None else 2
    scale = {2: 25400.0, 3: 10000.0}.get(unit_value)  # inch, centimetre; 1 = no unit
    y, x = _resolution_um(page, scale)
    return (None, y, x), [], None


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


def _ome_metadata(xml: str) -> tuple[PhysicalSizes, list[str], float | None]:
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return (None, None, None), [], None
    pixels = root.find("{*}Image/{*}Pixels")
    if pixels is None:
        return (None, None, None), [], None
    sizes: list[float | None] = []
    for axis in "ZYX":
        value = pixels.get(f"PhysicalSize{axis}")
        factor = unit_to_um(pixels.get(f"PhysicalSize{axis}Unit"))
        try:
            sizes.append(float(value) * factor if value is not None and factor is not None else None)
        except ValueError:
            sizes.append(None)
    names = [ch.get("Name") or f"C{i}" for i, ch in enumerate(pixels.findall("{*}Channel"))]
    increment = None
    with contextlib.suppress(TypeError, ValueError):
        value = float(pixels.get("TimeIncrement"))  # type: ignore[arg-type]
        factor = TIME_UNITS.get(str(pixels.get("TimeIncrementUnit", "s")).strip().lower(), 1.0)
        increment = value * factor if value > 0 else None
    return (sizes[0], sizes[1], sizes[2]), names, increment


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


def pick_timepoint(count: int, timepoint: int | None, path: Path) -> int:
    """The index of the one timepoint to read: given, or the only one; several need a choice."""
    if timepoint is None:
        if count > 1:
            raise InputError(f"{path} has {count} timepoints; choose one with --timepoint (0..{count - 1})")
        return 0
    if not 0 <= timepoint < count:
        raise InputError(f"{path} has {count} timepoint(s); --timepoint {timepoint} is out of range")
    return timepoint


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


def _open_czi(path: Path) -> LazyImage:
    import bioio_czi
    from bioio import BioImage

    with _captured_logs("bioio", logging.WARNING) as logged:
        try:
            image = BioImage(path, reader=bioio_czi.Reader)
            dims = image.dims
            if "S" in dims.order and int(dims.S) > 1:
                if int(dims.C) > 1:
                    raise InputError(f"{path} has both colour samples and channels; split them first")
                array = image.get_image_dask_data("TSZYX")
            else:
                array = image.get_image_dask_data("TCZYX")
            pps = image.physical_pixel_sizes
            z, y, x = (float(f"{v:.9g}") if v is not None and v > 0 else None for v in (pps.Z, pps.Y, pps.X))
            names = [str(n) for n in (image.channel_names or [])]
            interval = image.time_interval
            increment = _seconds(interval)
        except UserError:
            raise
        except Exception as exc:  # any reader failure on a user's file is an input problem
            detail = logged[0] if logged else _detail(exc)
            detail = detail.strip().splitlines()[0] if detail.strip() else exc.__class__.__name__
            raise InputError(f"{path} is corrupt or unreadable ({detail.split('error=')[-1]})") from None
    return LazyImage(array, (z, y, x), names, path, increment)


def _seconds(interval: Any) -> float | None:
    """A bioio time interval (a pint quantity, a timedelta or a number of seconds) in seconds."""
    if interval is None:
        return None
    with contextlib.suppress(Exception):
        if hasattr(interval, "to"):
            value = float(interval.to("second").magnitude)
        elif hasattr(interval, "total_seconds"):
            value = float(interval.total_seconds())
        else:
            value = float(interval)
        return value if value > 0 else None
    return None


def _zarr_multiscales(attrs: dict[str, Any]) -> dict[str, Any] | None:
    ms = attrs.get("multiscales") or (attrs.get("ome") or {}).get("multiscales")
    return ms[0] if isinstance(ms, list) and ms and isinstance(ms[0], dict) else None


def _open_zarr(path: Path) -> LazyImage:
    """An OME-Zarr image (NGFF 0.4 or 0.5): the group, or one of its pyramid levels (an array's path)."""
    import dask.array as da
    import zarr

    try:
        node = zarr.open(str(path), mode="r")
    except Exception:  # no .zgroup / .zarray / zarr.json, or an unreadable one
        raise InputError(f"{path} is not a readable OME-Zarr: no valid Zarr group or array metadata there") from None
    try:
        level = None
        if isinstance(node, zarr.Array):
            level, node = path.name, zarr.open_group(str(path.parent), mode="r")
        multiscale = _zarr_multiscales(dict(node.attrs))
        if multiscale is None:
            raise InputError(f"{path} is a Zarr store without OME-Zarr (NGFF) multiscales metadata")
        axes = [a if isinstance(a, dict) else {"name": a} for a in multiscale.get("axes", list("tczyx"))]
        datasets = multiscale["datasets"]
        dataset = next((d for d in datasets if d["path"] == level), None) if level else datasets[0]
        if dataset is None:
            raise InputError(f"{path} is not one of the pyramid levels its OME-Zarr metadata lists")
        scale = next(
            (t["scale"] for t in dataset.get("coordinateTransformations", []) if t.get("type") == "scale"),
            [1.0] * len(axes),
        )
        array = node[dataset["path"]]
        if len(axes) != array.ndim or len(scale) != array.ndim:
            raise InputError(f"{path}: its OME-Zarr metadata names {len(axes)} axes for a {array.ndim}D array")
        lazy = da.from_zarr(array)
        omero = (dict(node.attrs).get("omero") or (dict(node.attrs).get("ome") or {}).get("omero") or {})
        names = [str(ch.get("label", f"C{i}")) for i, ch in enumerate(omero.get("channels", []))]
    except UserError:
        raise
    except Exception as exc:  # zarr and fsspec raise many kinds on a broken store
        raise InputError(f"{path} is not a readable OME-Zarr ({_detail(exc)})") from None
    letters = "".join(str(a.get("name", "?"))[:1].upper() for a in axes)
    sizes: dict[str, float | None] = {}
    notes: list[str] = []
    unitless = []
    increment = None
    for axis, letter, value in zip(axes, letters, scale):
        if letter in "ZYX":
            unit = axis.get("unit")
            if unit is None:
                unitless.append(letter.lower())
            factor = unit_to_um(unit)
            sizes[letter] = float(value) * factor if factor is not None and value > 0 else None
        elif letter == "T" and axis.get("unit") is not None and value > 0:
            factor = TIME_UNITS.get(str(axis["unit"]).lower())
            increment = float(value) * factor if factor is not None else None
    if unitless:
        notes.append(f"{path}: its OME-Zarr axes {', '.join(unitless)} carry no unit; taken as micrometres")
    tczyx = _to_tczyx(lazy, letters, path)
    return LazyImage(tczyx, (sizes.get("Z"), sizes.get("Y"), sizes.get("X")), names, path, increment, notes)


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
