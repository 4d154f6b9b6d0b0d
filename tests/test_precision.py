"""Precision: one vocabulary, the ``auto`` default, one-line errors, CPU bf16 autocast through the trainer's Fabric."""

from __future__ import annotations

import typing

import pytest
import torch
from torch import nn

from sparsessp import precision
from sparsessp.config import TrainConfig, load_config
from sparsessp.errors import UserError


def test_every_train_precision_value_is_known() -> None:
    values = typing.get_args(TrainConfig.model_fields["precision"].annotation)
    assert set(values) == set(precision.TRAIN_PRECISIONS)
    assert TrainConfig().precision == "32-true"  # see precision.py on why bf16 is not the default


@pytest.mark.parametrize(("native", "expected"), [(True, "bf16-mixed"), (False, "32-true")])
def test_auto_is_bf16_where_native_else_fp32(monkeypatch: pytest.MonkeyPatch, native: bool, expected: str) -> None:
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: native)
    assert precision.fabric_precision("auto", "cpu") == expected
    assert precision.best("cpu") == ("bf16" if native else "fp32")


@pytest.mark.parametrize("value", ["32", "fp32", "32-true"])
def test_fp32_aliases(value: str) -> None:
    assert precision.fabric_precision(value, "cpu") == "32-true"


def test_bf16_on_a_cpu_without_it_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: False)
    with pytest.raises(UserError) as err:
        precision.fabric_precision("bf16-mixed", "cpu")
    message = str(err.value)
    assert "\n" not in message
    assert "no native bf16" in message and "train.precision=32-true" in message
    with pytest.raises(UserError, match="use fp32"):
        precision.check("bf16", "cpu")


def test_fp16_on_the_cpu_is_refused() -> None:
    with pytest.raises(UserError, match="fp16 autocast on a CPU"):
        precision.fabric_precision("16-mixed", "cpu")
    with pytest.raises(UserError, match="not one of"):
        precision.check("int8", "cpu")


def test_fp32_autocast_is_a_no_op() -> None:
    with precision.autocast("fp32", "cpu"):
        y = nn.Linear(3, 3)(torch.ones(1, 3))
    assert y.dtype == torch.float32


@pytest.mark.skipif(not precision.cpu_has_bf16(), reason="this CPU has no native bf16")
def test_trainer_fabric_runs_convolutions_in_bf16_on_the_cpu() -> None:
    from sparsessp.engine.trainer import make_fabric

    cfg = load_config(None, ["train.accelerator=cpu", "train.precision=auto"])
    fabric = make_fabric(cfg)
    conv = nn.Conv2d(2, 3, 3)
    seen: list[torch.dtype] = []
    conv.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    model, _ = fabric.setup(conv, torch.optim.Adam(conv.parameters()))
    y = model(torch.randn(1, 2, 8, 8))
    assert seen == [torch.bfloat16]  # the convolution ran in bf16 ...
    assert y.dtype == torch.float32  # ... and Fabric hands back float32
    assert model.module.weight.dtype == torch.float32  # the weights stay float32 (mixed precision)


def test_mode_inference_cache_follows_autocast() -> None:
    """A bf16-autocast prediction caches bf16 kernels; a later fp32 one must neither fail nor reuse them."""
    from sparsessp.models.conditioning.base import TaskContext
    from sparsessp.models.conditioning.mode import MoDEConv

    torch.manual_seed(0)
    layer = MoDEConv(2, 3, 4, 5).eval()
    x = torch.randn(2, 3, 8, 8)
    ctx = TaskContext(torch.tensor([1, 1]), 5)
    with torch.no_grad():
        reference = torch.nn.functional.conv2d(x, layer.fold(ctx.task_ids)[0], padding=2)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = layer(x, ctx)
        full = layer(x, ctx)
    assert low.dtype == torch.bfloat16 and full.dtype == torch.float32
    assert torch.allclose(full, reference, atol=1e-5, rtol=1e-5)
    assert (low.float() - reference).norm() / reference.norm() < 2e-2
