"""timm 2D backbones (issue 5): feature levels, the full 2d / 2to3d networks, config checks, local weights.

Every family runs at its smallest variant (resnet18, swin_tiny, vit_tiny, dinov2_small) on a 64 x 64
input with 5 levels; the paper-size models are built only in the ``slow`` test.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from torch import nn

from sparsessp.config import Config, load_config
from sparsessp.design import TIMM_BACKBONES
from sparsessp.errors import CheckpointError, ConfigError
from sparsessp.models.backbones.pyramid import SimpleFeaturePyramid
from sparsessp.models.backbones.timm_encoders import HierarchicalEncoder2d, TimmEncoder2d, load_backbone_weights
from sparsessp.models.conditioning.base import Conditioning
from sparsessp.models.registry import BACKBONES, build_model, resolve

SMALL = ["resnet18", "swin_tiny", "vit_tiny", "dinov2_small"]
PAPER = ["resnet18", "swin_base", "vit_base", "dinov2_base", "vit_large"]
CHANNELS = [8, 16, 16, 32, 32]
CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs" / "paper" / "backbones"


def small_config(backbone: str, topology: str = "2d", *extra: str) -> Config:
    return load_config(
        None,
        [
            f"model.backbone={backbone}",
            f"model.topology={topology}",
            f"model.channels={CHANNELS}",
            "data.patch=[8,64,64]",
            "data.sparse_ratio=2",
            "data.structures=[dna,tom20]",
            *extra,
        ],
    )


def build_encoder(cfg: Config, in_chans: int = 4) -> TimmEncoder2d:
    encoder = resolve(BACKBONES, cfg.model.backbone)(Conditioning(cfg.num_tasks), in_chans, CHANNELS, cfg)
    assert isinstance(encoder, TimmEncoder2d)
    return encoder


def test_registry_names_the_paper_backbones_and_timm_knows_them() -> None:
    assert set(PAPER) | set(SMALL) == set(TIMM_BACKBONES)
    assert set(TIMM_BACKBONES) <= set(BACKBONES)
    known = set(timm.list_models())
    assert all(spec.timm_name in known for spec in TIMM_BACKBONES.values())


@pytest.mark.parametrize(("topology", "interpolation"), [("2d", "prefix"), ("2to3d", "postfix")])
@pytest.mark.parametrize("name", SMALL)
def test_backbone_inside_the_topology_with_tsn(name: str, topology: str, interpolation: str) -> None:
    """Encoder levels (channels[k] at stride 2**k), the network's output, gradients, another input size.

    in_chans is D = 8 after prefix interpolation and D/r = 4 with postfix. Every parameter must get a
    gradient; some may be exactly zero at init (timm zero-initialises the last BN of each ResNet block).
    """
    torch.manual_seed(0)
    model = build_model(small_config(name, topology, "model.conditioning=tsn", f"model.interpolation={interpolation}"))
    encoder = model.body.encoder
    assert isinstance(encoder, TimmEncoder2d)
    feats: list[torch.Tensor] = []
    encoder.register_forward_hook(lambda _module, _args, out: feats.extend(out))
    y = model(torch.randn(2, 1, 4, 64, 64), torch.tensor([0, 1]))
    assert y.shape == (2, 1, 8, 64, 64)
    assert [tuple(f.shape) for f in feats] == [(2, c, 64 // 2**k, 64 // 2**k) for k, c in enumerate(CHANNELS)]
    (y * torch.randn_like(y)).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, f"parameters without gradient: {missing[:5]}"
    assert all(p.grad.abs().sum() > 0 for p in encoder.adapters.parameters())
    assert sum(p.grad.abs().sum() for p in encoder.backbone.parameters()) > 0
    if isinstance(encoder, HierarchicalEncoder2d):
        reductions = [d["reduction"] for d in encoder.backbone.feature_info]
        assert min(reductions) == TIMM_BACKBONES[name].finest_stride
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, 4, 48, 80), torch.tensor([1])).shape == (1, 1, 8, 48, 80)


def test_simple_feature_pyramid_shapes() -> None:
    pyramid = SimpleFeaturePyramid(8, 16, [4, 8, 16, 32, 64])
    maps = pyramid(torch.randn(1, 8, 4, 4))
    assert pyramid.out_channels == [2, 4, 8, 8, 8]
    assert [tuple(m.shape) for m in maps] == [(1, 2, 16, 16), (1, 4, 8, 8), (1, 8, 4, 4), (1, 8, 2, 2), (1, 8, 1, 1)]
    with pytest.raises(ValueError, match="powers of two"):
        SimpleFeaturePyramid(8, 16, [12])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.backbone=vit_base", "model.channels=[8,8,8,8]", "data.patch=[8,40,40]"], "multiples of 16"),
        (["model.backbone=dinov2_base", "model.channels=[8,8,8,8]", "data.patch=[8,56,56]"], "multiples of 16"),
        (["model.backbone=swin_tiny", "model.channels=[8,8]", "data.patch=[8,18,18]"], "multiples of 4"),
        (["model.backbone=swin_base", "model.channels=[8,8]", "data.patch=[8,16,16]"], "at least 3 levels"),
        (["model.backbone=resnet18", "model.topology=3to2d"], "2D encoder"),
    ],
)
def test_config_time_errors_name_the_constraint(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, ["model.topology=2d", "data.sparse_ratio=2", *overrides])


def test_local_weights_load_adapted_and_mismatches_are_one_line_errors(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = timm.create_model("vit_tiny_patch16_224", pretrained=False)
    state = source.state_dict()
    torch.save(state, tmp_path / "vit.pth")
    encoder = build_encoder(small_config("vit_tiny", "2d", f"model.backbone_weights={tmp_path / 'vit.pth'}"))
    loaded = encoder.backbone.state_dict()
    torch.testing.assert_close(loaded["blocks.3.mlp.fc1.weight"], state["blocks.3.mlp.fc1.weight"])
    assert loaded["patch_embed.proj.weight"].shape[1] == 4
    assert loaded["pos_embed"].shape[1] == 1 + 4 * 4

    torch.save({"model": timm.create_model("resnet18", pretrained=False).state_dict()}, tmp_path / "resnet.pth")
    torch.save({"net": nn.Linear(2, 2)}, tmp_path / "pickled.pth")
    for path, message in [
        (tmp_path / "resnet.pth", "does not fit backbone 'vit_tiny'.*missing"),
        (tmp_path / "pickled.pth", "refusing to unpickle"),
        (tmp_path / "absent.pth", "not found"),
    ]:
        with pytest.raises(CheckpointError, match=message):
            load_backbone_weights(encoder.backbone, path, "vit_tiny")


def test_swin_weights_from_another_input_size_load(tmp_path: Path) -> None:
    source = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False)
    torch.save(source.state_dict(), tmp_path / "swin.pth")
    encoder = build_encoder(small_config("swin_tiny", "2d", f"model.backbone_weights={tmp_path / 'swin.pth'}"))
    torch.testing.assert_close(
        encoder.backbone.state_dict()["layers.1.blocks.0.mlp.fc1.weight"],
        source.state_dict()["layers.1.blocks.0.mlp.fc1.weight"],
    )


@pytest.mark.parametrize("topology", ["2d", "2to3d"])
@pytest.mark.parametrize("name", PAPER)
def test_paper_configs_load(name: str, topology: str) -> None:
    cfg = load_config(CONFIG_DIR / f"{name}_{topology}.yaml")
    assert (cfg.model.backbone, cfg.model.topology, cfg.model.conditioning) == (name, topology, "tsn")
    assert cfg.data.patch == (32, 128, 128) and cfg.data.sparse_ratio == 8
    assert cfg.train.epochs == (7000 if topology == "2d" else 3000)


@pytest.mark.slow
@pytest.mark.parametrize("name", PAPER)
def test_paper_size_backbones_forward(name: str) -> None:
    cfg = load_config(CONFIG_DIR / f"{name}_2to3d.yaml")
    model = build_model(cfg).eval()
    with torch.no_grad():
        y = model(torch.randn(1, 1, 4, 128, 128), torch.tensor([3]))
    assert y.shape == (1, 1, 32, 128, 128)


@pytest.mark.parametrize("name", ["resnet18", "swin_tiny", "vit_tiny"])
def test_every_stage_of_the_backbone_is_used_and_counted(name: str) -> None:
    """The encoder holds the whole timm feature extractor (last stage included) and every stage gets a gradient."""
    torch.manual_seed(0)
    model = build_model(small_config(name, "2d", "model.conditioning=tsn"))
    encoder = model.body.encoder
    size = {"img_size": (64, 64), "strict_img_size": False} if name == "swin_tiny" else {}
    size = {"img_size": (64, 64)} if name == "vit_tiny" else size
    full = timm.create_model(TIMM_BACKBONES[name].timm_name, pretrained=False, in_chans=8, num_classes=0, **size)
    final_norm = sum(p.numel() for n, p in full.named_parameters() if n.startswith(("norm.", "fc_norm.")))
    kept = sum(p.numel() for p in encoder.backbone.parameters())
    assert kept == sum(p.numel() for p in full.parameters()) - (final_norm if name != "vit_tiny" else 0)
    last = {"resnet18": "layer4.", "swin_tiny": "layers.3.", "vit_tiny": "blocks.11."}[name]
    y = model(torch.randn(2, 1, 4, 64, 64), torch.tensor([0, 1]))
    (y * torch.randn_like(y)).sum().backward()
    grads = [p.grad for n, p in encoder.backbone.named_parameters() if n.startswith(last)]
    assert grads and all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0
