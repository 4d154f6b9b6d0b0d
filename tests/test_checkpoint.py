"""Checkpoint files, RNG snapshots and the resumable data order (no training)."""

from __future__ import annotations

import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from sparsessp.config import load_config
from sparsessp.engine.checkpoint import (
    base_state,
    check_same_model,
    load_checkpoint,
    load_model,
    save_checkpoint,
)
from sparsessp.engine.sampler import ResumableSampler
from sparsessp.engine.seeding import capture_rng_state, derive_seed, preserved_rng, restore_rng_state
from sparsessp.errors import CheckpointError, UserError
from sparsessp.models.registry import build_model

TINY = ["data.structures=[dna,tom20]", "data.patch=[8,16,16]", "data.sparse_ratio=2", "model.channels=[4,4,4]",
        "model.embed_dim=8"]  # fmt: skip


class _Payload:
    """A class a weights_only load must refuse to rebuild."""


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = load_config(None, TINY)
    torch.manual_seed(0)
    model = build_model(cfg)
    path = tmp_path_factory.mktemp("ckpt") / "model.ckpt"
    save_checkpoint(path, {**base_state(cfg, model.state_dict()), "rng": [capture_rng_state()]})
    return path


def test_round_trip_is_weights_only_loadable(saved: Path) -> None:
    raw = torch.load(saved, weights_only=True)
    assert raw["format"] == "sparsessp-checkpoint" and raw["structures"] == ["dna", "tom20"]
    model = load_model(saved)
    assert not model.training
    assert model.structures == ["dna", "tom20"] and model.config == load_config(None, TINY)
    for key, value in model.state_dict().items():
        assert torch.equal(value, raw["model"][key]), key
    assert not list(saved.parent.glob(".*.tmp"))


def test_not_a_checkpoint(tmp_path: Path) -> None:
    text = tmp_path / "notes.ckpt"
    text.write_text("hello\n")
    with pytest.raises(CheckpointError, match="not a"):
        load_checkpoint(text)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.ckpt")


def test_pickle_that_would_run_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.ckpt"
    torch.save({"format": "sparsessp-checkpoint", "payload": _Payload()}, path)
    with pytest.raises(CheckpointError, match="pickled Python objects"):
        load_checkpoint(path)
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps(_Payload()))
    with pytest.raises(CheckpointError):
        load_model(plain)


def test_truncated_file(saved: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.ckpt"
    data = saved.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(cut)


def test_foreign_layout_is_refused(tmp_path: Path) -> None:
    """A released-style file ({'model', 'optimizer', 'metas'}) is a one-line error pointing to import-weights."""
    path = tmp_path / "released.pth"
    torch.save({"model": {"w": torch.zeros(2)}, "optimizer": {}, "metas": {"epoch": 3}}, path)
    with pytest.raises(CheckpointError, match="import-weights"):
        load_model(path)


def test_other_model_weights(saved: Path, tmp_path: Path) -> None:
    other_cfg = load_config(None, [*TINY, "model.channels=[4,4,8]"])
    other = tmp_path / "other.ckpt"
    state = load_checkpoint(saved)
    save_checkpoint(other, {**state, "model": build_model(other_cfg).state_dict()})
    with pytest.raises(CheckpointError, match="different model") as info:
        load_model(other)
    assert "\n" not in str(info.value)
    with pytest.raises(CheckpointError, match=r"model\.channels"):
        check_same_model(other_cfg, state, saved)
    check_same_model(load_config(None, [*TINY, "train.lr=0.5"]), state, saved)  # training keys may change


def test_checkpoint_error_is_a_user_error() -> None:
    assert issubclass(CheckpointError, UserError)


def _draws() -> tuple[float, ...]:
    return (random.random(), float(np.random.rand()), float(torch.rand(())), random.random(), float(torch.rand(())))


def test_rng_snapshot_round_trip(saved: Path, tmp_path: Path) -> None:
    state = torch.load(saved, weights_only=True)["rng"][0]
    restore_rng_state(state)
    first = _draws()
    assert _draws() != first  # the generators moved on
    restore_rng_state(state)
    assert _draws() == first
    # capture mid-stream, through a checkpoint file: the next numbers come again after a restore
    _draws()
    cfg = load_config(None, TINY)
    path = tmp_path / "mid.ckpt"
    save_checkpoint(path, {**base_state(cfg, {}), "rng": [capture_rng_state()]})
    expected = _draws()
    _draws()
    restore_rng_state(torch.load(path, weights_only=True)["rng"][0])
    assert _draws() == expected


def test_preserved_rng_leaves_the_streams_where_they_were() -> None:
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    expected = _draws()
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    with preserved_rng():
        _draws()
        torch.rand(5)
        np.random.rand(5)
    assert _draws() == expected


def test_sampler_order_and_resume_position() -> None:
    shards = [ResumableSampler(10, 2, rank, seed=3) for rank in range(2)]
    for s in shards:
        s.set_position(epoch=1, start=0)
    full = [list(s) for s in shards]
    assert sorted(full[0] + full[1]) == list(range(10))
    again = ResumableSampler(10, 2, 0, seed=3)
    again.set_position(epoch=1, start=2)
    assert list(again) == full[0][2:] and len(again) == 3
    again.set_position(epoch=2, start=0)
    assert list(again) != full[0]
    assert derive_seed(1, 2) == derive_seed(1, 2) != derive_seed(2, 1)
