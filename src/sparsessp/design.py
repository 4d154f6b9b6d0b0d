"""The design space's names, arithmetic and cross-field rules (pure Python, no torch): impossible
combinations fail when a config is built, before any work starts.

It sits on the config's side of the import direction (cli -> ... -> models -> config -> design): the
config calls :func:`check_model_config` and never imports :mod:`sparsessp.models`; the models import the
depth arithmetic they are built from (``input_depth``, ``level_depths``) from here, so the checks and the
modules cannot disagree. ``models.registry`` maps the names listed here to classes (a test keeps both
in step).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from sparsessp.config import DataConfig, ModelConfig

CONDITIONINGS: tuple[str, ...] = ("none", "condnet", "multihead", "tsn", "dodnet", "tgnet", "multinet", "repmode")
"""Names of ``model.conditioning`` (``models.registry.CONDITIONINGS`` maps each to its factory)."""

BACKBONES: tuple[str, ...] = (
    "unet",
    "resnet18",
    "swin_tiny",
    "swin_base",
    "vit_tiny",
    "vit_base",
    "vit_large",
    "dinov2_small",
    "dinov2_base",
)
"""Names of ``model.backbone`` (``models.registry.BACKBONES`` maps each to its 2D encoder)."""

ENCODER_DIMS: dict[str, int] = {"3d": 3, "2d": 2, "3to2d": 3, "2to3d": 2}
"""Spatial dims of each topology's encoder."""

DECODER_DIMS: dict[str, int] = {"3d": 3, "2d": 2, "3to2d": 2, "2to3d": 3}
"""Spatial dims of each topology's decoder."""


class TimmBackbone(NamedTuple):
    """A timm model behind a ``model.backbone`` name and the input arithmetic of its adapter (timm_encoders.py)."""

    timm_name: str
    grid: int
    """H and W must be multiples of this (the token grid's stride; 1 = no constraint of its own)."""
    grid_reason: str
    finest_stride: int
    """Finest stride of the maps taken from the backbone; finer levels come from a convolutional stem."""


TIMM_BACKBONES: dict[str, TimmBackbone] = {
    "resnet18": TimmBackbone("resnet18", 1, "", 2),
    "swin_tiny": TimmBackbone("swin_tiny_patch4_window7_224", 4, "its 4-px patch embedding", 4),
    "swin_base": TimmBackbone("swin_base_patch4_window7_224", 4, "its 4-px patch embedding", 4),
    "vit_tiny": TimmBackbone("vit_tiny_patch16_224", 16, "its 16-px patch grid", 4),
    "vit_base": TimmBackbone("vit_base_patch16_224", 16, "its 16-px patch grid", 4),
    "vit_large": TimmBackbone("vit_large_patch16_224", 16, "its 16-px patch grid", 4),
    "dinov2_small": TimmBackbone(
        "vit_small_patch14_dinov2", 16, "its 14-px patches: the input is resized by 14/16 onto an H/16 x W/16 grid", 4
    ),
    "dinov2_base": TimmBackbone(
        "vit_base_patch14_dinov2", 16, "its 14-px patches: the input is resized by 14/16 onto an H/16 x W/16 grid", 4
    ),
}
"""The timm backbones of ``registry.BACKBONES`` (paper Table 5 plus the smallest variant of each family).

Swin in timm pads feature maps to whole windows and odd sizes before patch merging, so it needs no
multiple of 32 x window; only the patch embedding must tile the input.
"""


