"""Task-conditioning mechanisms: unit tests on a tiny 2D/3D U-Net, then every mechanism on every topology."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sparsessp.config import load_config
from sparsessp.errors import ConfigError
from sparsessp.models.blocks import Down, ResBlock, Up
from sparsessp.models.conditioning.base import Conditioning, TaskContext
from sparsessp.models.conditioning.condnet import CondNet
from sparsessp.models.conditioning.dodnet import DoDNet, DynamicHead
from sparsessp.models.conditioning.multinet import MultiNet, MultiNetwork
from sparsessp.models.conditioning.tgnet import Tgnet
from sparsessp.models.conditioning.tsn import TSN, AdaIN, EqualLinear, PixelNorm, StyledConv, TaskFiLMNorm
from sparsessp.models.registry import CONDITIONINGS, resolve

pytestmark = pytest.mark.usefixtures("one_thread")

T = 3
MECHANISMS: dict[str, type[Conditioning]] = {"condnet": CondNet, "tsn": TSN, "dodnet": DoDNet, "tgnet": Tgnet}
TASKS = torch.tensor([0, 1, 2])


class TinyUNet(nn.Module):
    """Two-level U-Net built only through the factory, as the real skeleton does."""

    def __init__(self, cond: Conditioning, dims: int, cout: int = 1) -> None:
        super().__init__()
        self.num_tasks = cond.num_tasks
        self.enc = ResBlock(cond, dims, 1, 4, role="encoder")
        self.down = Down(dims, 4, 8, 2, cond.norm_kind)
        self.bottleneck = ResBlock(cond, dims, 8, 8, role="bottleneck")
        self.up = Up(dims, 8, 4, 2, cond.norm_kind)
        self.skip = cond.skip(dims, 4, level=0)
        self.bottom = cond.bottom(dims, 8)
        self.dec = ResBlock(cond, dims, 8, 4, role="decoder")
        self.head = cond.head(dims, 4, cout)
        self.sparse_ratio = 1
        self.patch = (8, 8, 8)

    def forward(self, x: Tensor, task_ids: Tensor) -> Tensor:
        ctx = TaskContext(task_ids, self.num_tasks)
        e = self.enc(x, ctx)
        b = self.bottleneck(self.down(e), ctx)
        ctx.store["bottleneck"] = b
        d = self.dec(torch.cat([self.skip(e, ctx), self.up(self.bottom(b, ctx))], dim=1), ctx)
        return self.head(d, ctx)


def spatial(dims: int) -> tuple[int, ...]:
    return (8, 8, 8) if dims == 3 else (8, 8)


def fit(model: nn.Module, x: Tensor, y: Tensor, tasks: Tensor, steps: int = 6) -> list[float]:
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = F.mse_loss(model(x, tasks), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_registry_lists_every_mechanism() -> None:
    for name in ("condnet", "tsn", "dodnet", "tgnet", "multinet"):
        assert resolve(CONDITIONINGS, name).name == name


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("name", sorted(MECHANISMS))
def test_mechanism_is_live_and_learns(name: str, dims: int) -> None:
    torch.manual_seed(0)
    cond = MECHANISMS[name](T, "batch")
    if isinstance(cond, DoDNet):
        cond.bottleneck_channels = 8
    model = TinyUNet(cond, dims, cout=2)
    x = torch.randn(1, 1, *spatial(dims)).expand(3, -1, *spatial(dims)).contiguous()
    model.eval()
    with torch.no_grad():
        out = model(x, TASKS)
    assert out.shape == (3, 2, *spatial(dims))
    assert (out[0] - out[1]).abs().max() > 1e-5 and (out[1] - out[2]).abs().max() > 1e-5
    model.train()
    y = torch.randn(3, 2, *spatial(dims))
    losses = fit(model, torch.randn(3, 1, *spatial(dims)), y, TASKS)
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("dims", [2, 3])
def test_dynamic_head_matches_per_sample_convolutions(dims: int) -> None:
    torch.manual_seed(1)
    head = DynamicHead(dims, cin=5, cout=3, num_tasks=T, bottleneck_channels=6, width=8).double()
    x = torch.randn(3, 5, *spatial(dims), dtype=torch.float64)
    ctx = TaskContext(TASKS, T)
    ctx.store["bottleneck"] = torch.randn(3, 6, *([2] * dims), dtype=torch.float64)
    out = head(x, ctx)
    conv = F.conv3d if dims == 3 else F.conv2d
    reduced = head.reduce(x)
    params = head.params(ctx, x.dtype)
    for b in range(3):
        h = reduced[b : b + 1]
        for k, (w, bias) in enumerate(params):
            h = conv(h, w[b].view(*w[b].shape, *([1] * dims)), bias[b])
            if k < len(params) - 1:
                h = torch.relu(h)
        torch.testing.assert_close(out[b : b + 1], h)


def test_dodnet_head_needs_the_bottleneck_width() -> None:
    with pytest.raises(RuntimeError, match="bottleneck_channels"):
        DoDNet(T).head(2, 4, 1)
    cond = DoDNet(T)
    cond.bottleneck_channels = 6
    module = cond.head(2, 4, 1)
    ctx = TaskContext(TASKS, T)
    ctx.store["bottleneck"] = torch.randn(3, 5, 2, 2)
    with pytest.raises(RuntimeError, match="6"):
        module(torch.randn(3, 4, 8, 8), ctx)


def test_tsn_conditions_only_the_decoder_and_shares_its_mapping_network() -> None:
    cond = TSN(T)
    enc_norm = cond.norm(3, 4, role="encoder")
    a, b = cond.norm(3, 4, role="decoder"), cond.norm(2, 8, role="decoder")
    assert isinstance(a, AdaIN) and not any(isinstance(m, AdaIN) for m in enc_norm.modules())
    assert a.mapping is b.mapping is cond.skip(2, 4, level=0).adain.mapping is cond.bottom(3, 8).adain.mapping
    model = TinyUNet(TSN(T), 2)
    restored = TinyUNet(TSN(T), 2)
    restored.load_state_dict(model.state_dict())
    x = torch.randn(3, 1, 8, 8)
    model.eval()
    restored.eval()
    torch.testing.assert_close(model(x, TASKS), restored(x, TASKS))


def test_tsn_is_the_official_mapping_network_and_adain() -> None:
    """One-hot -> PixelNorm + 8 FC layers of 512 -> style; AdaIN = instance-norm stats, task scale and shift."""
    cond = TSN(T)
    layers = [m for m in cond.mapping.net if isinstance(m, EqualLinear)]
    assert isinstance(cond.mapping.net[0], PixelNorm) and len(layers) == 8
    assert layers[0].weight.shape == (512, T) and all(m.weight.shape == (512, 512) for m in layers[1:])
    adain = cond.norm(3, 4, role="decoder")
    x = torch.randn(3, 4, 4, 5, 6) * 3 + 2
    ctx = TaskContext(TASKS, T)
    scale, shift = adain.affine(cond.mapping(F.one_hot(TASKS, T).float())).chunk(2, dim=1)
    mean = x.mean(dim=(2, 3, 4), keepdim=True)
    std = (x.var(dim=(2, 3, 4), unbiased=False, keepdim=True) + 1e-5).sqrt()
    expected = (x - mean) / std * scale.view(3, 4, 1, 1, 1) + shift.view(3, 4, 1, 1, 1)
    torch.testing.assert_close(adain(x, ctx), expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(adain.affine.bias, torch.tensor([1.0] * 4 + [0.0] * 4))
    assert isinstance(cond.skip(3, 4, level=1), StyledConv) and cond.skip(3, 4, level=1).conv.kernel_size == (1, 1, 1)


def test_tsn_mapping_network_runs_once_per_forward() -> None:
    cond = TSN(T, "batch", {"latent_dim": 16, "mapping_layers": 2})
    model = TinyUNet(cond, 2)
    calls = []
    cond.mapping.register_forward_hook(lambda *_: calls.append(1))
    model(torch.randn(3, 1, 8, 8), TASKS)
    assert len(calls) == 1


def test_tsn_film_variant_keeps_the_skips_plain() -> None:
    cond = TSN(T, "batch", {"style": "film"})
    assert cond.mapping is None and cond.latent_dim == 64
    assert isinstance(cond.norm(2, 4, role="decoder"), TaskFiLMNorm)
    assert not any(p.numel() for p in cond.skip(2, 4, level=0).parameters())
    model = TinyUNet(cond, 2).eval()
    out = model(torch.randn(1, 1, 8, 8).expand(3, -1, -1, -1), TASKS)
    assert (out[0] - out[1]).abs().max() > 1e-5


@pytest.mark.parametrize(
    ("cls", "options", "message"),
    [
        (CondNet, {"nope": 1}, "no option 'nope'"),
        (TSN, {"latent_dim": 0}, "latent_dim"),
        (TSN, {"style": "spade"}, "style"),
        (DoDNet, {"head_width": 2.5}, "integer"),
        (Tgnet, {"reduction": "x"}, "reduction"),
    ],
)
def test_bad_options_are_config_errors(cls: type[Conditioning], options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        cls(T, "batch", options)


def test_tgnet_accepts_its_and_dodnet_options() -> None:
    cond = Tgnet(T, "instance", {"head_width": 4, "task_dim": 2, "reduction": 2})
    assert (cond.head_width, cond.task_dim, cond.reduction) == (4, 2, 2)


class _Cfg:
    """The fields MultiNet.build_model reads for members of our skeleton (``member: sparsessp``)."""

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        self.num_tasks = T
        options = {"member": "sparsessp", **(options or {})}
        self.model = type("M", (), {"norm": "batch", "conditioning_options": options})()


def test_multinet_routes_each_sample_to_its_own_network() -> None:
    torch.manual_seed(2)
    model = MultiNet.build_model(_Cfg(), lambda cond: TinyUNet(cond, 2))
    assert isinstance(model, MultiNetwork) and len(model.networks) == T
    assert (model.sparse_ratio, model.patch) == (1, (8, 8, 8))
    model.eval()
    x = torch.randn(4, 1, 8, 8)
    tasks = torch.tensor([2, 0, 2, 1])
    out = model(x, tasks)
    for b in range(4):
        t = int(tasks[b])
        torch.testing.assert_close(out[b : b + 1], model.networks[t](x[b : b + 1], tasks[b : b + 1]))
    with pytest.raises(ValueError, match="task ids"):
        model(x, torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ConfigError):
        MultiNet.build_model(_Cfg({"x": 1}), lambda cond: TinyUNet(cond, 2))


def test_multinet_sample_updates_only_its_network() -> None:
    torch.manual_seed(3)
    model = MultiNet.build_model(_Cfg(), lambda cond: TinyUNet(cond, 3))
    x = torch.randn(3, 1, 8, 8, 8)
    out = model(x, torch.tensor([1, 1, 2]))
    out[0].sum().backward()
    assert all(p.grad is None for p in model.networks[0].parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.networks[1].parameters())
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in model.networks[2].parameters())
    losses = fit(model, x, torch.randn(3, 1, 8, 8, 8), torch.tensor([0, 1, 2]))
    assert losses[-1] < losses[0]


# Full topologies (models/network.py): every mechanism on every topology at tiny size.

HAS_NETWORK = importlib.util.find_spec("sparsessp.models.network") is not None
TOPOLOGIES = ["3d", "2d", "3to2d", "2to3d"]


def tiny_config(name: str, topology: str) -> Any:
    return load_config(
        None,
        [
            f"model.conditioning={name}",
            f"model.topology={topology}",
            "model.channels=[8, 8, 8, 8]",
            "model.embed_dim=16",
            "data.patch=[8, 32, 32]",
            "data.sparse_ratio=2",
            "data.structures=[dna, tom20, sec61_beta]",
        ],
    )


@pytest.mark.skipif(not HAS_NETWORK, reason="models/network.py not there yet")
@pytest.mark.parametrize("topology", TOPOLOGIES)
@pytest.mark.parametrize("name", [*sorted(MECHANISMS), "multinet"])
def test_every_mechanism_on_every_topology(name: str, topology: str) -> None:
    from sparsessp.models.registry import build_model

    torch.manual_seed(0)
    cfg = tiny_config(name, topology)
    model = build_model(cfg)
    assert model.sparse_ratio == 2 and tuple(model.patch) == (8, 32, 32)
    x = torch.randn(3, 1, 4, 32, 32)
    y = torch.randn(3, 1, 8, 32, 32)
    losses = fit(model, x, y, TASKS, steps=4)
    assert losses[-1] < losses[0]
    model.eval()
    same = x[:1].expand(3, -1, -1, -1, -1)
    with torch.no_grad():
        out = model(same, TASKS)
    assert out.shape == (3, 1, 8, 32, 32)
    assert (out[0] - out[1]).abs().max() > 1e-6 and (out[1] - out[2]).abs().max() > 1e-6
