"""timm backbones as the 2D encoder of the ``2d`` and ``2to3d`` topologies (architecture.md sec. 5, paper Table 5).

Names (``model.backbone``; ``registry.BACKBONES``, their timm models in ``design.TIMM_BACKBONES``): the
paper's ``resnet18``, ``swin_base``, ``vit_base``, ``dinov2_base``, ``vit_large``, and the smallest variant
of each family for tests and CPU runs: ``swin_tiny``, ``vit_tiny``, ``dinov2_small`` (ResNet-18 is already
the smallest ResNet). Models are built with ``pretrained=False`` (nothing downloads) and
``in_chans`` = the input depth the topology passes (D after prefix interpolation, else D/r).

Levels (level k: ``channels[k]`` channels at stride ``2**k``, the interface of CONTRACTS.md):

- levels finer than the backbone's finest map (stride 1 for ResNet, strides 1 and 2 for Swin and the
  ViTs) come from a convolutional stem on the input, built like our U-Net encoder's first levels
  (level 0 = ResBlock, then stride-2 Down + ResBlock): the backbone's coarse maps cannot carry the full-
  resolution detail a dense regression needs, and up-sampling them would not add it;
- the other levels take a backbone map at their stride through a 1x1 conv + norm + ReLU adapter to
  ``channels[k]``: ResNet's stem and stages (strides 2 to 32) and Swin's stages (4 to 32) via
  ``forward_intermediates``; a plain ViT's last token map (stride 16) through ViTDet's simple feature
  pyramid (pyramid.py: transposed convs for strides 4 and 8, identity at 16, max pooling coarser).
  Levels coarser than a hierarchical backbone's last stage max-pool that stage; stages coarser than the
  deepest level (ResNet-18's layer4 and Swin's last stage in a 5-level network, whose deepest level has
  stride 16) are up-sampled to the deepest level and concatenated with its map, so every stage of the
  backbone is used and counted (paper Table 5 compares whole backbones).

DINOv2 (14-px patches) is fed a bilinear, antialiased resize of the input by 14/16, so its token grid is
exactly H/16 x W/16 and lines up with stride 16 like the other ViTs (padding to a multiple of 14 would
leave a token grid that matches no power-of-two stride). Input constraints (H, W multiples of 4 for Swin,
16 for the ViTs; enough levels for the backbone to feed one) are checked at config time by
``design.check_backbone``.

Conditioning: the foreign backbone and its adapters are unconditioned (a task-agnostic feature
extractor, as in TSNs with its ResNet-18); the task conditioning acts in the decoder and the head, which
the topology builds from the same factory. The stem is ours and comes from the factory with role
``"encoder"``, so it is conditioned exactly where the ``unet`` encoder would be (TSNs: not at all).

Weights: ``model.backbone_weights`` is a local state dict of the timm model (a timm / Hugging Face
``pytorch_model.bin`` or ``model.safetensors``, or torchvision's ResNet-18), read with
``torch.load(weights_only=True)``; timm's own checkpoint filter resamples position embeddings and window
tables to this input size, the first conv is adapted from 3 to ``in_chans`` channels as timm does, the
classifier is dropped. Missing, unexpected or mis-shaped keys are a one-line CheckpointError.
"""

from __future__ import annotations

import abc
import pickle
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import timm
import torch
import torch.nn.functional as F
from timm.models import adapt_input_conv
from torch import Tensor, nn

from sparsessp.design import TIMM_BACKBONES, TimmBackbone
from sparsessp.errors import CheckpointError
from sparsessp.models.backbones.pyramid import SimpleFeaturePyramid, octaves
from sparsessp.models.blocks import Down, ResBlock
from sparsessp.models.conditioning.base import Conditioning, CondSequential, Plain, TaskContext, norm_nd

if TYPE_CHECKING:
    from sparsessp.config import Config


