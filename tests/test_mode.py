"""The MoDE convolution and the `repmode` mechanism: every route computes the folded-kernel function exactly."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sparsessp.config import load_config
from sparsessp.errors import ConfigError
from sparsessp.models.conditioning.base import TaskContext
from sparsessp.models.conditioning.mode import DEFAULT_ROUTE, ROUTES, MoDEConv, average_kernel
from sparsessp.models.conditioning.repmode import RepMode
from sparsessp.models.registry import CONDITIONINGS, resolve

pytestmark = pytest.mark.usefixtures("one_thread")

T = 6
MIXED = torch.tensor([2, 0, 2, 5, 1])  # mixed tasks, one repeated


def make_layer(dims: int, kernel_size: int = 5, cin: int = 3, cout: int = 4, **kw: Any) -> MoDEConv:
    torch.manual_seed(dims * 10 + kernel_size)
    layer = MoDEConv(dims, cin, cout, T, kernel_size, **kw).double()
    with torch.no_grad():  # gates far from uniform, so a wrong mixing shows
        layer.gate.weight.normal_(0, 2)
        layer.gate.bias.normal_(0, 1)
    return layer


def per_sample_reference(layer: MoDEConv, x: Tensor, tasks: Tensor) -> Tensor:
    """The re-parameterised definition: sample i convolved alone with its own task's folded kernel."""
    conv = {2: F.conv2d, 3: F.conv3d}[layer.dims]
    kernels = layer.fold(tasks)
    return torch.cat([conv(x[i : i + 1], kernels[i], padding=layer.fold_size // 2) for i in range(len(tasks))])


def expert_reference(layer: MoDEConv, x: Tensor, tasks: Tensor) -> Tensor:
    """The mixture as defined, expert by expert (average experts through avg_pool), independent of fold().

    The average kernels are buffers made in float32; ``pool.sum()`` carries their rounding into float64.
    """
    conv = {2: F.conv2d, 3: F.conv3d}[layer.dims]
    pool = {2: F.avg_pool2d, 3: F.avg_pool3d}[layer.dims]
    k = layer.kernel_size
    outs = [
        conv(x, layer.weight_k, padding=k // 2),
        conv(x, layer.weight_3, padding=1),
        conv(x, layer.weight_1),
        pool(conv(x, layer.weight_avg3), 3, 1, 1, count_include_pad=True) * layer.pool3.sum(),
        pool(conv(x, layer.weight_avg5), 5, 1, 2, count_include_pad=True) * layer.pool5.sum(),
    ]
    g = torch.softmax(layer.gate(F.one_hot(tasks, T).double()).view(-1, 5, layer.cout), dim=1)
    g = g.view(*g.shape, *(1,) * layer.dims)
    return sum(g[:, e] * outs[e] for e in range(5))


@pytest.mark.parametrize("dims", [2, 3])
def test_every_training_route_equals_the_folded_kernels_float64(dims: int) -> None:
    layer = make_layer(dims).train()
    x = torch.randn(len(MIXED), 3, *(9,) * dims, dtype=torch.float64)
    ctx = TaskContext(MIXED, T)
    ref = per_sample_reference(layer, x, MIXED)
    assert torch.allclose(ref, expert_reference(layer, x, MIXED), rtol=0, atol=1e-10)
    for route in ROUTES:
        layer.route = route
        assert (layer(x, ctx) - ref).abs().max() < 1e-10, route
    layer.eval()
    with torch.no_grad():
        assert (layer(x, ctx) - ref).abs().max() < 1e-10  # folded, cached, one conv per task


@pytest.mark.parametrize("dims", [2, 3])
def test_routes_give_the_same_gradients_float64(dims: int) -> None:
    layer = make_layer(dims).train()
    x = torch.randn(len(MIXED), 3, *(7,) * dims, dtype=torch.float64)
    weight = torch.randn(len(MIXED), 4, *(7,) * dims, dtype=torch.float64)
    grads = {}
    for route in ROUTES:
        layer.route = route
        layer.zero_grad()
        (layer(x, TaskContext(MIXED, T)) * weight).sum().backward()
        grads[route] = {n: p.grad.clone() for n, p in layer.named_parameters()}
    for route in ROUTES[1:]:
        for name, grad in grads[route].items():
            assert torch.allclose(grad, grads[ROUTES[0]][name], rtol=0, atol=1e-9), (route, name)


@pytest.mark.parametrize(("kernel_size", "fold_size"), [(3, 5), (7, 7)])
def test_other_kernel_sizes_fold_to_the_largest_expert(kernel_size: int, fold_size: int) -> None:
    layer = make_layer(2, kernel_size).train()
    assert layer.fold(MIXED).shape == (len(MIXED), 4, 3, fold_size, fold_size)
    x = torch.randn(len(MIXED), 3, 8, 8, dtype=torch.float64)
    ref = expert_reference(layer, x, MIXED)
    for route in ROUTES:
        layer.route = route
        assert (layer(x, TaskContext(MIXED, T)) - ref).abs().max() < 1e-10, route


def test_released_2d_average_quirk_divides_by_k_cubed() -> None:
    assert torch.allclose(average_kernel(3, 2, released_2d_avg=True), torch.full((3, 3), 1 / 27))
    assert torch.allclose(average_kernel(5, 2), torch.full((5, 5), 1 / 25))
    assert torch.allclose(average_kernel(3, 3, released_2d_avg=True), average_kernel(3, 3))
    quirk, plain = make_layer(2, released_2d_avg=True), make_layer(2)
    assert torch.allclose(quirk.pool3, torch.full((3, 3), 1 / 27, dtype=torch.float64))
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    ctx = TaskContext(torch.tensor([1, 4]), T)
    assert not torch.allclose(quirk.train()(x, ctx), plain.train()(x, ctx))
    for route in ROUTES:
        quirk.route = route
        assert (quirk(x, ctx) - per_sample_reference(quirk, x, ctx.task_ids)).abs().max() < 1e-10


def _count_folds(layer: MoDEConv, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    fold = layer.fold

    def counting(task_ids: Tensor) -> Tensor:
        calls.append(len(task_ids))
        return fold(task_ids)

    monkeypatch.setattr(layer, "fold", counting)
    return calls


def test_inference_caches_kernels_until_the_weights_change(monkeypatch: pytest.MonkeyPatch) -> None:
    layer = make_layer(3).eval()
    calls = _count_folds(layer, monkeypatch)
    x = torch.randn(len(MIXED), 3, 6, 6, 6, dtype=torch.float64)
    ctx = TaskContext(MIXED, T)
    with torch.no_grad():
        first = layer(x, ctx)
        assert torch.equal(layer(x, ctx), first)
        assert calls == [4]  # four distinct tasks folded once, then reused
        layer.weight_k.add_(0.5)  # an optimizer step or a weight edit bumps the version
        changed = layer(x, ctx)
        assert calls == [4, 4]
        assert (changed - per_sample_reference(layer, x, MIXED)).abs().max() < 1e-10
        calls.clear()  # the reference folded too
        layer.load_state_dict(make_layer(3).state_dict())
        assert torch.allclose(layer(x, ctx), first, rtol=0, atol=1e-12)
        assert calls == [4]
    layer.train()
    layer.eval()
    with torch.no_grad():
        layer(x, ctx)
    assert calls == [4, 4]  # going through training drops the cache


def test_inference_cache_keeps_the_most_recent_tasks(monkeypatch: pytest.MonkeyPatch) -> None:
    layer = make_layer(2, cache_tasks=2).eval()
    calls = _count_folds(layer, monkeypatch)
    x = torch.randn(1, 3, 6, 6, dtype=torch.float64)
    with torch.no_grad():
        for task in (0, 1, 2, 2, 1, 0):
            layer(x, TaskContext(torch.tensor([task]), T))
    assert calls == [1, 1, 1, 1]  # 0, 1, 2 folded; 2 and 1 cached; 0 was evicted


def test_eval_with_autograd_on_still_trains_the_experts() -> None:
    layer = make_layer(2).eval()
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    layer(x, TaskContext(torch.tensor([0, 3]), T)).sum().backward()
    assert layer.weight_k.grad is not None and layer.gate.weight.grad is not None


@pytest.mark.parametrize("route", ROUTES)
def test_no_convolution_per_sample(route: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The number of convolution calls does not grow with the batch (by_task: with the distinct tasks)."""
    calls: list[int] = []
    conv3d = F.conv3d

    def counting(*args: Any, **kwargs: Any) -> Tensor:
        calls.append(1)
        return conv3d(*args, **kwargs)

    monkeypatch.setattr(F, "conv3d", counting)
    layer = make_layer(3, route=route).train()
    counts = []
    for batch in (2, 8):
        calls.clear()
        layer(torch.randn(batch, 3, 4, 4, 4, dtype=torch.float64), TaskContext(torch.arange(batch) % 2, T))
        counts.append(len(calls))
    assert counts[0] == counts[1]


def test_repmode_factory_builds_mode_convolutions_everywhere() -> None:
    assert resolve(CONDITIONINGS, "repmode") is RepMode
    cond = RepMode(T, "batch")
    conv = cond.conv(3, 4, 8, 3, role="encoder")
    assert isinstance(conv, MoDEConv) and conv.kernel_size == 5 and conv.dims == 3
    transform = cond.conv(2, 16, 8, 1, role="transform")
    assert not isinstance(transform, MoDEConv) and transform.module.kernel_size == (1, 1)
    assert cond.conv(2, 16, 8, 5, role="transform").kernel_size == 5
    assert cond.conv(2, 4, 4, 7, role="decoder").kernel_size == 7
    head = cond.head(2, 8, 16)
    assert isinstance(head, MoDEConv) and head.cout == 16 and head.dims == 2 and head.kernel_size == 5
    options = RepMode(T, "batch", {"kernel_size": 3, "route": "grouped", "cache_tasks": 1})
    layer = options.conv(3, 2, 2, 3, role="bottleneck")
    assert (layer.kernel_size, layer.route, layer.cache_tasks) == (3, "grouped", 1)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"route": "loop"}, "route"),
        ({"kernel_size": 4}, "odd"),
        ({"kernel_size": 0}, "kernel_size"),
        ({"experts": 3}, "no option"),
    ],
)
def test_bad_repmode_options_are_config_errors(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RepMode(T, "batch", options)


@pytest.mark.parametrize("topology", ["3to2d", "3d"])
def test_repmode_network_trains_and_predicts_each_sample_with_its_task(topology: str) -> None:
    from sparsessp.models.registry import build_model

    torch.manual_seed(0)
    cfg = load_config(
        None,
        [
            "model.conditioning=repmode",
            f"model.topology={topology}",
            "model.channels=[4, 4, 4]",
            "model.embed_dim=8",
            "data.patch=[4, 16, 16]",
            "data.sparse_ratio=2",
            "data.structures=[dna, tom20, sec61_beta]",
        ],
    )
    model = build_model(cfg)
    modes = [m for m in model.modules() if isinstance(m, MoDEConv)]
    assert modes and all(m.route == DEFAULT_ROUTE for m in modes)
    x = torch.randn(3, 1, 2, 16, 16)
    tasks = torch.tensor([0, 1, 2])
    out = model(x, tasks)
    assert out.shape == (3, 1, 4, 16, 16)
    out.square().mean().backward()
    assert all(m.weight_k.grad is not None for m in modes)
    model.eval()
    with torch.no_grad():
        batch = model(x, tasks)
        alone = torch.cat([model(x[i : i + 1], tasks[i : i + 1]) for i in range(3)])
        same = model(x[:1].expand(3, -1, -1, -1, -1), tasks)
    assert torch.allclose(batch, alone, atol=1e-5)
    assert (same[0] - same[1]).abs().max() > 1e-6


@pytest.mark.parametrize("projection", ["3d", "2d"])
@pytest.mark.parametrize("topology", ["3to2d", "2to3d"])
def test_repmode_hybrid_projections_keep_kernel_one(topology: str, projection: str) -> None:
    """The paper's projection is a kernel-size-1 conv; under RepMode it must not become a 5x5(x5) MoDE."""
    from sparsessp.models.registry import build_model
    from sparsessp.models.transforms import ChannelToDepth, DepthToChannel

    cfg = load_config(
        None,
        [
            "model.conditioning=repmode",
            f"model.topology={topology}",
            f"model.projection={projection}",
            "model.channels=[4, 4, 8]",
            "model.embed_dim=8",
            "data.patch=[4, 16, 16]",
            "data.sparse_ratio=2",
        ],
    )
    model = build_model(cfg)
    bridges = [m for m in model.modules() if isinstance(m, DepthToChannel | ChannelToDepth)]
    assert len(bridges) == 3
    for bridge in bridges:
        convs = [m for m in bridge.modules() if isinstance(m, nn.Conv2d | nn.Conv3d | MoDEConv)]
        assert len(convs) == 1 and not isinstance(convs[0], MoDEConv)
        assert set(convs[0].kernel_size) == {1}
    assert any(isinstance(m, MoDEConv) and m.kernel_size == 5 for m in model.body.decoder.modules())
