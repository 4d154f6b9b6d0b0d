"""`sparsessp train --devices 2 --accelerator cpu --strategy ddp`: two gloo processes launched by Fabric."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sparsessp.engine.checkpoint import load_checkpoint

STRUCTURES = ["dna", "lamin_b1", "tom20"]


@pytest.fixture(scope="module")
def config_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sparsessp.data.synthcell import generate

    folder = tmp_path_factory.mktemp("ddp")
    root = generate(folder / "data", size=(16, 32, 32), count=3, seed=1, structures=STRUCTURES, workers=1)
    tree = {
        "data": {"root": str(root), "structures": STRUCTURES, "patch": [8, 16, 16], "sparse_ratio": 2},
        "model": {"conditioning": "condnet", "channels": [4, 4, 4], "embed_dim": 8},
        "train": {"batch_size": 1, "epochs": 2, "val_every": 1, "deterministic": True},
    }
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


def test_two_gloo_processes(config_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "sparsessp.cli.main", "train", "--config", str(config_file), "--out", str(out)]
    cmd += ["--devices", "2", "--accelerator", "cpu", "--strategy", "ddp"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]

    log = (out / "log.txt").read_text()
    assert log.count("ddp: parameters identical on 2 ranks") == 1  # SHA-256 of every parameter, per rank
    assert log.count("started:") == 1 and "on 2 process(es)" in log
    assert log.count("epoch 1/2 ") == 1 and log.count("epoch 2/2 ") == 1
    assert done.stderr.count("started:") == 1 and done.stderr.count("done:") == 1  # rank 1 prints nothing
    assert "Initializing distributed" not in done.stderr

    assert {p.name for p in (out / "checkpoints").iterdir()} == {"best.ckpt", "last.ckpt"}
    with open(out / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    last = load_checkpoint(out / "checkpoints" / "last.ckpt")
    assert [r["epoch"] for r in rows] == ["1", "2"] and all(r["val_mse"] for r in rows)
    assert len(last["rng"]) == 2 and last["data"]["world_size"] == 2
    assert last["config"]["train"]["devices"] == 2 and last["config"]["train"]["strategy"] == "ddp"
    assert last["step"] == 2 * int(rows[0]["step"])
