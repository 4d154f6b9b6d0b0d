"""`sparsessp train` end to end on a tiny SynthCell set, in process: run folder, budgets, resume, SIGTERM."""

from __future__ import annotations

import csv
import os
import signal
from pathlib import Path

import pytest
import torch

from conftest import tiny_train_config
from sparsessp.cli.main import main
from sparsessp.config import load_config
from sparsessp.engine.checkpoint import load_checkpoint, load_model
from sparsessp.engine.runfolder import METRICS_COLUMNS
from sparsessp.engine.trainer import _Trainer

pytestmark = pytest.mark.usefixtures("one_thread")

STRUCTURES = ["dna", "lamin_b1"]


@pytest.fixture(scope="module")
def config_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_train_config(tmp_path_factory.mktemp("train"), STRUCTURES, seed=0, samples_per_epoch=6, epochs=3)


def _train(config: Path, out: Path, *extra: str) -> int:
    return main(["train", "--config", str(config), "--out", str(out), *extra])


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model"]


def _assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


@pytest.fixture(scope="module")
def reference(config_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted 3-epoch run (3 steps per epoch) that resumed runs must match bit for bit."""
    out = tmp_path_factory.mktemp("ref") / "run"
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # module fixtures run before the autouse one; resumed runs must match this count
    try:
        assert _train(config_file, out) == 0
    finally:
        torch.set_num_threads(before)
    return out


def test_run_folder(reference: Path, config_file: Path) -> None:
    run = reference
    assert {p.name for p in run.iterdir()} == {"config.yaml", "log.txt", "metrics.csv", "checkpoints"}
    assert {p.name for p in (run / "checkpoints").iterdir()} == {"best.ckpt", "last.ckpt"}
    assert load_config(run / "config.yaml") == load_config(config_file)
    with open(run / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0].keys()) == METRICS_COLUMNS
    assert [(r["epoch"], r["step"]) for r in rows] == [("1", "3"), ("2", "6"), ("3", "9")]
    assert rows[0]["val_mse"] == ""  # val_every = 2; the last epoch is always validated
    assert float(rows[1]["val_mse"]) > 0 and float(rows[2]["val_mse"]) > 0
    assert all(float(r["train_loss"]) > 0 and float(r["lr"]) == 1e-4 for r in rows)
    log = (run / "log.txt").read_text()
    assert log.count("epoch 3/3 step 9") == 1 and "done:" in log
    last = load_checkpoint(run / "checkpoints" / "last.ckpt")
    assert (last["epoch"], last["step"], last["data"]["batch"]) == (3, 9, 0)
    assert last["best_val"] == min(float(rows[1]["val_mse"]), float(rows[2]["val_mse"]))
    model = load_model(run / "checkpoints" / "best.ckpt")
    assert not model.training and model.structures == STRUCTURES
    x = torch.zeros(1, 1, 4, 16, 16)
    assert model(x, torch.tensor([1])).shape == (1, 1, 8, 16, 16)


def test_existing_run_needs_resume(reference: Path, config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _train(config_file, reference) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--resume" in err[0]


def test_resume_without_checkpoint(tmp_path: Path, config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _train(config_file, tmp_path / "new", "--resume") == 2
    assert "nothing to resume" in capsys.readouterr().err


def test_resume_with_another_model_is_refused(
    reference: Path, config_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "copy"
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "last.ckpt").write_bytes((reference / "checkpoints" / "last.ckpt").read_bytes())
    assert _train(config_file, out, "--resume", "--set", "model.channels=[4,4,8]") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "different model" in err[0] and "model.channels" in err[0]


def test_extend_finished_run_matches_reference(reference: Path, config_file: Path, tmp_path: Path) -> None:
    """Two epochs, then --resume with epochs=3 (config from the run folder) = three epochs straight."""
    out = tmp_path / "run"
    assert _train(config_file, out, "--set", "train.epochs=2") == 0
    assert main(["train", "--out", str(out), "--resume", "--set", "train.epochs=3"]) == 0
    _assert_same_weights(out / "checkpoints" / "last.ckpt", reference / "checkpoints" / "last.ckpt")
    with open(out / "metrics.csv") as fh:
        assert [r["epoch"] for r in csv.DictReader(fh)] == ["1", "2", "3"]
    assert main(["train", "--out", str(out), "--resume"]) == 0  # nothing left to do
    assert "nothing to do" in (out / "log.txt").read_text()


def test_sigterm_saves_and_resume_is_exact(
    reference: Path,
    config_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """SIGTERM during step 5 (mid-epoch 2): last.ckpt after step 5, exit 143; resuming ends as the reference."""
    original = _Trainer._step
    calls = {"n": 0}

    def step_then_signal(self: _Trainer, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        calls["n"] += 1
        if calls["n"] == 5:
            os.kill(os.getpid(), signal.SIGTERM)
        return original(self, batch)

    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        patch.setattr(_Trainer, "_step", step_then_signal)
        assert _train(config_file, out) == 143
    err = capsys.readouterr().err.strip().splitlines()
    assert "SIGTERM" in err[-1] and "--resume" in err[-1]
    last = load_checkpoint(out / "checkpoints" / "last.ckpt")
    assert (last["epoch"], last["data"]["batch"], last["step"]) == (1, 2, 5)
    assert _train(config_file, out, "--resume") == 0
    _assert_same_weights(out / "checkpoints" / "last.ckpt", reference / "checkpoints" / "last.ckpt")
    _assert_same_weights(out / "checkpoints" / "best.ckpt", reference / "checkpoints" / "best.ckpt")
    with open(out / "metrics.csv") as fh, open(reference / "metrics.csv") as ref:
        keep = ("epoch", "step", "train_loss", "val_mse")
        assert [[r[k] for k in keep] for r in csv.DictReader(fh)] == [[r[k] for k in keep] for r in csv.DictReader(ref)]


def test_max_steps_stops_mid_epoch(config_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert _train(config_file, out, "--set", "train.max_steps=4", "--set", "train.val_every=100") == 0
    with open(out / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["epoch"], r["step"]) for r in rows] == [("1", "3"), ("2", "4")]
    assert rows[0]["val_mse"] == "" and rows[1]["val_mse"] != ""  # validated at the end
    last = load_checkpoint(out / "checkpoints" / "last.ckpt")
    assert (last["epoch"], last["data"]["batch"], last["step"]) == (1, 1, 4)
    err = capsys.readouterr().err
    assert "stopped after 1 of 3 steps" in err and "\x1b[" not in err  # plain lines when stderr is not a TTY
