"""The design space: every interpolation x topology x projection for r in {1, 2, 4, 8}, at tiny width.

Each valid combination is built through ``registry.build_model``, run forward and backward on CPU, and
must return (B, 1, D, H, W) and give every parameter a non-zero gradient (the networks use BatchNorm in
train mode on batch 2 with at least 2 x 2 spatial positions at the bottleneck, so no part is
degenerate). Impossible combinations are refused at config time naming the key to change.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sparsessp.config import load_config
from sparsessp.design import level_depths
from sparsessp.errors import ConfigError
from sparsessp.models.conditioning.base import Conditioning, CondModule, Role, TaskContext
from sparsessp.models.interpolation import PrefixInterpolation, prefix_interpolate
from sparsessp.models.network import SparseSSPNetwork, build_network
from sparsessp.models.registry import build_model

pytestmark = pytest.mark.usefixtures("one_thread")


TINY = ["model.conditioning=none", "model.channels=[8,8,4,4]", "model.embed_dim=8", "data.patch=[8,16,16]"]
RATIOS = (1, 2, 4, 8)
HYBRID = ("3to2d", "2to3d")
DECODER_2D = ("2d", "3to2d")


def overrides(topology: str, interpolation: str, projection: str, ratio: int, *extra: str) -> list[str]:
    return [
        *TINY,
        f"model.topology={topology}",
        f"model.interpolation={interpolation}",
        f"model.projection={projection}",
        f"data.sparse_ratio={ratio}",
        *extra,
    ]


def valid_combinations() -> list[tuple[str, str, str, int]]:
    combos = []
    for topology in ("3d", "2d", "3to2d", "2to3d"):
        interpolations = ("prefix", "postfix", "none") if topology in DECODER_2D else ("prefix", "postfix")
        projections = ("3d", "2d") if topology in HYBRID else ("3d",)
        for interpolation in interpolations:
            for projection in projections:
                for ratio in RATIOS:
                    combos.append((topology, interpolation, projection, ratio))
    return combos


def run_forward_backward(model: nn.Module, batch: int = 2, hw: tuple[int, int] | None = None) -> torch.Tensor:
    depth, height, width = model.patch
    if hw is not None:
        height, width = hw
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 1, depth // model.sparse_ratio, height, width, generator=gen)
    task_ids = torch.arange(batch) % model.config.num_tasks
    y = model(x, task_ids)
    assert y.shape == (batch, 1, depth, height, width)
    (y * torch.randn(y.shape, generator=gen)).sum().backward()
    return y


def assert_every_parameter_learns(model: nn.Module) -> None:
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"parameters without gradient: {missing}"


@pytest.mark.parametrize(("topology", "interpolation", "projection", "ratio"), valid_combinations())
def test_every_valid_combination_runs_and_learns(
    topology: str, interpolation: str, projection: str, ratio: int
) -> None:
    torch.manual_seed(0)
    model = build_model(load_config(None, overrides(topology, interpolation, projection, ratio)))
    assert model.sparse_ratio == ratio
    assert model.patch == (8, 16, 16)
    run_forward_backward(model)
    assert_every_parameter_learns(model)


@pytest.mark.parametrize("mode", ["trilinear", "aligned"])
@pytest.mark.parametrize("topology", ["3d", "3to2d", "2to3d", "2d"])
def test_prefix_modes_in_every_topology(mode: str, topology: str) -> None:
    torch.manual_seed(0)
    model = build_model(load_config(None, overrides(topology, "prefix", "2d", 4, f"model.prefix_mode={mode}")))
    run_forward_backward(model)
    assert_every_parameter_learns(model)


@pytest.mark.parametrize(
    ("topology", "interpolation", "projection", "ratio"),
    [
        ("3d", "prefix", "3d", 8),
        ("3d", "postfix", "3d", 8),
        ("2d", "none", "3d", 4),
        ("3to2d", "prefix", "3d", 2),
        ("3to2d", "postfix", "2d", 8),
        ("2to3d", "prefix", "2d", 2),
        ("2to3d", "postfix", "3d", 8),
    ],
)
def test_five_levels_at_width_one_eighth(topology: str, interpolation: str, projection: str, ratio: int) -> None:
    """The paper's 5-level U-Net (default channels x 0.125 = [4, 8, 16, 32, 32]) on a (16, 32, 32) patch."""
    torch.manual_seed(0)
    cfg = load_config(
        None,
        [
            "model.conditioning=none",
            "model.width=0.125",
            "model.embed_dim=16",
            "data.patch=[16,32,32]",
            "model.channels=[32,64,128,256,256]",
            f"model.topology={topology}",
            f"model.interpolation={interpolation}",
            f"model.projection={projection}",
            f"data.sparse_ratio={ratio}",
        ],
    )
    model = build_model(cfg)
    assert cfg.model.levels == 5
    run_forward_backward(model)
    assert_every_parameter_learns(model)


