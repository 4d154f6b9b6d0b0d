"""The data order of training: mixed batches (a DistributedSampler that can start part-way through an
epoch) or task-homogeneous batches (Multi-Net: one structure's full batch per step).

The order of epoch ``e`` depends only on (seed, e, number of ranks, rank), as in torch's
DistributedSampler; ``start`` skips what a rank already consumed, so a resumed run sees exactly the
batches an uninterrupted run would have seen next, without loading the skipped ones.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
from torch.utils.data import Dataset, DistributedSampler, Sampler


class ResumableSampler(DistributedSampler):
    """Shuffled, rank-sharded indices of one epoch, from position ``start`` of this rank's share."""

    def __init__(self, length: int, num_replicas: int, rank: int, seed: int) -> None:
        super().__init__(range(length), num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=False)
        self.start = 0

    def set_position(self, epoch: int, start: int) -> None:
        """Choose the epoch (its shuffle) and how many of this rank's items to skip."""
        self.set_epoch(epoch)
        self.start = max(0, min(int(start), self.num_samples))

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        return iter(indices[self.start :])

    def __len__(self) -> int:
        return self.num_samples - self.start


class TaskBatchSampler(Sampler[list[int]]):
    """Task-homogeneous batches: every step is ONE structure's full batch, structures in turn (Multi-Net).

    The paper trains each Multi-Net member alone, on full batches of its own structure. An epoch has as
    many steps as the mixed sampler's (``ceil(ceil(len / ranks) / batch_size)``); step ``j`` belongs to
    task ``order[j % T]`` (``order``: the epoch's shuffle of the tasks present), so every member gets the
    same number of steps. At every step all ranks take the same task: the step's ``batch_size x ranks``
    items (one global batch) are cut into per-rank slices, so N ranks of batch B equal one process of
    batch N x B. A task's items are the dataset indices whose record is of that task, in rounds
    (``k + m * n`` for its records' positions ``k`` in the epoch's order of ``n`` records, round ``m``
    shuffled), so a structure with fewer volumes than a batch still gets distinct random patches.
    The order depends only on (seed, epoch); ``set_position`` skips the batches a rank already consumed.
    """

    def __init__(
        self, dataset: Any, batch_size: int, num_replicas: int, rank: int, seed: int
    ) -> None:
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.seed = int(seed)
        self.epoch = 0
        self.start = 0
        self.num_samples = math.ceil(len(dataset) / self.num_replicas)
        self.steps = math.ceil(self.num_samples / self.batch_size)

    def set_position(self, epoch: int, start_batch: int) -> None:
        """Choose the epoch and how many of its batches to skip."""
        self.epoch = int(epoch)
        self.start = max(0, min(int(start_batch), self.steps))

    def _task_items(self, positions: list[int], task: int) -> Iterator[int]:
        """Endless stream of a task's item indices, round after round, each round shuffled."""
        n = len(self.dataset.records)
        for round_ in itertools.count():
            rng = np.random.default_rng((self.seed, self.epoch, task, round_))
            for k in rng.permutation(positions):
                yield int(k) + round_ * n

    def global_batches(self) -> Iterator[tuple[int, list[int]]]:
        """``(task, items)`` of every step of the epoch, all ranks' items together (``batch_size x ranks``)."""
        records = self.dataset.records
        order = [self.dataset.record_index(k) for k in range(len(records))]
        positions: dict[int, list[int]] = {}
        for k, record in enumerate(order):
            positions.setdefault(int(records[record].task_id), []).append(k)
        tasks = sorted(positions)
        tasks = [tasks[i] for i in np.random.default_rng((self.seed, self.epoch)).permutation(len(tasks))]
        streams = {task: self._task_items(positions[task], task) for task in tasks}
        size = self.batch_size * self.num_replicas
        for step in range(self.steps):
            task = tasks[step % len(tasks)]
            yield task, list(itertools.islice(streams[task], size))

    def __iter__(self) -> Iterator[list[int]]:
        lo, hi = self.rank * self.batch_size, (self.rank + 1) * self.batch_size
        for step, (_, items) in enumerate(self.global_batches()):
            if step >= self.start:
                yield items[lo:hi]

    def __len__(self) -> int:
        return self.steps - self.start


class CycledItems(Dataset):
    """A :class:`~sparsessp.data.dataset.PatchDataset` whose items past its length are valid (``item``),
    for :class:`TaskBatchSampler`."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        return self.dataset.item(index)