def _read_state_dict(path: Path) -> dict[str, Tensor]:
    """Tensors of a weights file (safetensors or a torch state dict, unwrapped from "state_dict" / "model")."""
    if not path.is_file():
        raise CheckpointError(f"model.backbone_weights: file not found: {path}")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise CheckpointError(f"model.backbone_weights: {path} needs the safetensors package") from None
        try:
            return load_file(str(path), device="cpu")
        except Exception as exc:  # safetensors raises its own error types for a damaged file
            raise CheckpointError(f"model.backbone_weights: cannot read {path}: {exc}") from None
    try:
        obj: Any = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(
            f"model.backbone_weights: {path} holds pickled objects beyond tensors; refusing to unpickle it"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(f"model.backbone_weights: cannot read {path}: {str(exc).splitlines()[0]}") from None
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise CheckpointError(f"model.backbone_weights: {path} is not a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def load_backbone_weights(model: nn.Module, path: Path, name: str) -> None:
    """Load a local weights file into a full (unpruned, headless) timm model; any mismatch is a CheckpointError."""
    state = _read_state_dict(Path(path))
    filter_fn = getattr(sys.modules[type(model).__module__], "checkpoint_filter_fn", None)
    if filter_fn is not None:
        try:
            state = filter_fn(state, model)
        except (KeyError, RuntimeError, ValueError, AttributeError) as exc:
            raise CheckpointError(
                f"model.backbone_weights: {path} does not fit backbone {name!r} ({exc.__class__.__name__}: {exc})"
            ) from None
    own = model.state_dict()
    classifier = model.pretrained_cfg.get("classifier")
    if isinstance(classifier, str):
        state = {k: v for k, v in state.items() if k in own or not k.startswith(classifier + ".")}
    first_conv = model.pretrained_cfg.get("first_conv")
    key = f"{first_conv}.weight" if isinstance(first_conv, str) else None
    if key in state and key in own and state[key].ndim == 4 and state[key].shape[1] != own[key].shape[1]:
        state[key] = adapt_input_conv(own[key].shape[1], state[key], base_chans=state[key].shape[1])
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shaped = [k for k in state if k in own and state[k].shape != own[k].shape]
    if missing or unexpected or shaped:
        parts = [
            f"{len(keys)} {what} (e.g. {keys[0]!r})"
            for what, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", shaped))
            if keys
        ]
        raise CheckpointError(
            f"model.backbone_weights: {path} does not fit backbone {name!r} "
            f"(timm {TIMM_BACKBONES[name].timm_name}): {', '.join(parts)} keys"
        )
    model.load_state_dict(state)


def _adapter(cin: int, cout: int, norm: str) -> nn.Module:
    """1x1 conv + norm + ReLU: a backbone map's channels -> the decoder's channels at that level."""
    return nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), norm_nd(norm, 2, cout), nn.ReLU(inplace=True))


class TimmEncoder2d(nn.Module, abc.ABC):
    """A timm backbone behind the 2D-encoder interface: ``forward(x (B, in_chans, H, W), ctx)`` -> one map
    per level, level k with ``channels[k]`` channels at stride ``2**k`` (see the module docstring).

    Subclasses create the timm model (:meth:`_create`), choose its maps for the backbone levels
    (:meth:`_setup_maps`, returning their channel counts) and compute them (:meth:`_maps`).
    """

    def __init__(self, cond: Conditioning, in_chans: int, channels: list[int], cfg: Config) -> None:
        super().__init__()
        name = cfg.model.backbone
        spec = TIMM_BACKBONES[name]
        strides = [2**k for k in range(len(channels))]
        n_stem = sum(s < spec.finest_stride for s in strides)
        if n_stem == len(channels):
            raise ValueError(f"backbone {name!r} feeds no level of a {len(channels)}-level network")
        stem: list[nn.Module] = []
        for k in range(n_stem):
            block = ResBlock(cond, 2, in_chans if k == 0 else channels[k], channels[k], role="encoder")
            if k == 0:
                stem.append(block)
            else:
                stem.append(CondSequential([Plain(Down(2, channels[k - 1], channels[k], 2, cond.norm_kind)), block]))
        self.stem = nn.ModuleList(stem)
        self.backbone = self._create(spec, in_chans, cfg)
        if cfg.model.backbone_weights is not None:
            load_backbone_weights(self.backbone, cfg.model.backbone_weights, name)
        map_channels = self._setup_maps(strides[n_stem:])
        self.adapters = nn.ModuleList(
            _adapter(cin, cout, cond.norm_kind) for cin, cout in zip(map_channels, channels[n_stem:])
        )

    @abc.abstractmethod
    def _create(self, spec: TimmBackbone, in_chans: int, cfg: Config) -> nn.Module:
        """The headless timm model, sized for ``cfg.data.patch`` where it needs a size."""

    @abc.abstractmethod
    def _setup_maps(self, strides: list[int]) -> list[int]:
        """Prepare one backbone map per stride (pruning what no map needs); their channel counts."""

    @abc.abstractmethod
    def _maps(self, x: Tensor) -> list[Tensor]:
        """The backbone maps of :meth:`_setup_maps`, in the same order."""

    def forward(self, x: Tensor, ctx: TaskContext) -> list[Tensor]:
        feats: list[Tensor] = []
        h = x
        for level in self.stem:
            h = level(h, ctx)
            feats.append(h)
        feats.extend(adapter(m) for adapter, m in zip(self.adapters, self._maps(x)))
        return feats


