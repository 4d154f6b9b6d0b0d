"""Exact resume: a training process SIGKILLed mid-epoch, resumed from last.ckpt, ends bit-identical."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import tiny_train_config
from sparsessp.cli.main import main
from sparsessp.engine.checkpoint import load_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")

STRUCTURES = ["dna", "tom20"]
EPOCHS, STEPS_PER_EPOCH = 4, 4


@pytest.fixture(scope="module")
def config_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_train_config(
        tmp_path_factory.mktemp("kill"), STRUCTURES, seed=2, samples_per_epoch=2 * STEPS_PER_EPOCH,
        epochs=EPOCHS, checkpoint_every=1,
    )


def _kill_after_first_checkpoint(config: Path, out: Path) -> None:
    cmd = [sys.executable, "-m", "sparsessp.cli.main", "train", "--config", str(config), "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    last = out / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 180
    try:
        while not last.exists():
            assert proc.poll() is None, f"training exited early: {proc.stderr.read().decode()[-2000:]}"
            assert time.monotonic() < deadline, "no last.ckpt within 180 s"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL


def test_sigkill_then_resume_equals_uninterrupted(config_file: Path, tmp_path: Path) -> None:
    killed = tmp_path / "killed"
    _kill_after_first_checkpoint(config_file, killed)
    state = load_checkpoint(killed / "checkpoints" / "last.ckpt")
    assert 1 <= state["step"] < EPOCHS * STEPS_PER_EPOCH, "the kill came after the run had finished"

    reference = tmp_path / "reference"
    assert main(["train", "--config", str(config_file), "--out", str(reference)]) == 0
    assert main(["train", "--config", str(config_file), "--out", str(killed), "--resume"]) == 0

    ours = load_checkpoint(killed / "checkpoints" / "last.ckpt")
    ref = load_checkpoint(reference / "checkpoints" / "last.ckpt")
    assert (ours["epoch"], ours["step"]) == (ref["epoch"], ref["step"]) == (EPOCHS, EPOCHS * STEPS_PER_EPOCH)
    assert ours["model"].keys() == ref["model"].keys()
    for key in ref["model"]:
        assert torch.equal(ours["model"][key], ref["model"][key]), key
    for a, b in zip(ours["optimizer"]["state"].values(), ref["optimizer"]["state"].values()):
        assert all(torch.equal(a[k], b[k]) for k in ("exp_avg", "exp_avg_sq"))
    assert ours["best_val"] == ref["best_val"]
    assert not list((killed / "checkpoints").glob(".*.tmp"))
