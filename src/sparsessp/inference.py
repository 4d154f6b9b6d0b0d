"""Gaussian sliding-window prediction from a SPARSE transmitted-light volume to the dense 0.29 um grid.

The window is ``(D, H, W)`` on the output (dense) grid and ``(ceil(D / r), H, W)`` on the sparse input, for
any ratio r: a sparse window starting at sparse plane s gives dense planes ``s*r .. s*r + D - 1``, and n sparse
planes give ``n * r`` dense planes (sparse plane k at k*r). Along z the starts tile the n sparse planes with
windows of ``D // r`` whole r-plane cells (= ``D / r`` when r divides D, the released case); when r does not
divide D a window's last sparse plane covers only part of its cell, so one edge-copied sparse plane is
appended for the last window to reach plane ``n * r - 1``, and what it predicts past that is cropped.
Window starts follow the released evaluation (the same positions as MONAI's ``dense_patch_slices``):
per axis an interval ``int(w * (1 - overlap))``, starts ``0, interval, 2 * interval, ...`` until a window
reaches the end, the last one clamped to end exactly at the volume's end. Along z the starts are computed
on the sparse grid and multiplied by ``r``, so every input window begins on a sparse slice (for the
released setting, e.g. D = 16, r = 4, overlap 0.5, these are the released dense-grid starts).
Windows are streamed in batches and accumulated on the device that runs the model into one output and
one weight buffer. :func:`predict_block` does this for one y-x block of the output (the buffers cover the
block plus one window margin), so a field of any size predicts in bounded memory, block by block, with
the same values as a whole-volume pass (:func:`sliding_window` is one block covering the volume).

Weighting (``blend``):

- ``"released"``: the released SparseSSP map, a Gaussian on the OUTPUT window with sigma = window / 8,
  centred at ``s // 2``, normalised to max 1, zeros replaced by the smallest non-zero value.
- ``"monai"``: MONAI's ``compute_importance_map(mode="gaussian")`` evaluated on the OUTPUT window
  (centred at ``(s - 1) / 2``, not normalised, clamped at 1e-3). MONAI's own ``sliding_window_inference``
  would compute it on the input window and resize it into a z staircase, so it is not used here.
- ``"constant"``: every voxel of a window weighs 1 (a plain average of overlapping windows).
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from sparsessp.config import InferenceConfig
from sparsessp.design import sparse_depth
from sparsessp.errors import InputError
from sparsessp.structures import TARGET_VOXEL_UM

if TYPE_CHECKING:
    from torch import nn

log = logging.getLogger(__name__)

ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``fn(x (B, 1, D/r, H, W), task_ids (B,)) -> (B, 1, D, H, W)``; an ``nn.Module`` qualifies."""

_RATIO_TOLERANCE = 0.02


