"""Prediction into napari layers: the dock widget's logic, free of Qt so it runs with ``ViewerModel``.

A prediction is placed over its TL layer in world coordinates: same y/x scale and translation, and a z
spacing of ``tl_scale_z * 0.29 / z_step`` (0.29 um when the TL layer's scale is in micrometres, the
prediction's z grid being 0.29 um). It is blended additively over the TL, one colour per structure.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sparsessp.structures import TARGET_VOXEL_UM

if TYPE_CHECKING:
    from torch import nn

LayerData = tuple[np.ndarray, dict[str, Any], str]
"""napari's LayerDataTuple: (data, layer keyword arguments, layer type)."""

COLORMAPS: tuple[str, ...] = ("magenta", "green", "cyan", "yellow", "red", "blue")
QUICKSTART_CHECKPOINT = Path("runs/quickstart/checkpoints/best.ckpt")


def z_step_from_scale(scale: Sequence[float]) -> float | None:
    """The z-step (um) a 3D layer's scale states; None when the scale is napari's unset 1.0 or not 3D."""
    if len(scale) != 3:
        return None
    z = float(scale[0])
    return None if not math.isfinite(z) or z <= 0 or z == 1.0 else z


def default_checkpoint() -> Path | None:
    """The quickstart's model (``runs/quickstart``) when it exists, the widget's starting choice."""
    return QUICKSTART_CHECKPOINT if QUICKSTART_CHECKPOINT.is_file() else None


@dataclass
class Request:
    """One prediction: a TL stack with its layer geometry, the z-step and the structures wanted."""

    tl: np.ndarray
    z_step_um: float
    structures: list[str]
    scale: tuple[float, float, float] = (1.0, 1.0, 1.0)
    translate: tuple[float, float, float] = (0.0, 0.0, 0.0)
    source: str = "TL"
    device: str = "cpu"


def request_from_layer(layer: Any, structures: Sequence[str], z_step_um: float, device: str = "cpu") -> Request:
    """A :class:`Request` for a 3D napari image layer (its data, scale, translation and name)."""
    from sparsessp.errors import InputError

    data = np.asarray(layer.data)
    if data.ndim != 3:
        raise InputError(f"layer {layer.name!r} has {data.ndim} dimensions; a (Z, Y, X) stack is needed")
    return Request(
        tl=data,
        z_step_um=float(z_step_um),
        structures=list(structures),
        scale=tuple(float(s) for s in layer.scale),  # type: ignore[arg-type]
        translate=tuple(float(t) for t in layer.translate),  # type: ignore[arg-type]
        source=str(layer.name),
        device=device,
    )


def prediction_layer(pred: np.ndarray, structure: str, request: Request, index: int = 0) -> LayerData:
    """The layer tuple of one structure's prediction, placed over the request's TL layer."""
    z_scale = request.scale[0] * TARGET_VOXEL_UM / request.z_step_um
    meta = {
        "name": f"{structure} (sparsessp)",
        "scale": (z_scale, request.scale[1], request.scale[2]),
        "translate": request.translate,
        "blending": "additive",
        "colormap": COLORMAPS[index % len(COLORMAPS)],
        "opacity": 0.8,
        "metadata": {"sparsessp": {"structure": structure, "source": request.source, "z_step_um": request.z_step_um,
                                   "units": "z-scores of the structure's fluorescence intensity"}},
    }
    return pred, meta, "image"


def predict_layers(model: nn.Module, request: Request) -> Iterator[LayerData]:
    """Predict each requested structure in turn (validated first), yielding its layer tuple when done."""
    from sparsessp.inference import predict_volume, task_id_of

    for structure in request.structures:
        task_id_of(model, structure)
    model.to(request.device)
    for index, structure in enumerate(request.structures):
        pred = predict_volume(model, request.tl, structure, z_step_um=request.z_step_um)
        yield prediction_layer(pred, structure, request, index)


def load_model(checkpoint: str | Path) -> nn.Module:
    """The checkpoint's model (sparsessp's checks: weights only, one-line errors)."""
    from sparsessp.engine.checkpoint import load_model as load

    return load(checkpoint)


def add_layer(viewer: Any, layer_data: LayerData) -> Any:
    """Add one layer tuple to a viewer (``napari.Viewer`` or ``napari.components.ViewerModel``)."""
    from napari.layers import Layer

    return viewer.add_layer(Layer.create(*layer_data))


def predict_into_viewer(
    viewer: Any, model: nn.Module, request: Request, progress: Callable[[int, int], None] | None = None
) -> list[Any]:
    """Synchronously predict ``request`` and add one layer per structure to ``viewer``; return the layers."""
    added = []
    for done, layer_data in enumerate(predict_layers(model, request), start=1):
        added.append(add_layer(viewer, layer_data))
        if progress is not None:
            progress(done, len(request.structures))
    return added
