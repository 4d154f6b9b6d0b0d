"""Preparation of training volumes: z-score, resample to the 0.29 um grid, cache; and RepMode .pth import.

A prepared pair is the TL signal and the target structure of one file, each resampled from its physical
voxel size to :data:`~sparsessp.structures.TARGET_VOXEL_UM` (linear interpolation, ``scipy.ndimage.zoom``
with order 1; factors rounded to 5 decimals, so AllenCell's 0.108 um gives RepMode's 0.37241) and then
z-scored per volume. An axis whose size the file does not give is assumed to be on the grid already
(logged as a warning). Volumes already on the grid are not interpolated.

The cache holds one ``<key>.npy`` per prepared channel and a ``<key>.json`` beside it (written last, so an
entry is complete only when its JSON exists); the key hashes the source's absolute path, mtime and size, the
channel, timepoint and grid, so editing a file or an option prepares it again. Writes are atomic, so
several processes (e.g. DDP ranks) may prepare at once.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import pickle
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sparsessp.data.io import PhysicalSizes, read_volume, write_ome_tiff
from sparsessp.data.manifest import SPLITS, ManifestEntry, manifest_path, read_manifest
from sparsessp.errors import CheckpointError, InputError, UserError
from sparsessp.fileio import atomic_path, atomic_write_text
from sparsessp.structures import TARGET_VOXEL_UM

if TYPE_CHECKING:
    from sparsessp.config import Config

log = logging.getLogger("sparsessp.data")

CACHE_VERSION = 1
_TOLERANCE = 1e-3


@dataclass(frozen=True)
class PreparedPair:
    """A prepared (signal, target) pair on the target grid; arrays may be read-only memory maps."""

    signal: np.ndarray
    target: np.ndarray
    source: Path
    cached: bool


@dataclass
class PrepareSummary:
    """What :func:`prepare_dataset` did: volumes per (structure, split), how many came from the cache."""

    root: Path
    cache_dir: Path
    volumes: dict[tuple[str, str], int] = field(default_factory=dict)
    prepared: int = 0
    cached: int = 0

    @property
    def total(self) -> int:
        return self.prepared + self.cached


def grid_factors(physical_sizes: PhysicalSizes, target_um: float = TARGET_VOXEL_UM) -> tuple[float, float, float]:
    """Zoom factor per axis (z, y, x) from the voxel size to ``target_um``; 1 where the size is unknown."""
    factors = [1.0 if size is None else round(size / target_um, 5) for size in physical_sizes]
    return factors[0], factors[1], factors[2]


def resample(volume: np.ndarray, factors: tuple[float, float, float]) -> np.ndarray:
    """Linear resampling of a (Z, Y, X) volume by ``factors``; a no-op (same array) when all are ~1."""
    if all(abs(f - 1.0) < _TOLERANCE for f in factors):
        return volume
    from scipy.ndimage import zoom

    shape = tuple(max(1, round(n * f)) for n, f in zip(volume.shape, factors))
    exact = tuple(s / n for s, n in zip(shape, volume.shape))
    return zoom(np.asarray(volume, dtype=np.float32), exact, order=1, mode="nearest")


def zscore(volume: np.ndarray) -> np.ndarray:
    """(volume - mean) / std as float32, with statistics in float64."""
    mean = float(volume.mean(dtype=np.float64))
    std = float(volume.std(dtype=np.float64))
    if std == 0.0:
        raise InputError("cannot z-score a constant volume")
    return ((np.asarray(volume, dtype=np.float64) - mean) / std).astype(np.float32)


def cache_dir_for(cfg: Config, root: Path | None = None) -> Path:
    """``data.cache_dir`` when set, else ``ROOT/.cache``."""
    if cfg.data.cache_dir is not None:
        return Path(cfg.data.cache_dir)
    return Path(root if root is not None else cfg.data.root) / ".cache"


def cache_key(path: Path, channel: int | str, timepoint: int | None, target_um: float = TARGET_VOXEL_UM) -> str:
    """Hash of a source file's identity (absolute path, mtime, size), the channel and the preparation options."""
    path = path.resolve()
    stat = path.stat()
    ident = {
        "version": CACHE_VERSION,
        "path": str(path),
        "mtime_ns": stat.st_mtime_ns,
        "size": stat.st_size,
        "channel": channel,
        "timepoint": timepoint,
        "grid_um": target_um,
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:32]


