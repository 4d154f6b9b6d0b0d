"""Channels-last weights (sparsessp.memory_format): the same function as contiguous, in training and inference."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn

from sparsessp import memory_format
from sparsessp.config import load_config
from sparsessp.models.registry import build_model

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ["model.channels=[8,8,4,4]", "model.embed_dim=8", "data.patch=[8,16,16]", "data.sparse_ratio=2",
        "data.structures=[dna,tom20,lamin_b1]"]
CONDITIONINGS = ("none", "condnet", "multihead", "tsn", "dodnet", "tgnet", "multinet", "repmode")
RELEASED = {  # architecture -> architecture_options at the golden fixtures' widths
    "fnet": "{mult_chan: 4, depth: 4}",
    "repmode": "{mult_chan: 4, kernel_size: 5}",
    "sparsessp-released": "{mult_chan: 4, decoder_mult_chan: 4, kernel_size: 5}",
}


def _cases() -> list[tuple[str, list[str]]]:
    cases = [(f"{c}/{t}", [*TINY, f"model.conditioning={c}", f"model.topology={t}"])
             for c in CONDITIONINGS for t in ("3d", "2d", "3to2d", "2to3d")]
    cases.append(("resnet18/2d", [*TINY, "model.conditioning=tsn", "model.topology=2d", "model.backbone=resnet18",
                                  "model.channels=[8,8,8,8]", "data.patch=[8,32,32]"]))
    cases += [(arch, ["data.structures=[dna,tom20,lamin_b1]", "data.patch=[16,32,32]", "data.sparse_ratio=4",
                      f"model.architecture={arch}", f"model.architecture_options={options}"])
              for arch, options in RELEASED.items()]
    return cases


def _step(model: nn.Module, x: torch.Tensor, tasks: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict]:
    out = model(x, tasks)
    (out * target).sum().backward()
    return out.detach(), {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


@pytest.mark.parametrize(("name", "overrides"), _cases(), ids=[name for name, _ in _cases()])
def test_channels_last_computes_the_same_function_and_gradients(name: str, overrides: list[str]) -> None:
    """In float64 the two layouts agree to rounding (1e-10): the same function and gradients. In float32 the
    outputs agree within float32 tolerance (1e-4); float32 gradients are not compared one by one, since the
    channel max of Tgnet's attention routes its gradient to whichever channel rounding makes the largest."""
    torch.manual_seed(0)
    cfg = load_config(None, overrides)
    plain = build_model(cfg).train()
    fast = memory_format.apply(copy.deepcopy(plain), True)
    assert any(p.dim() in (4, 5) for p in fast.parameters())
    assert all(p.is_contiguous(memory_format=torch.channels_last if p.dim() == 4 else torch.channels_last_3d)
               for p in fast.parameters() if p.dim() in (4, 5))
    depth, height, width = cfg.data.patch
    gen = torch.Generator().manual_seed(1)
    tasks = torch.tensor([0, 1, 2, 0])
    x = torch.randn(4, 1, -(-depth // cfg.data.sparse_ratio), height, width, generator=gen)
    target = torch.randn(4, 1, depth, height, width, generator=gen)
    out64, grads64 = _step(copy.deepcopy(plain).double(), x.double(), tasks, target.double())
    out64_fast, grads64_fast = _step(copy.deepcopy(fast).double(), x.double(), tasks, target.double())
    assert _relative(out64_fast, out64) < 1e-10
    assert grads64_fast.keys() == grads64.keys() and grads64
    for key, grad in grads64.items():  # absolute floor: gradients that are 0 in exact arithmetic (a bias before a norm)
        assert float((grads64_fast[key] - grad).norm()) <= 1e-10 * float(grad.norm()) + 1e-12, key
    assert _relative(fast(x, tasks).detach(), plain(x, tasks).detach()) < 1e-4
    plain.eval()
    fast.eval()
    with torch.no_grad():
        assert _relative(fast(x, tasks), plain(x, tasks)) < 1e-4  # eval (MoDE's folded-kernel route included)


def test_auto_is_channels_last_on_the_cpu_only() -> None:
    assert memory_format.wants_channels_last("auto", "cpu")
    assert not memory_format.wants_channels_last("auto", "cuda")
    assert memory_format.wants_channels_last("channels_last", "cuda")
    assert not memory_format.wants_channels_last("contiguous", "cpu")
    with pytest.raises(ValueError, match="choose one of"):
        memory_format.wants_channels_last("nhwc", "cpu")


def test_apply_keeps_the_parameters_and_goes_back() -> None:
    model = nn.Sequential(nn.Conv3d(2, 4, 3), nn.Conv2d(4, 4, 3), nn.Linear(4, 4))
    params = list(model.parameters())
    memory_format.apply(model, True)
    assert [id(p) for p in model.parameters()] == [id(p) for p in params]
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last_3d)
    assert not model[0].weight.is_contiguous()
    assert model[1].weight.is_contiguous(memory_format=torch.channels_last)
    memory_format.apply(model, False)
    assert all(p.is_contiguous() for p in model.parameters())


def _conv_layouts(tensors: list[torch.Tensor]) -> set[bool]:
    """Whether each 3D kernel wider than 1 x 1 x 1 with several input channels is contiguous."""
    return {t.is_contiguous() for t in tensors if t.dim() == 5 and t.shape[1] > 1 and t.shape[2] > 1}


@pytest.mark.parametrize(("setting", "contiguous"), [("auto", False), ("contiguous", True)])
def test_trainer_and_load_model_follow_the_setting(setting: str, contiguous: bool, tmp_path: Path) -> None:
    from conftest import tiny_train_config
    from sparsessp.engine.checkpoint import load_checkpoint, load_model
    from sparsessp.engine.trainer import train

    config = tiny_train_config(tmp_path, ["dna", "tom20"], seed=0, samples_per_epoch=4, max_steps=2)
    cfg = load_config(config, [f"train.memory_format={setting}", f"inference.memory_format={setting}"])
    run = train(cfg, tmp_path / "run")
    trained = load_checkpoint(run / "checkpoints" / "last.ckpt")["model"]  # saved with the training layout
    assert _conv_layouts(list(trained.values())) == {contiguous}
    loaded = load_model(run / "checkpoints" / "best.ckpt")
    assert _conv_layouts(list(loaded.parameters())) == {contiguous}