class HierarchicalEncoder2d(TimmEncoder2d):
    """A multi-stage timm backbone (``feature_info`` strides): each level takes the stage at its stride, or
    max-pools the last stage for levels coarser than it. Every stage is used (paper Table 5 compares whole
    backbones): stages coarser than the deepest level are bilinearly up-sampled to its size and concatenated
    with its stage before its adapter (as TSNs' ResNet-18 U-Net feeds its stride-32 ``layer4`` to the decoder).
    Only the classifier head and the final norm are dropped."""

    def _setup_maps(self, strides: list[int]) -> list[int]:
        info = self.backbone.feature_info
        reductions = [int(d["reduction"]) for d in info]
        taps: list[int] = []
        self._pools: list[int] = []
        for stride in strides:
            if stride in reductions:
                taps.append(reductions.index(stride))
                self._pools.append(1)
            elif stride > reductions[-1]:
                taps.append(len(reductions) - 1)
                self._pools.append(2 ** octaves(reductions[-1], stride))
            else:
                raise ValueError(f"{type(self.backbone).__name__} has no feature map at stride {stride}")
        self._extra = [i for i, r in enumerate(reductions) if r > strides[-1]]
        self._indices = sorted(set(taps) | set(self._extra))
        self.backbone.prune_intermediate_layers(self._indices, prune_norm=True, prune_head=True)
        self._select = [self._indices.index(t) for t in taps]
        self._fuse = [self._indices.index(i) for i in self._extra]
        channels = [int(info[t]["num_chs"]) for t in taps]
        channels[-1] += sum(int(info[i]["num_chs"]) for i in self._extra)
        return channels

    def _maps(self, x: Tensor) -> list[Tensor]:
        feats = self.backbone.forward_intermediates(
            x, indices=self._indices, stop_early=True, output_fmt="NCHW", intermediates_only=True
        )
        maps = [feats[i] if p == 1 else F.max_pool2d(feats[i], p) for i, p in zip(self._select, self._pools)]
        if self._fuse:
            size = maps[-1].shape[-2:]
            deeper = [F.interpolate(feats[i], size=size, mode="bilinear", align_corners=False) for i in self._fuse]
            maps[-1] = torch.cat([maps[-1], *deeper], dim=1)
        return maps


class ResNetEncoder2d(HierarchicalEncoder2d):
    """ResNet (``resnet18``): stem (stride 2) and stages (strides 4 to 32); any input size."""

    def _create(self, spec: TimmBackbone, in_chans: int, cfg: Config) -> nn.Module:
        return timm.create_model(spec.timm_name, pretrained=False, in_chans=in_chans, num_classes=0)


class SwinEncoder2d(HierarchicalEncoder2d):
    """Swin Transformer (``swin_tiny``, ``swin_base``): four stages at strides 4 to 32.

    Built for ``img_size`` = the patch's H x W with ``strict_img_size=False``: timm then builds the
    shifted-window masks per input, pads maps to whole 7 x 7 windows (windows clamp to smaller maps)
    and pads odd sizes before merging, so any H, W that are multiples of 4 run.
    """

    def _create(self, spec: TimmBackbone, in_chans: int, cfg: Config) -> nn.Module:
        return timm.create_model(
            spec.timm_name,
            pretrained=False,
            in_chans=in_chans,
            num_classes=0,
            img_size=tuple(cfg.data.patch[1:]),
            strict_img_size=False,
        )


class ViTEncoder2d(TimmEncoder2d):
    """Plain ViT (``vit_tiny``, ``vit_base``, ``vit_large``, ``dinov2_small``, ``dinov2_base``) + ViTDet pyramid.

    The last block's tokens (with the final LayerNorm) form a stride-16 map; ViTDet's simple feature
    pyramid turns it into the maps of the backbone levels (strides 4 to 16 by transposed convs and
    identity, coarser by max pooling). ``dynamic_img_size`` interpolates the position embedding for
    inputs other than the configured patch. A patch size other than 16 (DINOv2's 14) is handled by
    resizing the input by ``patch / 16``, so the token grid is H/16 x W/16 either way.
    """

    def _create(self, spec: TimmBackbone, in_chans: int, cfg: Config) -> nn.Module:
        model = timm.create_model(
            spec.timm_name, pretrained=False, in_chans=in_chans, num_classes=0, dynamic_img_size=True
        )
        self._token_stride = spec.grid
        self._patch = int(model.patch_embed.patch_size[0])
        height, width = cfg.data.patch[1:]
        model.set_input_size(img_size=(self._resized(height), self._resized(width)))
        return model

    def _resized(self, size: int) -> int:
        """Input size fed to the ViT: ``size / 16`` tokens of ``patch`` pixels each."""
        return size // self._token_stride * self._patch

    def _setup_maps(self, strides: list[int]) -> list[int]:
        self.backbone.prune_intermediate_layers(1, prune_norm=False, prune_head=True)
        self.pyramid = SimpleFeaturePyramid(self.backbone.embed_dim, self._token_stride, strides)
        return list(self.pyramid.out_channels)

    def _maps(self, x: Tensor) -> list[Tensor]:
        height, width = x.shape[-2:]
        if height % self._token_stride or width % self._token_stride:
            raise ValueError(
                f"{height} x {width} input: this ViT encoder needs multiples of {self._token_stride} (its token grid)"
            )
        if self._patch != self._token_stride:
            size = (self._resized(height), self._resized(width))
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        tokens = self.backbone.forward_intermediates(
            x, indices=1, norm=True, output_fmt="NCHW", intermediates_only=True
        )[0]
        return self.pyramid(tokens)