def prepare_pair(
    entry: ManifestEntry, cache_dir: str | Path, *, target_um: float = TARGET_VOXEL_UM, mmap: bool = True
) -> PreparedPair:
    """The prepared pair of one manifest entry, from the cache or made (and cached) now.

    Each channel is cached on its own, so a TL channel shared by several structures' entries (the DNA
    dataset reuses the other structures' files) is prepared and stored once.
    """
    cache_dir = Path(cache_dir)
    channels = {"signal": entry.channel_signal, "target": entry.channel_target}
    keys = {role: cache_key(entry.path, channel, entry.timepoint, target_um) for role, channel in channels.items()}
    arrays = {role: _load_cached(cache_dir, key, mmap) for role, key in keys.items()}
    missing = [role for role, array in arrays.items() if array is None]
    if missing:
        image = read_volume(entry.path, channel=[channels[r] for r in missing], timepoint=entry.timepoint)
        unknown = [axis for axis, size in zip("zyx", image.physical_sizes) if size is None]
        if unknown:
            log.warning("%s: no physical voxel size for axis %s; assuming the %g um grid",
                        entry.path, ",".join(unknown), target_um)
        factors = grid_factors(image.physical_sizes, target_um)
        for i, role in enumerate(missing):
            volume = zscore(resample(image.data[i], factors))
            meta = {
                "source": str(entry.path.resolve()),
                "channel": image.channel_names[i],
                "timepoint": entry.timepoint,
                "source_shape": list(image.data.shape[1:]),
                "physical_sizes_um": list(image.physical_sizes),
                "factors": list(factors),
                "shape": list(volume.shape),
            }
            _store(cache_dir, keys[role], volume, meta)
            arrays[role] = _load_cached(cache_dir, keys[role], mmap) if mmap else volume
    signal, target = arrays["signal"], arrays["target"]
    if signal is None or target is None:
        raise InputError(f"the cache in {cache_dir} could not be read back; remove it and prepare again")
    return PreparedPair(signal, target, entry.path, cached=not missing)


def _store(cache_dir: Path, key: str, volume: np.ndarray, meta: dict[str, Any]) -> None:
    """Write ``<key>.npy`` then ``<key>.json`` (the JSON marks a complete entry), each atomically."""
    try:
        with atomic_path(cache_dir / f"{key}.npy") as tmp, open(tmp, "wb") as fh:
            np.save(fh, volume)
        atomic_write_text(cache_dir / f"{key}.json", json.dumps(meta, indent=1))
    except PermissionError:
        raise InputError(f"cannot write the cache in {cache_dir}; set data.cache_dir to a writable folder") from None


def _load_cached(cache_dir: Path, key: str, mmap: bool) -> np.ndarray | None:
    """A cached volume, or None when absent or damaged (then it is prepared again)."""
    array_path, meta_path = cache_dir / f"{key}.npy", cache_dir / f"{key}.json"
    if not (array_path.is_file() and meta_path.is_file()):
        return None
    try:
        meta = json.loads(meta_path.read_text())
        array = np.load(array_path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError):
        return None
    if list(array.shape) != meta.get("shape") or array.dtype != np.float32:
        return None
    return array


def prepare_dataset(
    cfg: Config,
    splits: Iterable[str] = SPLITS,
    *,
    root: str | Path | None = None,
    structures: Sequence[str] | None = None,
    on_volume: Callable[[ManifestEntry, bool], None] | None = None,
) -> PrepareSummary:
    """Prepare (or find cached) every volume of ``splits`` for the structures training will use.

    Structures are ``structures`` when given, else ``data.structures``, or only ``data.single_structure``
    when set. ``on_volume(entry, cached)`` is called after each volume (e.g. for a progress bar).
    """
    root = Path(root if root is not None else cfg.data.root)
    cache = cache_dir_for(cfg, root)
    summary = PrepareSummary(root=root, cache_dir=cache)
    if structures is None:
        structures = [cfg.data.single_structure] if cfg.data.single_structure else list(cfg.data.structures)
    for split in splits:
        for structure in structures:
            entries = read_manifest(root, structure, split)
            summary.volumes[(structure, split)] = len(entries)
            for entry in entries:
                pair = prepare_pair(entry, cache, mmap=True)
                if pair.cached:
                    summary.cached += 1
                else:
                    summary.prepared += 1
                if on_volume is not None:
                    on_volume(entry, pair.cached)
    return summary


def _numpy_safe_globals() -> list[Any]:
    """numpy array reconstruction, safe to allow in a weights-only unpickler (it runs no user code)."""
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]
    kinds = (np.float16, np.float32, np.float64, np.uint8, np.uint16, np.int16, np.int32, np.int64, np.bool_)
    return [_reconstruct, np.ndarray, np.dtype, *(type(np.dtype(k)) for k in kinds)]


