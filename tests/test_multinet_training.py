"""Multi-Net as the paper trains it: pytorch_fnet members, each step one structure's full batch."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from conftest import tiny_train_config
from sparsessp.cli.main import main
from sparsessp.config import load_config
from sparsessp.data.dataset import PatchDataset, load_split
from sparsessp.engine.checkpoint import load_checkpoint
from sparsessp.engine.sampler import CycledItems, TaskBatchSampler
from sparsessp.engine.seeding import seed_everything
from sparsessp.models.compat.fnet import FNet3D
from sparsessp.models.conditioning.multinet import MultiNetwork
from sparsessp.models.registry import build_model

pytestmark = pytest.mark.usefixtures("one_thread")

STRUCTURES = ["dna", "lamin_b1", "tom20"]
MULTINET = ["model.conditioning=multinet", "model.channels=[4, 8]"]


class _Record:
    def __init__(self, task_id: int) -> None:
        self.task_id = task_id
        self.structure = STRUCTURES[task_id]
        self.signal = self.target = np.zeros((8, 16, 16), np.float32)


def _dataset(counts: list[int], samples: int | None = None) -> PatchDataset:
    records = [_Record(t) for t, n in enumerate(counts) for _ in range(n)]
    return PatchDataset(records, (8, 16, 16), 2, samples_per_epoch=samples, seed=3)


def test_task_batches_are_full_one_structure_each_and_cycle() -> None:
    dataset = _dataset([1, 4, 2])  # a structure with one volume still fills batches of 4 with distinct crops
    sampler = TaskBatchSampler(dataset, batch_size=4, num_replicas=1, rank=0, seed=3)
    sampler.set_position(epoch=2, start_batch=0)
    dataset.set_epoch(2)
    batches = list(sampler)
    assert len(batches) == sampler.steps == math.ceil(len(dataset) / 4) == 2
    sampler = TaskBatchSampler(_dataset([1, 4, 2], samples=40), batch_size=4, num_replicas=1, rank=0, seed=3)
    sampler.set_position(epoch=2, start_batch=0)
    batches = list(sampler)
    assert len(batches) == 10
    tasks = []
    for batch in batches:
        assert len(batch) == 4 and len(set(batch)) == 4
        owners = {sampler.dataset.records[sampler.dataset.record_index(i)].task_id for i in batch}
        assert len(owners) == 1
        tasks.append(owners.pop())
    assert tasks[:3] == tasks[3:6] == tasks[6:9] and sorted(tasks[:3]) == [0, 1, 2]  # structures in turn
    sampler.set_position(epoch=2, start_batch=4)
    assert list(sampler) == batches[4:]  # resume skips consumed batches, the rest is unchanged
    sampler.set_position(epoch=3, start_batch=0)
    assert list(sampler) != batches  # the order depends on the epoch


def test_two_ranks_take_halves_of_one_global_batch_of_one_structure() -> None:
    dataset = _dataset([2, 3, 2], samples=24)
    one = TaskBatchSampler(dataset, batch_size=4, num_replicas=1, rank=0, seed=0)
    ranks = [TaskBatchSampler(dataset, batch_size=2, num_replicas=2, rank=r, seed=0) for r in (0, 1)]
    for s in (one, *ranks):
        s.set_position(epoch=1, start_batch=0)
    merged = [a + b for a, b in zip(*(list(s) for s in ranks))]
    assert merged == list(one)


def test_a_member_learns_only_from_its_structure_on_a_full_batch(tmp_path: Path) -> None:
    config = tiny_train_config(tmp_path, STRUCTURES, seed=0, samples_per_epoch=12)
    cfg = load_config(config, MULTINET)
    assert cfg.per_task_batches
    model = build_model(cfg)
    assert isinstance(model, MultiNetwork) and all(isinstance(m, FNet3D) for m in model.networks)
    dataset = PatchDataset(load_split(cfg, "train"), cfg.data.patch, cfg.data.sparse_ratio, samples_per_epoch=12)
    sampler = TaskBatchSampler(dataset, cfg.train.batch_size, 1, 0, seed=0)
    sampler.set_position(0, 0)
    seen = set()
    for batch in DataLoader(CycledItems(dataset), batch_sampler=sampler):
        assert batch["signal"].shape[0] == cfg.train.batch_size
        task = int(batch["task_id"][0])
        assert bool((batch["task_id"] == task).all())
        model.zero_grad(set_to_none=True)
        torch.nn.functional.mse_loss(model(batch["signal"], batch["task_id"]), batch["target"]).backward()
        for t, member in enumerate(model.networks):
            grads = [p.grad for p in member.parameters()]
            if t == task:
                assert all(g is not None for g in grads) and sum(float(g.abs().sum()) for g in grads) > 0
            else:
                assert all(g is None for g in grads), (t, task)
        seen.add(task)
    assert seen == {0, 1, 2}


def _changed_members(run: Path, cfg_overrides: list[str], config: Path) -> list[int]:
    cfg = load_config(config, cfg_overrides)
    seed_everything(cfg.train.seed)  # the trainer builds its model right after this call
    initial = build_model(cfg).state_dict()
    trained = load_checkpoint(run / "checkpoints" / "last.ckpt")["model"]
    changed = set()
    for key, value in initial.items():
        if not torch.equal(value, trained[key]):
            changed.add(int(key.split(".")[1]))
    return sorted(changed)


def test_training_one_step_updates_one_member_only(tmp_path: Path) -> None:
    config = tiny_train_config(tmp_path, STRUCTURES, seed=0, samples_per_epoch=12)
    overrides = [*MULTINET, "train.max_steps=1", "train.val_every=100"]
    mixed = [*overrides, "train.batches=mixed"]
    for name, sets in (("run", overrides), ("mixed", mixed)):
        argv = ["train", "--config", str(config), "--out", str(tmp_path / name)]
        assert main([*argv, *(a for o in sets for a in ("--set", o))]) == 0
    assert len(_changed_members(tmp_path / "run", overrides, config)) == 1
    assert len(_changed_members(tmp_path / "mixed", mixed, config)) > 1  # a mixed batch of 2 touches two members


def test_per_task_batches_resume_exactly_mid_epoch(tmp_path: Path) -> None:
    config = tiny_train_config(tmp_path, STRUCTURES, seed=0, samples_per_epoch=12, val_every=100)
    sets = [a for o in MULTINET for a in ("--set", o)]
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert main(["train", "--config", str(config), "--out", str(straight), *sets, "--set", "train.max_steps=5"]) == 0
    assert main(["train", "--config", str(config), "--out", str(split), *sets, "--set", "train.max_steps=2"]) == 0
    assert main(["train", "--out", str(split), "--resume", "--set", "train.max_steps=5"]) == 0
    a = load_checkpoint(straight / "checkpoints" / "last.ckpt")
    b = load_checkpoint(split / "checkpoints" / "last.ckpt")
    assert a["step"] == b["step"] == 5
    assert all(torch.equal(value, b["model"][key]) for key, value in a["model"].items())


def test_fnet_member_needs_a_patch_depth_that_r_divides() -> None:
    """The skeleton's checks allow any r; a pytorch_fnet member resamples by r, so it needs r | depth."""
    from sparsessp.errors import ConfigError

    cfg = load_config(None, [*MULTINET, "data.patch=[8, 16, 16]", "data.sparse_ratio=3",
                             "data.structures=[dna,lamin_b1]"])
    with pytest.raises(ConfigError, match=r"depth 8 must be a multiple of data\.sparse_ratio 3 for a pytorch_fnet"):
        build_model(cfg)