def sparse_depth(patch_depth: int, sparse_ratio: int) -> int:
    """TL planes of a window of target depth D at any ratio r: ``ceil(D / r)``, sparse plane k at dense k*r.

    Every sparse plane lies inside the window ((ceil(D/r) - 1) * r < D); the networks up-sample them to
    ``ceil(D/r) * r`` planes and crop to D, so r need not divide D.
    """
    return -(-patch_depth // sparse_ratio)


def input_depth(interpolation: str, patch_depth: int, sparse_ratio: int) -> int:
    """Depth the network body sees: the target depth D after prefix interpolation, else the sparse ceil(D/r)."""
    return patch_depth if interpolation == "prefix" else sparse_depth(patch_depth, sparse_ratio)


def level_depths(depth: int, levels: int) -> list[int]:
    """3D depth at each U-Net level: halved per level while it is even, then kept (stride (1, 2, 2)).

    A depth that cannot be halved exactly (odd, e.g. 1 for postfix with a small D/r) stays, so every
    level keeps a whole number of slices and the up-sampling restores each skip's depth exactly.
    """
    depths = [depth]
    for _ in range(levels - 1):
        d = depths[-1]
        depths.append(d // 2 if d % 2 == 0 else d)
    return depths


def check_resampling_patch(patch: Sequence[int], sparse_ratio: int, downsamplings: int, network: str) -> None:
    """Patch rules of a network that resamples the sparse TL by r and down-samples ``downsamplings`` times
    (the released architectures, a pytorch_fnet Multi-Net member): every size a multiple of
    ``2 ** downsamplings``, the depth a multiple of r. Raises ``ValueError`` naming ``network``."""
    multiple = 2**downsamplings
    if any(size % multiple for size in patch):
        raise ValueError(f"data.patch {list(patch)}: {network} needs multiples of {multiple}")
    if patch[0] % sparse_ratio:
        raise ValueError(
            f"data.patch depth {patch[0]} must be a multiple of data.sparse_ratio {sparse_ratio} for {network} "
            "(it resamples the sparse TL by r)"
        )


def check_model_config(model: ModelConfig, data: DataConfig) -> None:
    """Raise ValueError (reported as a config error naming the key) for an impossible model."""
    if model.conditioning not in CONDITIONINGS:
        raise ValueError(
            f"model.conditioning: unknown {model.conditioning!r}; choose one of {', '.join(sorted(CONDITIONINGS))}"
        )
    if model.backbone not in BACKBONES:
        raise ValueError(f"model.backbone: unknown {model.backbone!r}; choose one of {', '.join(sorted(BACKBONES))}")
    check_backbone(model, data)
    depth, height, width = data.patch
    r = data.sparse_ratio
    if depth < r:
        raise ValueError(
            f"data.patch: depth {depth} is smaller than data.sparse_ratio {r}: a window must hold one whole "
            f"sparse interval (r planes)"
        )
    if model.interpolation == "none" and DECODER_DIMS[model.topology] == 3:
        raise ValueError(
            f"model.interpolation: 'none' needs a 2D decoder (topology 2d or 3to2d), but topology "
            f"{model.topology!r} decodes in 3D; use prefix or postfix"
        )
    if model.projection_kernel % 2 == 0:
        raise ValueError(f"model.projection_kernel: {model.projection_kernel} must be odd ('same' padding)")
    levels = model.levels
    multiple = 2 ** (levels - 1)
    if height % multiple or width % multiple:
        raise ValueError(
            f"data.patch: height and width ({height} x {width}) must be multiples of 2**(levels-1) = {multiple} "
            f"(levels = len(model.channels) = {levels}); change data.patch or model.channels"
        )
    depths = level_depths(input_depth(model.interpolation, depth, r), levels)
    if model.projection == "3d" and model.topology == "3to2d":
        for k, dk in enumerate(depths):
            if model.embed_dim % dk:
                raise ValueError(
                    f"model.embed_dim: {model.embed_dim} is not divisible by the depth {dk} of encoder level {k} "
                    f"(projection 3d folds embed_dim/depth channels per slice); use a multiple of "
                    f"{max(depths)} or model.projection=2d"
                )
    if model.projection == "3d" and model.topology == "2to3d":
        for k, (ck, dk) in enumerate(zip(model.scaled_channels(), depths)):
            if ck % dk:
                raise ValueError(
                    f"model.channels: level {k} has {ck} channels (after model.width) that do not split into its "
                    f"depth {dk} (projection 3d unfolds channels/depth per slice); make each level's channels a "
                    f"multiple of its depth {depths} or use model.projection=2d"
                )


def check_backbone(model: ModelConfig, data: DataConfig) -> None:
    """A timm backbone must get a 2D-encoder topology, an input its token grid tiles, and a level it feeds."""
    spec = TIMM_BACKBONES.get(model.backbone)
    if spec is None:
        return
    if ENCODER_DIMS[model.topology] != 2:
        raise ValueError(
            f"model.backbone: {model.backbone!r} is a 2D encoder for topologies 2d and 2to3d, "
            f"but topology {model.topology!r} encodes in 3D"
        )
    _, height, width = data.patch
    if height % spec.grid or width % spec.grid:
        raise ValueError(
            f"data.patch: backbone {model.backbone!r} needs height and width multiples of {spec.grid} "
            f"({spec.grid_reason}), got {height} x {width}"
        )
    needed = spec.finest_stride.bit_length()
    if model.levels < needed:
        raise ValueError(
            f"model.channels: backbone {model.backbone!r} gives features from stride {spec.finest_stride} on, "
            f"so it needs at least {needed} levels (len(model.channels)), got {model.levels}"
        )