def test_height_and_width_may_differ_from_the_patch() -> None:
    model = build_model(load_config(None, overrides("3to2d", "prefix", "3d", 2)))
    run_forward_backward(model, hw=(24, 40))


def test_eval_mode_is_deterministic_and_per_sample() -> None:
    model = build_model(load_config(None, overrides("3to2d", "postfix", "3d", 4))).eval()
    x = torch.randn(3, 1, 2, 16, 16)
    ids = torch.tensor([0, 1, 2])
    with torch.no_grad():
        full = model(x, ids)
        single = model(x[1:2], ids[1:2])
    torch.testing.assert_close(full[1:2], single, rtol=1e-5, atol=1e-6)


# ---- config-time refusals -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        (["model.topology=3d", "model.interpolation=none"], "model.interpolation"),
        (["model.topology=2to3d", "model.interpolation=none"], "model.interpolation"),
        (["model.topology=3to2d", "model.projection=3d", "model.embed_dim=12"], "model.embed_dim"),
        (["model.topology=2to3d", "model.projection=3d", "model.channels=[4,8,4,4]"], "model.channels"),
        (["data.patch=[8,16,20]"], "data.patch"),
        (["data.patch=[8,16,16]", "data.sparse_ratio=9"], "data.patch"),
        (["model.projection_kernel=2"], "model.projection_kernel"),
        (["model.topology=4d"], "model.topology"),
        (["model.interpolation=later"], "model.interpolation"),
        (["model.prefix_mode=cubic"], "model.prefix_mode"),
        (["model.projection=1d"], "model.projection"),
    ],
)
def test_impossible_combinations_are_refused_naming_the_key(extra: list[str], key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")) as info:
        load_config(None, [*TINY, *extra])
    assert "\n" not in str(info.value)


def test_refusal_messages_say_what_to_change() -> None:
    with pytest.raises(ConfigError, match="use prefix or postfix"):
        load_config(None, [*TINY, "model.topology=3d", "model.interpolation=none"])
    with pytest.raises(ConfigError, match=r"multiple of 8 or model\.projection=2d"):
        load_config(None, [*TINY, "model.topology=3to2d", "model.embed_dim=12"])
    with pytest.raises(ConfigError, match=r"multiples of 2\*\*\(levels-1\) = 8"):
        load_config(None, [*TINY, "data.patch=[8,12,16]"])


def test_projection_constraints_apply_only_where_the_route_folds_in_3d() -> None:
    load_config(None, [*TINY, "model.topology=3to2d", "model.projection=2d", "model.embed_dim=12"])
    load_config(None, [*TINY, "model.topology=3d", "model.embed_dim=12"])
    load_config(None, [*TINY, "model.topology=2to3d", "model.projection=2d", "model.channels=[4,8,4,4]"])
    # postfix works on D/r: with r = 8 every level has depth 1, so any embed_dim folds
    load_config(
        None, [*TINY, "model.topology=3to2d", "model.interpolation=postfix", "data.sparse_ratio=8", "model.embed_dim=7"]
    )


def test_level_depths_halve_while_even_then_hold() -> None:
    assert level_depths(32, 5) == [32, 16, 8, 4, 2]
    assert level_depths(4, 5) == [4, 2, 1, 1, 1]
    assert level_depths(6, 4) == [6, 3, 3, 3]


# ---- interpolation ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("ratio", RATIOS)
def test_prefix_nearest_repeats_each_slice(ratio: int) -> None:
    x = torch.randn(2, 1, 3, 4, 5)
    y = prefix_interpolate(x, ratio, "nearest")
    assert torch.equal(y, x.repeat_interleave(ratio, dim=2))
    assert torch.equal(y, F.interpolate(x, size=(3 * ratio, 4, 5), mode="nearest"))


@pytest.mark.parametrize("ratio", RATIOS)
def test_prefix_aligned_puts_slice_k_at_k_times_r(ratio: int) -> None:
    x = torch.randn(1, 1, 4, 2, 3, dtype=torch.float64)
    y = prefix_interpolate(x, ratio, "aligned")
    assert y.shape == (1, 1, 4 * ratio, 2, 3)
    assert torch.equal(y[:, :, ::ratio], x)
    grid = np.arange(4 * ratio) / ratio
    for i in range(2):
        for j in range(3):
            expected = np.interp(grid, np.arange(4), x[0, 0, :, i, j].numpy())  # holds past the last slice
            np.testing.assert_allclose(y[0, 0, :, i, j].numpy(), expected, rtol=0, atol=1e-12)


def test_prefix_trilinear_matches_interpolate_and_keeps_constants() -> None:
    x = torch.randn(2, 1, 3, 4, 4)
    y = prefix_interpolate(x, 4, "trilinear")
    torch.testing.assert_close(y, F.interpolate(x, size=(12, 4, 4), mode="trilinear", align_corners=False))
    ones = torch.ones(1, 1, 3, 4, 4)
    torch.testing.assert_close(prefix_interpolate(ones, 4, "trilinear"), torch.ones(1, 1, 12, 4, 4))
    with pytest.raises(ValueError, match="unknown prefix mode"):
        PrefixInterpolation(2, "cubic")


@pytest.mark.parametrize("topology", ["3d", "2to3d", "2d", "3to2d"])
def test_postfix_deconvolves_the_output_as_the_paper(topology: str) -> None:
    """Paper placement: head -> (B, 1, D/r, H, W) on the output grid, then ConvTranspose3d(1, 1, (r,1,1))."""
    model = build_model(load_config(None, overrides(topology, "postfix", "3d", 4)))
    deconv = model.output_postfix.deconv
    assert isinstance(deconv, nn.ConvTranspose3d) and model.postfix is None
    assert (deconv.in_channels, deconv.out_channels) == (1, 1)
    assert deconv.kernel_size == (4, 1, 1) and deconv.stride == (4, 1, 1)
    head = model.head.module
    assert head.out_channels == (1 if topology in ("3d", "2to3d") else 2)
    seen: list[torch.Size] = []
    deconv.register_forward_hook(lambda _m, args, _out: seen.append(args[0].shape))
    run_forward_backward(model)
    assert seen == [torch.Size([2, 1, 2, 16, 16])]


def test_postfix_at_the_features_is_our_variant() -> None:
    m3 = build_model(load_config(None, overrides("3d", "postfix", "3d", 4, "model.postfix_placement=features")))
    deconv = m3.postfix.up[0]
    assert isinstance(deconv, nn.ConvTranspose3d) and m3.output_postfix is None
    assert deconv.kernel_size == (4, 1, 1) and deconv.stride == (4, 1, 1)
    m2 = build_model(load_config(None, overrides("2d", "postfix", "3d", 4, "model.postfix_placement=features")))
    assert isinstance(m2.postfix.conv, nn.Conv2d)
    assert (m2.postfix.conv.in_channels, m2.postfix.conv.out_channels) == (2, 8)
    assert m2.head.module.out_channels == 2
    run_forward_backward(m3)
    run_forward_backward(m2)
    m_none = build_model(load_config(None, overrides("2d", "none", "3d", 4)))
    assert m_none.postfix is None and m_none.output_postfix is None and m_none.prefix is None
    assert m_none.head.module.out_channels == 8


# ---- the skeleton's contract with the conditioning factory ----------------------------------------------


class RecordingConditioning(Conditioning):
    """The plain factory, logging every conv's role, every skip and every head it builds."""

    def __init__(self, num_tasks: int) -> None:
        super().__init__(num_tasks)
        self.roles: list[tuple[Role, int]] = []
        self.skips: list[tuple[int, int, int]] = []
        self.heads: list[tuple[int, int, int]] = []

    def conv(self, dims: int, cin: int, cout: int, kernel_size: int, *, role: Role) -> CondModule:
        self.roles.append((role, dims))
        return super().conv(dims, cin, cout, kernel_size, role=role)

    def skip(self, dims: int, channels: int, *, level: int) -> CondModule:
        self.skips.append((dims, channels, level))
        return super().skip(dims, channels, level=level)

    def head(self, dims: int, cin: int, cout: int) -> CondModule:
        self.heads.append((dims, cin, cout))
        return super().head(dims, cin, cout)


@pytest.mark.parametrize(
    ("topology", "enc", "dec", "head_out", "skip_channels"),
    [
        ("3d", 3, 3, 1, [8, 8, 4]),
        ("2d", 2, 2, 8, [8, 8, 4]),
        ("3to2d", 3, 2, 8, [8, 8, 8]),
        ("2to3d", 2, 3, 1, [8, 8, 4]),
    ],
)
def test_skeleton_asks_the_factory_for_every_part(
    topology: str, enc: int, dec: int, head_out: int, skip_channels: list[int]
) -> None:
    cfg = load_config(None, overrides(topology, "prefix", "3d", 2))
    cond = RecordingConditioning(cfg.num_tasks)
    model = build_network(cfg, cond)
    assert isinstance(model, SparseSSPNetwork)
    roles = {role for role, _ in cond.roles}
    assert {"encoder", "bottleneck", "decoder"} <= roles
    assert ("transform" in roles) == (topology in HYBRID)
    assert {d for role, d in cond.roles if role in ("encoder", "bottleneck")} == {enc}
    assert {d for role, d in cond.roles if role == "decoder"} == {dec}
    assert cond.heads == [(dec, 8, head_out)]
    assert sorted(cond.skips, key=lambda s: s[2]) == [(dec, c, k) for k, c in enumerate(skip_channels)]

    ctx = TaskContext(torch.zeros(2, dtype=torch.long), cfg.num_tasks)
    x = torch.randn(2, 1, 8, 16, 16)
    model.body(x if enc == 3 else x[:, 0], ctx)
    bottleneck = ctx.store["bottleneck"]
    assert bottleneck.shape[:2] == (2, 4) and bottleneck.ndim == enc + 2


def test_forward_refuses_wrong_shapes() -> None:
    model = build_model(load_config(None, overrides("3to2d", "prefix", "3d", 2)))
    ids = torch.zeros(1, dtype=torch.long)
    with pytest.raises(ValueError, match=r"\(B, 1, 4, H, W\)"):
        model(torch.randn(1, 1, 8, 16, 16), ids)
    with pytest.raises(ValueError, match="multiples of 8"):
        model(torch.randn(1, 1, 4, 16, 12), ids)
    with pytest.raises(ValueError, match="task_ids"):
        model(torch.randn(1, 1, 4, 16, 16), torch.zeros(2, dtype=torch.long))
