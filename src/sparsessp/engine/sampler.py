"""The data order of training: a DistributedSampler that can start part-way through an epoch.

The order of epoch ``e`` depends only on (seed, e, number of ranks, rank), as in torch's
DistributedSampler; ``start`` skips the items a rank already consumed, so a resumed run sees exactly
the batches an uninterrupted run would have seen next, without loading the skipped ones.
"""

from __future__ import annotations

from collections.abc import Iterator

from torch.utils.data import DistributedSampler


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
