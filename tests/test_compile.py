"""train.compile: torch.compile'd training takes the same steps as eager, and checkpoints keep the plain keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import tiny_train_config
from sparsessp.config import load_config
from sparsessp.engine.checkpoint import load_checkpoint
from sparsessp.engine.trainer import train
from sparsessp.errors import UserError

pytestmark = pytest.mark.usefixtures("one_thread")


def test_compiled_training_equals_eager_and_saves_plain_keys(tmp_path: Path) -> None:
    config = tiny_train_config(tmp_path, ["dna", "tom20"], seed=0, samples_per_epoch=4, max_steps=3)
    from torch._dynamo.utils import counters

    weights = {}
    for compiled in (False, True):
        counters.clear()
        run = train(load_config(config, [f"train.compile={str(compiled).lower()}"]), tmp_path / f"run{compiled}")
        weights[compiled] = load_checkpoint(run / "checkpoints" / "last.ckpt")["model"]
        assert bool(counters["stats"]["unique_graphs"]) == compiled  # dynamo traced the model only when asked
    assert weights[True].keys() == weights[False].keys()  # no ``_orig_mod.`` prefix: the uncompiled module's
    for key, eager in weights[False].items():
        if eager.is_floating_point():
            difference = float((weights[True][key] - eager).norm() / eager.norm().clamp_min(1e-12))
            assert difference < 1e-4, key


def test_compile_without_a_compiler_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sparsessp.engine.trainer as trainer

    monkeypatch.setattr(trainer.shutil, "which", lambda name: None)
    config = tiny_train_config(tmp_path, ["dna"], seed=0, samples_per_epoch=2, max_steps=1)
    with pytest.raises(UserError, match="C\\+\\+ compiler") as err:
        train(load_config(config, ["train.compile=true"]), tmp_path / "run")
    assert "\n" not in str(err.value)
