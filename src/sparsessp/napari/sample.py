"""Sample data: a SynthCell field of view made on the fly, and the quickstart model's prediction of it."""

from __future__ import annotations

from typing import Any

import numpy as np

from sparsessp.structures import TARGET_VOXEL_UM

SIZE: tuple[int, int, int] = (32, 128, 128)
"""The quickstart's SynthCell field of view (z, y, x) on the 0.29 um grid; renders in about a second."""
SPARSE_RATIO = 4
STRUCTURE = "lamin_b1"

LayerData = tuple[np.ndarray, dict[str, Any], str]


def synthcell_sample(structure: str = STRUCTURE, seed: int = 7) -> list[LayerData]:
    """Sparse TL (every 4th plane, z-step 1.16 um) with the true DNA and ``structure`` fluorescence."""
    from sparsessp.data.synthcell import render_fov

    stack, _ = render_fov(SIZE, seed, structure, 0)
    dense = (TARGET_VOXEL_UM,) * 3
    return [
        (stack[0, ::SPARSE_RATIO].astype(np.float32),
         {"name": "TL (SynthCell)", "scale": (SPARSE_RATIO * TARGET_VOXEL_UM, TARGET_VOXEL_UM, TARGET_VOXEL_UM)},
         "image"),
        (stack[1], {"name": "dna (truth)", "scale": dense, "colormap": "cyan", "blending": "additive",
                    "visible": False}, "image"),
        (stack[2], {"name": f"{structure} (truth)", "scale": dense, "colormap": "green", "blending": "additive",
                    "visible": False}, "image"),
    ]


def quickstart_sample() -> list[LayerData]:
    """The SynthCell sample plus the quickstart model's prediction of its structures (runs/quickstart)."""
    from sparsessp.errors import UserError
    from sparsessp.napari.layers import QUICKSTART_CHECKPOINT, Request, load_model, predict_layers

    if not QUICKSTART_CHECKPOINT.is_file():
        raise UserError(f"no quickstart model at {QUICKSTART_CHECKPOINT.resolve()}; run `sparsessp quickstart` first")
    layers = synthcell_sample()
    tl, meta, _ = layers[0]
    model = load_model(QUICKSTART_CHECKPOINT)
    wanted = [s for s in ("dna", STRUCTURE) if s in model.structures] or model.structures[:1]
    request = Request(tl=tl, z_step_um=meta["scale"][0], structures=wanted, scale=meta["scale"], source=meta["name"])
    return [*layers, *predict_layers(model, request)]
