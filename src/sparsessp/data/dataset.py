"""The training data: prepared volumes per split, and random sparse-view patches drawn from them.

:class:`PatchDataset` item ``i`` of epoch ``e`` depends only on ``(seed, e, i)``: the record is the
``i mod n``-th of a per-epoch permutation of the records (so every volume is used once per ``n`` items),
then a random crop, random flips and the sparse-view simulation, all drawn from
``numpy.random.default_rng((seed, e, i))``. It holds only numpy arrays and plain values, so it pickles
into DataLoader workers; call :meth:`PatchDataset.set_epoch` before each epoch's iterator is created.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import Dataset

from sparsessp.data.manifest import read_manifest
from sparsessp.data.prepare import cache_dir_for, prepare_pair
from sparsessp.errors import ConfigError, InputError

if TYPE_CHECKING:
    from sparsessp.config import Config


@dataclass
class VolumeRecord:
    """One prepared volume: dense TL ``signal`` and ``target`` (Z, Y, X) float32, z-scored, 0.29 um grid."""

    structure: str
    task_id: int
    signal: np.ndarray
    target: np.ndarray
    source: Path


def load_split(cfg: Config, split: str) -> list[VolumeRecord]:
    """Every volume of ``split`` for ``data.structures`` (or only ``data.single_structure``), prepared via the cache.

    ``task_id`` is the structure's index in ``data.structures``. Arrays are read-only memory maps of the cache.
    """
    root = Path(cfg.data.root)
    cache = cache_dir_for(cfg, root)
    structures = [cfg.data.single_structure] if cfg.data.single_structure else list(cfg.data.structures)
    records: list[VolumeRecord] = []
    for structure in structures:
        task_id = cfg.data.structures.index(structure)
        for entry in read_manifest(root, structure, split):
            pair = prepare_pair(entry, cache, mmap=True)
            if pair.signal.shape != pair.target.shape:
                raise InputError(f"{entry.path}: signal {pair.signal.shape} and target {pair.target.shape} differ")
            records.append(VolumeRecord(structure, task_id, pair.signal, pair.target, entry.path))
    return records


def _pad_to(volume: np.ndarray, patch: tuple[int, int, int]) -> np.ndarray:
    """Pad each axis shorter than the patch, centred: by reflection, or by edge copy for a 1-voxel axis."""
    for axis, (size, want) in enumerate(zip(volume.shape, patch)):
        if size < want:
            short = want - size
            pads = [(0, 0)] * 3
            pads[axis] = (short // 2, short - short // 2)
            volume = np.pad(volume, pads, mode="reflect" if size > 1 else "edge")
    return volume


class PatchDataset(Dataset):
    """Random (sparse TL, dense target) patches: ``signal (1, ceil(D / r), H, W)``, ``target (1, D, H, W)``.

    The sparse view keeps TL slices ``0, r, 2r, ...`` of the cropped patch (``ceil(D / r)`` of them, all
    inside the window, for any ratio r >= 1); the target stays dense. The window may start at any z. Along an
    axis where the volume is smaller than the patch, the whole extent is taken and padded by reflection,
    centred (edge copy for a 1-voxel axis).
    """

    def __init__(
        self,
        records: Sequence[VolumeRecord],
        patch: Sequence[int],
        sparse_ratio: int,
        flip: bool = True,
        samples_per_epoch: int | None = None,
        seed: int = 0,
    ) -> None:
        if not records:
            raise InputError("no volumes to train on: the split's manifests list no files")
        self.patch = (int(patch[0]), int(patch[1]), int(patch[2]))
        self.sparse_ratio = int(sparse_ratio)
        if self.sparse_ratio < 1:
            raise ConfigError(f"data.sparse_ratio must be at least 1, got {sparse_ratio}")
        self.records = list(records)
        self.flip = bool(flip)
        self.samples_per_epoch = samples_per_epoch
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose items ``__getitem__`` returns."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.samples_per_epoch or len(self.records)

    def record_index(self, index: int) -> int:
        """Which record item ``index`` of the current epoch is cut from."""
        order = np.random.default_rng((self.seed, self.epoch)).permutation(len(self.records))
        return int(order[index % len(self.records)])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        return self.item(index)

    def item(self, index: int) -> dict[str, torch.Tensor]:
        """Item ``index`` of the epoch, also past ``len``: the cycle over the records continues with new random
        crops (the task-homogeneous sampler draws such items for structures with fewer volumes than a batch)."""
        if index < 0:
            raise IndexError(index)
        record = self.records[self.record_index(index)]
        rng = np.random.default_rng((self.seed, self.epoch, index))
        starts = [int(rng.integers(0, max(size - want, 0) + 1)) for size, want in zip(record.signal.shape, self.patch)]
        window = tuple(slice(s, s + w) for s, w in zip(starts, self.patch))
        signal = _pad_to(np.asarray(record.signal[window]), self.patch)
        target = _pad_to(np.asarray(record.target[window]), self.patch)
        flips = rng.random(3) < 0.5
        if self.flip:
            axes = tuple(int(a) for a in np.flatnonzero(flips))
            if axes:
                signal, target = np.flip(signal, axes), np.flip(target, axes)
        sparse = signal[:: self.sparse_ratio]
        return {
            "signal": torch.from_numpy(np.array(sparse, dtype=np.float32)[np.newaxis]),
            "target": torch.from_numpy(np.array(target, dtype=np.float32)[np.newaxis]),
            "task_id": torch.tensor(record.task_id, dtype=torch.int64),
        }