def released_weight_map(window: Sequence[int], sigma_scale: float = 0.125) -> torch.Tensor:
    """The released Gaussian importance map on the output window (float32, max 1, no zeros)."""
    from scipy.ndimage import gaussian_filter

    delta = np.zeros(tuple(window), dtype=np.float64)
    delta[tuple(s // 2 for s in window)] = 1.0
    gauss = gaussian_filter(delta, [s * sigma_scale for s in window], order=0, mode="constant", cval=0.0)
    gauss = (gauss / gauss.max()).astype(np.float32)
    if (gauss == 0).any():
        gauss[gauss == 0] = gauss[gauss != 0].min()
    return torch.from_numpy(gauss)


def monai_weight_map(window: Sequence[int], sigma_scale: float = 0.125) -> torch.Tensor:
    """MONAI 1.6's ``compute_importance_map(window, mode="gaussian", sigma_scale)``, computed the same way.

    Centred at ``(s - 1) / 2``, not normalised, clamped below at ``max(min, 1e-3)``. Rebuilt here because
    importing MONAI takes many seconds; a test checks it equals MONAI's map exactly.
    """
    result = torch.ones(())
    for i, size in enumerate(window):
        x = torch.arange(start=-(size - 1) / 2.0, end=(size - 1) / 2.0 + 1, dtype=torch.float)
        x = torch.exp(x**2 / (-2 * (size * sigma_scale) ** 2))
        result = result.unsqueeze(-1) * x[(None,) * i] if i > 0 else x
    return torch.clamp(result, min=max(float(result.min()), 1e-3)).to(torch.float32)


def weight_map(window: Sequence[int], blend: str = "released", sigma_scale: float = 0.125) -> torch.Tensor:
    """Importance map of one output window for ``blend`` in {"released", "monai", "constant"}."""
    if blend == "released":
        return released_weight_map(window, sigma_scale)
    if blend == "monai":
        return monai_weight_map(window, sigma_scale)
    if blend == "constant":
        return torch.ones(tuple(window), dtype=torch.float32)
    raise ValueError(f"unknown blend {blend!r}; choose released, monai or constant")


def window_starts(size: int, window: int, overlap: float = 0.5) -> list[int]:
    """Start positions of windows of length ``window`` covering ``size >= window`` (released scheme).

    Interval ``max(1, int(window * (1 - overlap)))`` (the whole window when it fits exactly), starts
    ``0, interval, ...`` until a window reaches the end, the last one clamped to end at ``size``.
    """
    if size < window:
        raise ValueError(f"size {size} is smaller than the window {window}; pad first")
    interval = window if size == window else max(1, int(window * (1.0 - overlap)))
    count = next(d for d in range(size) if d * interval + window >= size) + 1
    return [min(d * interval, size - window) for d in range(count)]


def _symmetric_pad(size: int, minimum: int) -> tuple[int, int]:
    missing = max(0, minimum - size)
    return missing // 2, missing - missing // 2


def _module_device(model: Any) -> torch.device | None:
    params = getattr(model, "parameters", None)
    if params is None:
        return None
    first = next(iter(params()), None)
    return None if first is None else first.device


WINDOW_BATCH_VOXELS = 2**21
"""Output voxels per model call that :func:`windows_per_call` aims at: small windows are batched more,
which keeps a CPU's matrix kernels busy (quickstart model, 2 cores: with 16 windows of 32 x 64 x 64 per call
instead of 4 the network ran 1.35x faster per window in fp32 and 1.7x in bf16; benchmarks/RESULTS.md)."""


def windows_per_call(window: Sequence[int], requested: int | None = None) -> int:
    """Windows per model call: ``requested``, or (None) as many as make about 2**21 output voxels, 1 to 16."""
    if requested is not None:
        return max(1, int(requested))
    return max(1, min(16, WINDOW_BATCH_VOXELS // math.prod(int(w) for w in window)))


def _batched(items: Iterator[tuple[int, int, int]], size: int) -> Iterator[list[tuple[int, int, int]]]:
    while batch := list(itertools.islice(items, size)):
        yield batch


@dataclass(frozen=True)
class WindowGrid:
    """Where the windows of a sparse ``(n, Y, X)`` volume go, on the padded grid (module docstring).

    Volumes smaller than the window are zero-padded symmetrically (whole sparse slices along z); when r
    does not divide D one edge-copied sparse plane follows (``extra``). ``starts`` are the padded grid's
    window starts (z on the dense grid). The grid depends only on the volume's shape, so block-wise
    prediction (:func:`predict_block`) places exactly the windows a whole-volume prediction would.
    """

    shape: tuple[int, int, int]
    window: tuple[int, int, int]
    ratio: int
    pads: tuple[tuple[int, int], tuple[int, int], tuple[int, int]]
    starts: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]

    @property
    def in_depth(self) -> int:
        return sparse_depth(self.window[0], self.ratio)

    @property
    def extra(self) -> int:
        """1 when r does not divide D: the edge-copied sparse plane the last window needs."""
        return int(self.window[0] % self.ratio != 0)

    @property
    def sparse_padded(self) -> int:
        return self.shape[0] + sum(self.pads[0]) + self.extra

    @property
    def out_depth(self) -> int:
        """Dense slices of the (unpadded) prediction: sparse slice ``k`` sits at dense slice ``k * r``."""
        return self.shape[0] * self.ratio

    @property
    def padded_depth(self) -> int:
        return self.sparse_padded * self.ratio


def window_grid(shape: Sequence[int], window: Sequence[int], sparse_ratio: int, overlap: float = 0.5) -> WindowGrid:
    """The :class:`WindowGrid` of a sparse volume of ``shape`` for a dense ``window`` ``(D, H, W)``."""
    r = int(sparse_ratio)
    depth, height, width = (int(w) for w in window)
    if r < 1 or depth < r:
        raise ValueError(f"the sparse ratio must be at least 1 and at most the window depth {depth}, got {r}")
    in_depth = sparse_depth(depth, r)
    cells = depth // r  # sparse planes whose r dense planes a window covers whole
    zs, ys, xs = (int(s) for s in shape)
    pads = (_symmetric_pad(zs, in_depth), _symmetric_pad(ys, height), _symmetric_pad(xs, width))
    padded = [size + lo + hi for size, (lo, hi) in zip((zs, ys, xs), pads)]
    padded[0] += int(depth % r != 0)
    starts = (
        tuple(s * r for s in window_starts(padded[0] - (in_depth - cells), cells, overlap)),
        tuple(window_starts(padded[1], height, overlap)),
        tuple(window_starts(padded[2], width, overlap)),
    )
    return WindowGrid((zs, ys, xs), (depth, height, width), r, pads, starts)


def block_bytes(grid: WindowGrid, block: tuple[int, int], batch: int | None = None) -> int:
    """Bytes the block buffers of :func:`predict_block` hold for a ``block`` (h, w) of output.

    Dense output and weight sums over the block plus one window margin, the sparse input over the same
    region, the finished block on the host and one batch of windows in and out (float32).
    """
    depth, height, width = grid.window
    region = (block[0] + 2 * height) * (block[1] + 2 * width)
    voxels = 2 * grid.padded_depth * region + grid.sparse_padded * region + grid.out_depth * block[0] * block[1]
    voxels += windows_per_call(grid.window, batch) * (depth + grid.in_depth) * height * width
    return 4 * voxels


def choose_block(grid: WindowGrid, budget_bytes: float, batch: int | None = None) -> tuple[int, int]:
    """The largest square-ish output block (h, w) whose buffers fit ``budget_bytes`` (at least one window)."""
    _, ys, xs = grid.shape
    _, height, width = grid.window
    size = max(ys, xs)
    while size > min(height, width) and block_bytes(grid, (min(ys, size), min(xs, size)), batch) > budget_bytes:
        size = max(min(height, width), int(size * 0.8))
    return min(ys, max(size, 1)), min(xs, max(size, 1))


def blocks(grid: WindowGrid, block: tuple[int, int]) -> list[tuple[slice, slice]]:
    """Output blocks (y, x slices of the unpadded volume) tiling the field in row-major order."""
    _, ys, xs = grid.shape
    return [
        (slice(y, min(y + block[0], ys)), slice(x, min(x + block[1], xs)))
        for y in range(0, ys, block[0])
        for x in range(0, xs, block[1])
    ]


def _covering(starts: Sequence[int], size: int, lo: int, hi: int) -> list[int]:
    return [s for s in starts if s < hi and s + size > lo]


def block_windows(grid: WindowGrid, block: tuple[slice, slice]) -> int:
    """How many windows :func:`predict_block` runs for ``block`` (those overlapping it)."""
    (_, _), (py0, _), (px0, _) = grid.pads
    ny = len(_covering(grid.starts[1], grid.window[1], block[0].start + py0, block[0].stop + py0))
    nx = len(_covering(grid.starts[2], grid.window[2], block[1].start + px0, block[1].stop + px0))
    return ny * nx * len(grid.starts[0])


RegionReader = Callable[[slice, slice], np.ndarray | torch.Tensor]
"""``read(y, x)``: the normalised sparse input ``(Z/r, h, w)`` of the unpadded volume over slices ``y``, ``x``."""


@torch.no_grad()
def predict_block(
    model: ModelFn | nn.Module,
    read: RegionReader,
    grid: WindowGrid,
    block: tuple[slice, slice],
    task_id: int,
    weights: torch.Tensor,
    batch_size: int | None = None,
    device: torch.device | str = "cpu",
    precision: str = "fp32",
) -> torch.Tensor:
    """Predict the dense ``(Z, h, w)`` output of one y-x ``block``; float32 on ``device``.

    Every window of ``grid`` that overlaps the block runs (batched), its prediction times ``weights``
    is accumulated on ``device`` into buffers covering the block plus the windows' margin, and the
    block is cut out of the normalised sum: the same values as a whole-volume pass, in bounded memory.
    """
    from sparsessp.precision import autocast

    device = torch.device(device)
    depth, height, width = grid.window
    r, in_depth = grid.ratio, grid.in_depth
    (pz0, _), (py0, _), (px0, _) = grid.pads
    by, bx = block
    ys_pad = _covering(grid.starts[1], height, by.start + py0, by.stop + py0)
    xs_pad = _covering(grid.starts[2], width, bx.start + px0, bx.stop + px0)
    ry0, ry1 = ys_pad[0], ys_pad[-1] + height
    rx0, rx1 = xs_pad[0], xs_pad[-1] + width
    zs, ys, xs = grid.shape
    region = torch.zeros((grid.sparse_padded, ry1 - ry0, rx1 - rx0), dtype=torch.float32, device=device)
    src_y = slice(max(ry0 - py0, 0), min(ry1 - py0, ys))
    src_x = slice(max(rx0 - px0, 0), min(rx1 - px0, xs))
    data = torch.as_tensor(read(src_y, src_x), dtype=torch.float32)
    region[
        pz0 : pz0 + zs,
        src_y.start + py0 - ry0 : src_y.stop + py0 - ry0,
        src_x.start + px0 - rx0 : src_x.stop + px0 - rx0,
    ] = data.to(device)
    del data
    if grid.extra:
        region[-1] = region[-2]
    out = torch.zeros((grid.padded_depth, ry1 - ry0, rx1 - rx0), dtype=torch.float32, device=device)
    norm = torch.zeros_like(out)
    weights = weights.to(device)
    starts = itertools.product(grid.starts[0], ys_pad, xs_pad)
    for batch in _batched(starts, windows_per_call(grid.window, batch_size)):
        x = torch.stack(
            [region[z // r : z // r + in_depth, y - ry0 : y - ry0 + height, w - rx0 : w - rx0 + width]
             for z, y, w in batch]
        )[:, None]
        tasks = torch.full((len(batch),), int(task_id), dtype=torch.int64, device=device)
        with autocast(precision, device):
            pred = model(x, tasks)
        if tuple(pred.shape) != (len(batch), 1, depth, height, width):
            raise ValueError(f"model returned {tuple(pred.shape)} for windows of {(depth, height, width)}")
        pred = pred.float()
        for k, (z, y, w) in enumerate(batch):
            cut = (slice(z, z + depth), slice(y - ry0, y - ry0 + height), slice(w - rx0, w - rx0 + width))
            out[cut].addcmul_(pred[k, 0], weights)
            norm[cut] += weights
    del region
    z0 = pz0 * r
    cut = (
        slice(z0, z0 + grid.out_depth),
        slice(by.start + py0 - ry0, by.stop + py0 - ry0),
        slice(bx.start + px0 - rx0, bx.stop + px0 - rx0),
    )
    return out[cut] / norm[cut]


@torch.no_grad()
def sliding_window(
    model: ModelFn | nn.Module,
    sparse_volume: torch.Tensor,
    task_id: int,
    window: Sequence[int],
    sparse_ratio: int,
    overlap: float = 0.5,
    blend: str = "released",
    batch_size: int | None = None,
    sigma_scale: float = 0.125,
    device: torch.device | str | None = None,
    precision: str = "fp32",
) -> torch.Tensor:
    """Predict the dense ``(1, 1, Z, Y, X)`` volume from a sparse ``(1, 1, Z/r, Y, X)`` one.

    ``window`` is ``(D, H, W)`` on the dense grid (any ``sparse_ratio`` >= 1). Volumes smaller
    than the window are zero-padded (symmetrically, whole sparse slices along z) and cropped back. The
    windows run and are accumulated on ``device`` (default: the model's parameters' device, else the
    volume's) under ``precision`` (:mod:`sparsessp.precision`); the result comes back to the volume's
    device in float32. Output depth is ``Z/r * r``. One block of :func:`predict_block` covers the volume.
    """
    if sparse_volume.ndim != 5 or sparse_volume.shape[:2] != (1, 1):
        raise ValueError(f"expected a (1, 1, Z/r, Y, X) volume, got {tuple(sparse_volume.shape)}")
    grid = window_grid(sparse_volume.shape[2:], window, sparse_ratio, overlap)
    run_device = torch.device(device) if device is not None else (_module_device(model) or sparse_volume.device)
    volume = sparse_volume[0, 0].float()
    out = predict_block(
        model,
        lambda y, x: volume[:, y, x],
        grid,
        (slice(0, grid.shape[1]), slice(0, grid.shape[2])),
        task_id,
        weight_map(grid.window, blend, sigma_scale),
        batch_size,
        run_device,
        precision,
    )
    return out.to(sparse_volume.device).reshape(1, 1, *out.shape)


def interpolate_z(volume: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Slices of a ``(Z, Y, X)`` volume at fractional z ``positions`` (linear, clamped to the ends), float32."""
    pos = np.clip(np.asarray(positions, dtype=np.float64), 0, volume.shape[0] - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, volume.shape[0] - 1)
    frac = (pos - lo).astype(np.float32)[:, None, None]
    return (volume[lo] * (1 - frac) + volume[hi] * frac).astype(np.float32)


def _resample_z(volume: np.ndarray, step_in: float, step_out: float) -> np.ndarray:
    """Linear resampling along z from spacing ``step_in`` to ``step_out``, starting at slice 0."""
    count = max(1, math.floor((volume.shape[0] - 1) * step_in / step_out + 1e-6) + 1)
    return interpolate_z(volume, np.arange(count) * (step_out / step_in))


def to_model_grid(tl: np.ndarray, z_step_um: float | None, model_ratio: int, source: str = "the stack") -> np.ndarray:
    """Bring a TL stack with z-step ``z_step_um`` to the model's sparse grid (``model_ratio`` x 0.29 um).

    - ``None``: the stack is taken to be sampled at the model's z-step already.
    - a step that is a whole multiple ``k`` of 0.29 um: ``k == r`` is used as is; a denser stack whose ``k``
      divides ``r`` is subsampled (every ``r / k``-th slice); any other denser step is linearly resampled
      along z to ``r x 0.29`` um with a logged warning.
    - a step that is not a multiple of 0.29 um: resampled to ``r x 0.29`` um with a logged warning when its
      nearest whole ratio is at most ``r``.
    - a step sparser than the model's (nearest whole ratio above ``r``): an :class:`InputError`.

    ``source`` names the stack (a file) in the warning and the error.
    """
    if z_step_um is None:
        return tl
    if not math.isfinite(z_step_um) or z_step_um <= 0:
        raise InputError(f"z-step must be a positive number of micrometres, got {z_step_um}")
    ratio = z_step_um / TARGET_VOXEL_UM
    nearest = max(1, round(ratio))
    model_step = model_ratio * TARGET_VOXEL_UM
    if nearest > model_ratio:
        raise InputError(
            f"{source}: z-step {z_step_um:g} um (sparse ratio {ratio:.2f}) is sparser than the model's "
            f"{model_step:g} um (ratio {model_ratio}); use a model trained with sparse ratio {nearest}"
        )
    is_whole = abs(ratio - nearest) <= _RATIO_TOLERANCE * nearest
    if is_whole and nearest == model_ratio:
        return tl
    if is_whole and model_ratio % nearest == 0:
        return tl[:: model_ratio // nearest]
    log.warning(
        "%s: z-step %g um is not a whole fraction of the model's %g um; resampled linearly along z",
        source,
        z_step_um,
        model_step,
    )
    return _resample_z(tl, z_step_um, model_step)


def zscore(volume: np.ndarray) -> np.ndarray:
    """Per-volume z-score (float32), as the training data pipeline normalises TL; rejects bad volumes."""
    data = np.asarray(volume, dtype=np.float32)
    if not np.isfinite(data).all():
        raise InputError("the image has NaN or infinite voxels")
    std = float(data.std(dtype=np.float64))
    if std == 0.0 or not math.isfinite(std):
        raise InputError("the image is constant (standard deviation 0): nothing to predict from")
    return ((data - float(data.mean(dtype=np.float64))) / std).astype(np.float32)


def model_sparse_ratio(model: Any) -> int:
    """The sparse ratio a model was built for (attribute ``sparse_ratio`` or its config)."""
    ratio = getattr(model, "sparse_ratio", None)
    if ratio is None:
        ratio = model.config.data.sparse_ratio
    return int(ratio)


def model_window(model: Any) -> tuple[int, int, int]:
    """The dense window ``(D, H, W)`` a model was built for (attribute ``patch`` or its config)."""
    patch = getattr(model, "patch", None)
    if patch is None:
        patch = model.config.data.patch
    return tuple(int(p) for p in patch)  # type: ignore[return-value]


def task_id_of(model: Any, structure: str) -> int:
    """Task id of ``structure`` in the model; unknown names are an :class:`InputError`."""
    structures = list(getattr(model, "structures", None) or model.config.data.structures)
    if structure not in structures:
        raise InputError(f"the model does not know structure {structure!r}; it knows: {', '.join(structures)}")
    return structures.index(structure)


def inference_settings(model: Any) -> InferenceConfig:
    """The model's ``config.inference`` (sliding window, batching, layout), or the defaults for a bare model."""
    inference = getattr(getattr(model, "config", None), "inference", None)
    return inference if inference is not None else InferenceConfig()


def prepare_model(model: nn.Module, device: torch.device | str) -> nn.Module:
    """``model`` on ``device`` in eval mode, its weights in the layout its ``inference.memory_format`` means there
    (:mod:`sparsessp.memory_format`). Returns ``model`` (moved in place)."""
    from sparsessp import memory_format

    model.to(device).eval()
    return memory_format.for_device(model, inference_settings(model).memory_format, device)


def predict_volume(
    model: nn.Module,
    tl: np.ndarray,
    structure: str,
    z_step_um: float | None = None,
    precision: str = "fp32",
    window_batch: int | None = None,
) -> np.ndarray:
    """Predict ``structure`` from a TL stack ``(Z, Y, X)``; returns float32 ``(Z', Y, X)`` on the 0.29 um grid.

    The stack is z-scored (as in training) and brought to the model's sparse grid (:func:`to_model_grid`;
    ``z_step_um=None`` means it is sampled at the model's z-step already). ``Z'`` is the sparse slice count
    times the model's sparse ratio; sparse slice ``k`` sits at output slice ``k * r``. Values are z-scores
    of the structure's intensity. Inference settings come from ``model.config.inference`` when present.
    The windows run on the model's device under ``precision`` (fp32, bf16 or fp16; :mod:`sparsessp.precision`),
    ``window_batch`` per call (default: the inference config's, else :func:`windows_per_call`'s choice).
    Fields larger than memory go through :func:`sparsessp.predict.predict_file` (block by block).
    """
    tl = np.asarray(tl)
    if tl.ndim != 3:
        raise InputError(f"expected a 3D stack (Z, Y, X), got an array of shape {tl.shape}")
    task = task_id_of(model, structure)
    ratio = model_sparse_ratio(model)
    sparse = to_model_grid(zscore(tl), z_step_um, ratio)
    inference = inference_settings(model)
    was_training = bool(getattr(model, "training", False))
    model.eval()
    try:
        pred = sliding_window(
            model,
            torch.from_numpy(np.ascontiguousarray(sparse))[None, None],
            task,
            model_window(model),
            ratio,
            overlap=inference.overlap,
            blend=inference.blend,
            batch_size=window_batch or inference.window_batch,
            sigma_scale=inference.sigma_scale,
            precision=precision,
        )
    finally:
        model.train(was_training)
    return pred[0, 0].cpu().numpy()
