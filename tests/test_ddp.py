"""`sparsessp train --devices 2 --accelerator cpu --strategy ddp`: two gloo processes launched by Fabric.

The weights of both ranks are read directly (a worker script saves each rank's state dict after the
trainer's own loop) and compared with each other and with one process of twice the batch size.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from sparsessp.cli.main import main
from sparsessp.config import load_config
from sparsessp.engine.checkpoint import load_checkpoint
from sparsessp.engine.seeding import seed_everything
from sparsessp.models.registry import build_model

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


WORKER = """
import sys
from pathlib import Path

import torch

from sparsessp.config import load_config
from sparsessp.engine.runfolder import RunFolder
from sparsessp.engine.seeding import set_deterministic
from sparsessp.engine.trainer import _StopFlag, _Trainer, make_fabric, with_launch_options


def work(fabric, cfg, out):
    set_deterministic(cfg.train.deterministic, fabric.device)
    trainer = _Trainer(fabric, cfg, RunFolder(out, active=fabric.global_rank == 0), _StopFlag())
    trainer.fit(False)
    torch.save(trainer.model.module.state_dict(), out.parent / f"rank{fabric.global_rank}.pt")
    fabric.barrier()
    torch.distributed.destroy_process_group()


cfg = with_launch_options(load_config(sys.argv[1]), devices=2, accelerator="cpu", strategy="ddp")
make_fabric(cfg).launch(work, cfg, Path(sys.argv[2]))
"""


def test_ranks_hold_equal_weights_and_match_one_process_of_double_batch(
    config_file: Path, tmp_path: Path, one_thread: None
) -> None:
    # instance norm: a sample's output does not depend on its batch, so 2 x batch 1 == 1 x batch 2 exactly in math
    tree = yaml.safe_load(config_file.read_text())
    tree["model"]["norm"] = "instance"
    tree["data"]["samples_per_epoch"] = 6
    tree["train"].update(epochs=2, val_every=10)
    config = tmp_path / "instance.yaml"
    config.write_text(yaml.safe_dump(tree))
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    ddp = tmp_path / "ddp" / "run"
    ddp.parent.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(script), str(config), str(ddp)], env=env, capture_output=True,
                          text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [torch.load(ddp.parent / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    saved = load_checkpoint(ddp / "checkpoints" / "last.ckpt")
    assert saved["step"] == 6 and saved["data"]["world_size"] == 2
    for key, value in ranks[0].items():
        assert torch.equal(value, ranks[1][key]), key  # the ranks agree bit for bit
        assert torch.equal(value, saved["model"][key]), key

    single = tmp_path / "single"
    assert main(["train", "--config", str(config), "--out", str(single), "--set", "train.batch_size=2"]) == 0
    one = load_checkpoint(single / "checkpoints" / "last.ckpt")
    assert one["step"] == 6 and one["data"]["world_size"] == 1
    cfg = load_config(config)
    seed_everything(one["config"]["train"]["seed"])  # the trainer builds its model right after this call
    models = {"initial": build_model(cfg)}
    for name, state in (("ddp", ranks[0]), ("single", one["model"])):
        models[name] = build_model(cfg)
        models[name].load_state_dict(state)
    torch.manual_seed(5)
    x, tasks = torch.randn(3, 1, 4, 16, 16), torch.tensor([0, 1, 2])
    with torch.no_grad():
        out = {name: model.eval()(x, tasks) for name, model in models.items()}
    # Compared as functions: weights that instance norm makes scale-invariant get no gradient in exact
    # arithmetic, and Adam turns their float noise into lr-sized steps that change no output.
    trained = float((out["single"] - out["initial"]).abs().max())
    assert trained > 0.05
    assert float((out["ddp"] - out["single"]).abs().max()) < 1e-3 * trained
