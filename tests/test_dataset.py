"""The training dataset: load_split from manifests and PatchDataset's patches, determinism, flips, sparse view."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from sparsessp.config import config_from_dict
from sparsessp.data.dataset import PatchDataset, VolumeRecord, load_split
from sparsessp.data.io import write_ome_tiff
from sparsessp.errors import ConfigError, InputError

PATCH = (8, 16, 16)


def make_root(root: Path, structures: tuple[str, ...], count: int = 2) -> None:
    """Per structure a train.csv of ``count`` tiny 3-channel OME-TIFFs [TL, DNA, target] on the 0.29 um grid."""
    rng = np.random.default_rng(0)
    for structure in structures:
        lines = ["path_czi,channel_signal,channel_target,structureProteinName,colony_position\n"]
        for i in range(count):
            rel = f"{structure}/{i}.ome.tif"
            write_ome_tiff(root / rel, rng.random((3, 10, 20, 18), dtype=np.float32), (0.29, 0.29, 0.29))
            lines.append(f"{rel},0,2,,\n")
        (root / structure / "train.csv").write_text("".join(lines))


def coded(shape: tuple[int, int, int], task_id: int = 0, name: str = "x") -> VolumeRecord:
    """A record whose every voxel value is unique (its flat index) and target = signal + 0.5."""
    signal = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    return VolumeRecord(name, task_id, signal, signal + 0.5, Path(f"{name}.tif"))


def test_load_split_task_ids_and_single_structure(tmp_path: Path) -> None:
    make_root(tmp_path, ("dna", "tom20"))
    data = {"root": str(tmp_path), "structures": ["lamin_b1", "tom20", "dna"], "patch": list(PATCH), "sparse_ratio": 4}
    tree = {"data": data, "model": {"channels": [4, 8]}}
    with pytest.raises(InputError, match="no manifest for structure 'lamin_b1'"):
        load_split(config_from_dict(tree), "train")
    cfg = config_from_dict(tree, ["data.single_structure=dna"])
    records = load_split(cfg, "train")
    assert [(r.structure, r.task_id) for r in records] == [("dna", 2), ("dna", 2)]
    assert records[0].signal.shape == records[0].target.shape == (10, 20, 18)
    assert records[0].signal.dtype == np.float32 and records[0].source == tmp_path / "dna/0.ome.tif"
    assert float(np.asarray(records[0].target).std()) == pytest.approx(1.0, abs=1e-4)
    both = load_split(config_from_dict(tree, ["data.structures=[tom20, dna]"]), "train")
    assert [r.task_id for r in both] == [0, 0, 1, 1]
    assert (tmp_path / ".cache").is_dir()


def test_patch_shapes_and_dtypes() -> None:
    dataset = PatchDataset([coded((12, 20, 24), task_id=3)], PATCH, sparse_ratio=4, samples_per_epoch=5)
    assert len(dataset) == 5
    item = dataset[0]
    assert item["signal"].shape == (1, 2, 16, 16) and item["target"].shape == (1, 8, 16, 16)
    assert item["signal"].dtype == item["target"].dtype == torch.float32
    assert item["task_id"].dtype == torch.int64 and item["task_id"].ndim == 0 and int(item["task_id"]) == 3
    with pytest.raises(IndexError):
        dataset[5]


def test_sparse_slices_and_flips_match_the_target() -> None:
    r = 4
    dataset = PatchDataset([coded((12, 20, 24))], PATCH, sparse_ratio=r, samples_per_epoch=16, seed=5)
    flipped_z = 0
    for i in range(len(dataset)):
        item = dataset[i]
        target = item["target"][0]
        assert torch.equal(item["signal"][0], target[::r] - 0.5)  # slices 0, r, 2r of the same patch
        flipped_z += bool(target[1, 0, 0] < target[0, 0, 0])
    assert 0 < flipped_z < len(dataset)  # flips happen, sometimes
    plain = PatchDataset([coded((12, 20, 24))], PATCH, sparse_ratio=r, flip=False, samples_per_epoch=8)
    for i in range(len(plain)):
        target = plain[i]["target"][0]
        assert bool((target.flatten().diff() > 0).all())  # no flip: values increase in memory order


def test_determinism_per_seed_epoch_index() -> None:
    records = [coded((12, 20, 24), name=f"v{i}") for i in range(3)]
    a = PatchDataset(records, PATCH, sparse_ratio=2, samples_per_epoch=6, seed=1)
    b = PatchDataset(records, PATCH, sparse_ratio=2, samples_per_epoch=6, seed=1)
    b.set_epoch(3)
    b.set_epoch(0)
    for i in (0, 4, 5):
        assert torch.equal(a[i]["target"], b[i]["target"])
    a.set_epoch(1)
    assert any(not torch.equal(a[i]["target"], b[i]["target"]) for i in range(6))
    other = PatchDataset(records, PATCH, sparse_ratio=2, samples_per_epoch=6, seed=2)
    assert any(not torch.equal(other[i]["target"], b[i]["target"]) for i in range(6))


def test_every_record_used_each_epoch() -> None:
    records = [coded((8, 16, 16), task_id=i, name=f"v{i}") for i in range(5)]
    dataset = PatchDataset(records, PATCH, sparse_ratio=2, seed=0)
    for epoch in range(3):
        dataset.set_epoch(epoch)
        assert sorted(int(dataset[i]["task_id"]) for i in range(len(dataset))) == list(range(5))


def test_small_volume_is_padded() -> None:
    dataset = PatchDataset([coded((5, 9, 16))], PATCH, sparse_ratio=2, flip=False)
    item = dataset[0]
    assert item["target"].shape == (1, 8, 16, 16)
    z_profile = item["target"][0, :, 4, 0] - 0.5
    expected = np.arange(5) * 9 * 16 + 4 * 16 - 3 * 16  # y row 4 of the patch is source row 1 after padding 3
    assert z_profile[1:6].tolist() == expected.astype(np.float32).tolist()
    edge = PatchDataset([coded((1, 16, 16))], PATCH, sparse_ratio=2, flip=False)
    assert edge[0]["target"].shape == (1, 8, 16, 16)


def test_bad_arguments() -> None:
    with pytest.raises(ConfigError, match=r"data\.sparse_ratio must be at least 1"):
        PatchDataset([coded((8, 16, 16))], (6, 16, 16), sparse_ratio=0)
    with pytest.raises(InputError, match="no volumes"):
        PatchDataset([], PATCH, sparse_ratio=2)


def test_picklable_and_loads_in_workers() -> None:
    dataset = PatchDataset([coded((12, 20, 24), name=f"v{i}") for i in range(2)], PATCH, 2, samples_per_epoch=4)
    dataset.set_epoch(2)
    clone = pickle.loads(pickle.dumps(dataset))
    assert torch.equal(clone[3]["signal"], dataset[3]["signal"])
    loader = DataLoader(dataset, batch_size=2, num_workers=2, multiprocessing_context="fork")
    batches = list(loader)
    assert [tuple(b["signal"].shape) for b in batches] == [(2, 1, 4, 16, 16)] * 2
    assert torch.equal(batches[1]["target"][1], dataset[3]["target"])
