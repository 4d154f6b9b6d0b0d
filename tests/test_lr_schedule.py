"""The learning-rate schedule is a pure function of the step (so a resumed run follows it exactly)."""

from __future__ import annotations

import itertools
import math
from types import SimpleNamespace

import pytest

from sparsessp.config import load_config
from sparsessp.engine.trainer import _Trainer


def _lr(step: int, *overrides: str, steps_per_epoch: int = 10) -> float:
    cfg = load_config(None, ["train.lr=0.01", *overrides])
    return _Trainer._lr_at(SimpleNamespace(cfg=cfg, steps_per_epoch=steps_per_epoch), step)


def test_constant_with_warmup() -> None:
    assert _lr(0, "train.warmup_steps=4") == pytest.approx(0.0025)
    assert _lr(3, "train.warmup_steps=4") == pytest.approx(0.01)
    assert _lr(500) == 0.01


def test_cosine_decays_to_zero_at_the_last_step() -> None:
    args = ("train.lr_schedule=cosine", "train.max_steps=100", "train.warmup_steps=10")
    assert _lr(10, *args) == pytest.approx(0.01)
    assert _lr(55, *args) == pytest.approx(0.005)
    assert _lr(100, *args) == pytest.approx(0.0, abs=1e-12)
    values = [_lr(s, *args) for s in range(10, 101)]
    assert all(a >= b for a, b in itertools.pairwise(values))


def test_cosine_length_follows_epochs_when_shorter() -> None:
    args = ("train.lr_schedule=cosine", "train.epochs=2", "train.max_steps=1000")
    assert _lr(10, *args, steps_per_epoch=10) == pytest.approx(0.005 * (1 + math.cos(math.pi / 2)))