def load_pth(path: str | Path, *, trust_pickle: bool = False) -> Any:
    """Load a torch/pickle file; anything beyond tensors, numpy arrays and plain containers needs trust.

    Without ``trust_pickle`` the file is read only by torch's weights-only unpickler, which never runs code
    from the file; a file that needs more is refused with a :class:`CheckpointError` naming --trust-pickle.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise InputError(f"file not found: {path}")
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch's note on pickle protocols it was not written with
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        references = _pickled_globals(path)
        if references is None:
            raise InputError(f"{path} is corrupt or not a torch/pickle file (not a valid pickle stream)") from None
        if not trust_pickle:
            named = f" (it references {', '.join(references[:3])})" if references else ""
            raise CheckpointError(
                f"{path} is a pickled file whose loading can run code{named}; "
                "pass --trust-pickle only if you trust its source"
            ) from None
    except Exception as exc:  # torch raises RuntimeError/KeyError/EOFError/... for damaged files
        raise InputError(f"{path} is corrupt or not a torch/pickle file ({_first_line(exc)})") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except ModuleNotFoundError as exc:
        raise InputError(f"unpickling {path} needs the Python package {exc.name!r}: pip install {exc.name}") from None
    except Exception as exc:
        raise InputError(f"{path} could not be unpickled ({_first_line(exc)})") from None


def _pickled_globals(path: Path) -> list[str] | None:
    """The importable names a pickle refers to, read without unpickling; None when it is not a pickle.

    A torch zip file is asked through torch's own scanner; any other file is walked opcode by opcode.
    """
    import zipfile

    import torch

    safe = {f"{g.__module__}.{g.__qualname__}" for g in _numpy_safe_globals()}
    if zipfile.is_zipfile(path):
        try:
            return [g for g in torch.serialization.get_unsafe_globals_in_checkpoint(path) if g not in safe]
        except Exception:  # a damaged archive
            return None
    import pickletools

    names: list[str] = []
    strings: list[str] = []
    try:
        with open(path, "rb") as fh:
            for opcode, arg, _ in pickletools.genops(fh):
                if opcode.name == "GLOBAL":
                    names.append(str(arg).replace(" ", "."))
                elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                    names.append(f"{strings[-2]}.{strings[-1]}")
                elif isinstance(arg, str):
                    strings.append(arg)
    except Exception:  # not a pickle stream
        return None
    return [n for n in dict.fromkeys(names) if n not in safe]


def _first_line(exc: BaseException) -> str:
    """A short cause for a one-line message: the exception type and its first sentence."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    sentence = text.split(". ")[0][:100]
    return f"{exc.__class__.__name__}: {sentence}" if sentence else exc.__class__.__name__


def _as_volume(value: Any, what: str) -> np.ndarray:
    array = value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 3:
        raise InputError(f"{what}: expected a (1, D, H, W) volume, got shape {tuple(array.shape)}")
    return np.asarray(array, dtype=np.float32)


def import_pth(
    path: str | Path,
    root: str | Path,
    *,
    split: str | None = None,
    trust_pickle: bool = False,
    overwrite: bool = False,
) -> dict[str, int]:
    """Unpack a RepMode packed ``.pth`` split into a dataset root: OME-TIFFs plus ``<structure>/<split>.csv``.

    Each item becomes ``ROOT/<dataset>/images/<split>_<n>.ome.tif`` with channels [signal, target] on the
    0.29 um grid (RepMode's volumes are already resampled). ``split`` defaults to the file's stem when it is
    train, val or test. Returns the number of volumes per structure.
    """
    path, root = Path(path), Path(root)
    split = split or path.stem
    if split not in SPLITS:
        raise InputError(f"cannot tell the split of {path.name}; give it with --split ({', '.join(SPLITS)})")
    packed = load_pth(path, trust_pickle=trust_pickle)
    items = packed.get("data") if isinstance(packed, dict) else None
    if not isinstance(items, (list, tuple)) or not items:
        raise InputError(f"{path} is not a RepMode packed file (no non-empty 'data' list)")
    grouped: dict[str, list[tuple[dict[str, Any], np.ndarray, np.ndarray]]] = {}
    for n, item in enumerate(items):
        info = item.get("info") if isinstance(item, dict) else None
        imgs = item.get("imgs") if isinstance(item, dict) else None
        if not isinstance(info, dict) or "dataset" not in info or not isinstance(imgs, (list, tuple)) or len(imgs) < 2:
            raise InputError(f"{path}: item {n} lacks 'info' with 'dataset' or the two 'imgs' [signal, target]")
        signal = _as_volume(imgs[0], f"{path} item {n} signal")
        target = _as_volume(imgs[1], f"{path} item {n} target")
        if signal.shape != target.shape:
            raise InputError(f"{path} item {n}: signal {signal.shape} and target {target.shape} differ in shape")
        grouped.setdefault(str(info["dataset"]), []).append((info, signal, target))
    for structure in grouped:
        csv_path = manifest_path(root, structure, split)
        if csv_path.exists() and not overwrite:
            raise UserError(f"{csv_path} exists; refusing to overwrite it (use --overwrite)")
    grid = (TARGET_VOXEL_UM,) * 3
    for structure, volumes in grouped.items():
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(["path_czi", "channel_signal", "channel_target", "structureProteinName", "colony_position"])
        for n, (info, signal, target) in enumerate(volumes):
            relative = Path(structure) / "images" / f"{split}_{n:04d}.ome.tif"
            write_ome_tiff(root / relative, np.stack([signal, target]), grid, ["signal", "target"],
                           description=f"imported from {path.name}", overwrite=True)
            protein = str(info.get("structureProteinName", "") or "")
            colony = str(info.get("colony_position", "") or "")
            writer.writerow([relative.as_posix(), 0, 1, protein, colony])
        atomic_write_text(manifest_path(root, structure, split), text.getvalue())
    return {structure: len(volumes) for structure, volumes in grouped.items()}

