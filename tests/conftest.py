"""Fixtures shared by the test modules."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]


def load_script(relative: str) -> ModuleType:
    """Import a script of the repository that is not part of the package (``benchmarks/x.py``, ``scripts/y.py``)."""
    path = ROOT / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Tiny convolutions run faster (and identically in killed subprocesses) on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_train_config(
    folder: Path, structures: list[str], seed: int, samples_per_epoch: int, **train: Any
) -> Path:
    """Write a tiny SynthCell dataset and a CPU training config for it (condnet, 3 levels); return the YAML path."""
    from sparsessp.data.synthcell import generate

    root = generate(folder / "data", size=(16, 32, 32), count=3, seed=seed, structures=structures, workers=1)
    tree = {
        "data": {
            "root": str(root),
            "structures": structures,
            "patch": [8, 16, 16],
            "sparse_ratio": 2,
            "samples_per_epoch": samples_per_epoch,
        },
        "model": {"conditioning": "condnet", "channels": [4, 4, 4], "embed_dim": 8},
        "train": {"batch_size": 2, "val_every": 2, "accelerator": "cpu", "deterministic": True, **train},
    }
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


def random_checkpoint(folder: Path, overrides: list[str]) -> Path:
    """Save a checkpoint of the default config with ``overrides`` and seeded random weights; return its path."""
    from sparsessp.config import load_config
    from sparsessp.engine.checkpoint import base_state, save_checkpoint
    from sparsessp.models.registry import build_model

    cfg = load_config(None, overrides)
    torch.manual_seed(0)
    path = folder / "tiny.ckpt"
    save_checkpoint(path, base_state(cfg, build_model(cfg).state_dict()))
    return path
