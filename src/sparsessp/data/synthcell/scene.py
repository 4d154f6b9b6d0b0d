"""One field of view of a synthetic hiPSC-like colony: cells, nuclei and the twelve structure densities.

Geometry (voxels of 0.29 um, axes z, y, x): a monolayer of cells from a relaxed Voronoi tessellation in
xy on a coverslip, each with a domed apical surface; an ellipsoidal nucleus with nucleoli; every
structure drawn where biology puts it (synthcell.md), plus unlabelled distractors (lipid droplets,
vesicles) that only the transmitted light sees. Densities are float32 in [0, ~1.5].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from sparsessp.data.synthcell.shapes import (
    bandpass_noise,
    deposit_points,
    random_rotations,
    random_walks,
    segments_points,
    splat_blobs,
)
from sparsessp.structures import STRUCTURES, TARGET_VOXEL_UM

UM = 1.0 / TARGET_VOXEL_UM
"""Voxels per micrometre."""

COLONY_POSITIONS: tuple[str, ...] = ("center", "edge", "ridge")
DISTRACTORS: tuple[str, ...] = ("lipid_droplets", "vesicles")
REFERENCE_XY = 192
"""The xy size at which a field holds 6 to 14 cells; other sizes scale the count with the area."""


@dataclass
class Scene:
    """Ground truth of one field of view (volumes (Z, Y, X), maps (Y, X), lengths in voxels).

    ``densities``: the twelve structures; ``distractors``: unlabelled lipid droplets and vesicles;
    ``cell`` / ``nucleus``: masks; ``surface_distance``: distance inside a cell to its nearest surface
    (lateral, apical or basal; 0 outside cells); ``labels``: cell id per (y, x), -1 in medium;
    ``base``: coverslip height; ``top``: apical surface height per (y, x).
    """

    densities: dict[str, np.ndarray]
    distractors: dict[str, np.ndarray]
    cell: np.ndarray
    nucleus: np.ndarray
    surface_distance: np.ndarray
    labels: np.ndarray
    base: float
    top: np.ndarray
    colony_position: str


@dataclass
class _Cells:
    """Per-cell parameters, each array indexed by cell id; index -1 is a dummy for medium pixels."""

    count: int
    height: np.ndarray
    dmax: np.ndarray
    nuc_centre: np.ndarray  # (n + 1, 3) z, y, x
    nuc_axes: np.ndarray  # (n + 1, 3) semi-axes z, long, short
    nuc_angle: np.ndarray  # (n + 1,) xy orientation of the long axis


def _layout(shape: tuple[int, int, int], rng: np.random.Generator, position: str) -> np.ndarray:
    """Cell labels per (y, x) from a relaxed Voronoi tessellation; -1 where medium."""
    _, ny, nx = shape
    area = ny * nx / REFERENCE_XY**2
    scale = 1.3 if position == "ridge" else 1.0
    n = max(2, round(rng.uniform(6.0, 14.0) * area * scale))
    margin = np.array([0.1 * ny, 0.1 * nx])
    lo, hi = -margin, np.array([ny, nx]) + margin
    seeds = rng.uniform(lo, hi, size=(n, 2))
    gy, gx = np.meshgrid(np.arange(lo[0], hi[0], 2.0), np.arange(lo[1], hi[1], 2.0), indexing="ij")
    grid = np.stack([gy.ravel(), gx.ravel()], axis=1)
    for _ in range(4):
        nearest = np.argmin(((grid[:, None, :] - seeds[None]) ** 2).sum(-1), axis=1)
        counts = np.bincount(nearest, minlength=n)
        for axis in range(2):
            sums = np.bincount(nearest, weights=grid[:, axis], minlength=n)
            seeds[:, axis] = np.where(counts > 0, sums / np.maximum(counts, 1), seeds[:, axis])
    yy, xx = np.meshgrid(np.arange(ny, dtype=np.float64), np.arange(nx, dtype=np.float64), indexing="ij")
    dist = (yy[None] - seeds[:, 0, None, None]) ** 2 + (xx[None] - seeds[:, 1, None, None]) ** 2
    labels = np.argmin(dist, axis=0).astype(np.int32)
    if position == "edge":
        u = rng.normal(size=2)
        u /= np.linalg.norm(u)
        radius = 1.5 * max(ny, nx)
        reach = rng.uniform(0.1, 0.3) * max(ny, nx)
        centre = np.array([ny / 2, nx / 2]) - u * (radius - reach)
        colony = (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 < radius**2
        full = np.bincount(labels.ravel(), minlength=n)
        kept = np.bincount(labels[colony], minlength=n)
        keep = kept >= 0.3 * np.maximum(full, 1)
        if not keep.any():
            keep[np.argmax(kept)] = True
        labels = np.where(colony & keep[labels], labels, -1)
    present = np.unique(labels[labels >= 0])
    remap = np.full(n + 1, -1, dtype=np.int32)
    remap[present] = np.arange(present.size, dtype=np.int32)
    return remap[labels]


def _boundaries(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Masks of pixels on a region boundary (any label change) and on a cell-cell junction."""
    boundary = np.zeros(labels.shape, dtype=bool)
    junction = np.zeros(labels.shape, dtype=bool)
    for axis in (0, 1):
        a = labels.take(np.arange(labels.shape[axis] - 1), axis=axis)
        b = labels.take(np.arange(1, labels.shape[axis]), axis=axis)
        diff = a != b
        cellcell = diff & (a >= 0) & (b >= 0)
        lo = [slice(None), slice(None)]
        hi = [slice(None), slice(None)]
        lo[axis] = slice(0, -1)
        hi[axis] = slice(1, None)
        boundary[tuple(lo)] |= diff
        boundary[tuple(hi)] |= diff
        junction[tuple(lo)] |= cellcell
        junction[tuple(hi)] |= cellcell
    return boundary & (labels >= 0), junction


def _distance_to(mask: np.ndarray, far: float) -> np.ndarray:
    """Euclidean distance (pixels) to the nearest True pixel of ``mask``; ``far`` where it has none."""
    if not mask.any():
        return np.full(mask.shape, far, dtype=np.float32)
    return ndimage.distance_transform_edt(~mask).astype(np.float32)


def _cells(
    rng: np.random.Generator, labels: np.ndarray, d_inner: np.ndarray, base: float, top_cap: float, position: str
) -> _Cells:
    """Heights and nuclei; ``d_inner`` (distance to a boundary or the FOV border) keeps nuclei in view."""
    n = int(labels.max()) + 1
    index = np.arange(n)
    # at least 1: a cell that is all boundary (a sliver between neighbours) would divide by zero below
    dmax = np.maximum(np.asarray(ndimage.maximum(d_inner, labels, index), dtype=np.float64).reshape(n), 1.0)
    poles = np.asarray(ndimage.maximum_position(d_inner, labels, index), dtype=np.float64).reshape(n, 2)
    tall = 1.15 if position == "ridge" else 1.0
    height = rng.uniform(6.0, 12.0, n) * UM * tall
    height *= min(1.0, (top_cap - base) / (12.0 * UM * tall))
    radius = dmax * rng.uniform(0.62, 0.75, n)
    elong = 1.0 + rng.uniform(0.0, 0.25, n)
    long_axis = np.minimum(radius * elong, np.maximum(dmax - 1.5, 1.0))
    short_axis = np.minimum(radius / elong, long_axis)
    jitter = rng.normal(0.0, 0.08, (n, 2)) * dmax[:, None]
    centre_xy = poles + jitter
    centre_z = base + height * rng.uniform(0.42, 0.47, n)
    axis_z = height * rng.uniform(0.28, 0.33, n)
    centre = np.concatenate([np.column_stack([centre_z, centre_xy]), [[-1e4, -1e4, -1e4]]])
    axes = np.concatenate([np.column_stack([axis_z, long_axis, short_axis]), [[1.0, 1.0, 1.0]]])
    angle = np.concatenate([rng.uniform(0.0, np.pi, n), [0.0]])
    return _Cells(n, np.concatenate([height, [0.0]]), np.concatenate([dmax, [1.0]]), centre, axes, angle)


def _line_density(shape: tuple[int, int, int], points: np.ndarray, sigma: tuple[float, float, float]) -> np.ndarray:
    """Curves given as points every 0.5 voxel, drawn as Gaussian tubes with peak about 1 (overlaps clipped)."""
    out = np.zeros(shape, dtype=np.float32)
    if len(points) == 0:
        return out
    pad = int(np.ceil(4 * sigma[0])) + 1
    z0 = max(0, int(np.floor(points[:, 0].min())) - pad)
    z1 = min(shape[0], int(np.ceil(points[:, 0].max())) + pad + 1)
    local = points - np.array([z0, 0.0, 0.0])
    dep = deposit_points((z1 - z0, shape[1], shape[2]), local, weight=0.5)
    blurred = ndimage.gaussian_filter(dep, sigma, truncate=3.0)
    norm = 2.0 * np.pi * sigma[1] * 0.5 * (sigma[0] + sigma[2])
    out[z0:z1] = np.minimum(blurred * norm, 1.5)
    return out


def _pick(rng: np.random.Generator, mask: np.ndarray, k: int) -> np.ndarray:
    """``k`` random voxel coordinates (k, 3) inside ``mask`` (fewer if it is small), jittered in the voxel."""
    flat = np.flatnonzero(mask)
    if flat.size == 0 or k <= 0:
        return np.zeros((0, 3))
    chosen = rng.choice(flat, size=min(k, flat.size), replace=False)
    return np.column_stack(np.unravel_index(chosen, mask.shape)) + rng.uniform(-0.4, 0.4, (chosen.size, 3))


def _snap(mask: np.ndarray, point: np.ndarray, reach: int = 12) -> np.ndarray:
    """``point`` moved to the nearest True voxel of ``mask`` (searched near it first; unchanged if none)."""
    lo = np.clip(np.floor(point).astype(int) - reach, 0, mask.shape)
    hi = np.clip(np.floor(point).astype(int) + reach + 1, 0, mask.shape)
    found = np.argwhere(mask[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]) + lo
    if found.size == 0:
        found = np.argwhere(mask)
    if found.size == 0:
        return point
    return found[np.argmin(((found - point) ** 2).sum(axis=1))].astype(np.float64)


@dataclass
class _Frame:
    """Geometry shared by the structure painters (2D maps (Y, X), 3D volumes (Z, Y, X), voxels)."""

    shape: tuple[int, int, int]
    labels: np.ndarray
    junction: np.ndarray
    d_lat: np.ndarray
    d_junc: np.ndarray
    base: float
    top: np.ndarray
    height: np.ndarray
    zz: np.ndarray
    cell: np.ndarray
    surface: np.ndarray
    cells: _Cells
    d_nuc: np.ndarray
    nucleus: np.ndarray
    nuc_soft: np.ndarray
    cyto: np.ndarray


def _frame(shape: tuple[int, int, int], rng: np.random.Generator, position: str) -> _Frame:
    """Cells, their domed apical surfaces and nuclei."""
    nz, ny, nx = shape
    labels = _layout(shape, rng, position)
    boundary, junction = _boundaries(labels)
    cell2d = labels >= 0
    d_lat = _distance_to(boundary | ~cell2d, 1e3)
    d_med = _distance_to(~cell2d, 1e3)
    base = float(rng.uniform(2.0, 4.0))
    border = np.zeros_like(cell2d)
    border[[0, -1], :] = True
    border[:, [0, -1]] = True
    cells = _cells(rng, labels, _distance_to(boundary | ~cell2d | border, 1e3), base, nz - 3.0, position)

    # Apical surface: a dome per cell, lower at the junctions and sloping down at the colony edge.
    rel = np.clip(d_lat / cells.dmax[labels], 0.0, 1.0)
    taper = 0.5 + 0.5 * np.clip(d_med / (3.0 * UM), 0.0, 1.0)
    top = base + cells.height[labels] * (0.72 + 0.28 * np.sqrt(rel)) * taper
    top = ndimage.gaussian_filter(np.where(cell2d, top, base).astype(np.float32), 1.0)
    top = np.where(cell2d, np.maximum(top, base + 1.5), base).astype(np.float32)
    zz = np.arange(nz, dtype=np.float32)[:, None, None]
    cell = cell2d[None] & (zz >= base) & (zz < top[None])
    surface = np.where(cell, np.minimum(np.minimum(d_lat[None], zz - base), top[None] - zz), 0.0).astype(np.float32)

    # Nucleus: an ellipsoid per cell with a wobbly outline; d_nuc ~ signed distance in voxels.
    yy, xx = np.meshgrid(np.arange(ny, dtype=np.float32), np.arange(nx, dtype=np.float32), indexing="ij")
    c = cells.nuc_centre[labels]
    ax = cells.nuc_axes[labels]
    ang = cells.nuc_angle[labels]
    dy, dx = yy - c[..., 1], xx - c[..., 2]
    u = (dx * np.cos(ang) + dy * np.sin(ang)) / ax[..., 1]
    v = (-dx * np.sin(ang) + dy * np.cos(ang)) / ax[..., 2]
    wobble = 1.0 + 0.06 * bandpass_noise((ny, nx), rng, 2.0, 8.0)
    rxy = (np.sqrt(u * u + v * v) * wobble).astype(np.float32)
    rz = (zz - c[None, ..., 0].astype(np.float32)) / ax[None, ..., 0].astype(np.float32)
    scale = np.cbrt(np.prod(ax, axis=-1)).astype(np.float32)
    d_nuc = ((np.sqrt(rxy[None] ** 2 + rz**2) - 1.0) * scale[None]).astype(np.float32)
    soft = 1.0 / (1.0 + np.exp(np.clip((d_nuc + 0.5) / 0.4, -30, 30)))
    return _Frame(
        shape=shape,
        labels=labels,
        junction=junction,
        d_lat=d_lat,
        d_junc=_distance_to(junction, 1e3),
        base=base,
        top=top,
        height=top - base,
        zz=zz,
        cell=cell,
        surface=surface,
        cells=cells,
        d_nuc=d_nuc,
        nucleus=cell & (d_nuc < 0),
        nuc_soft=np.where(cell, soft, 0.0).astype(np.float32),
        cyto=cell & (d_nuc > 0.5),
    )


def _nuclear(f: _Frame, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Fibrillarin (1 to 3 solid nucleoli per nucleus), DNA (textured chromatin, denser at the rim,
    sparse inside nucleoli) and lamin B1 (the nuclear shell)."""
    n = f.cells.count
    per = rng.choice([1, 2, 3], size=n, p=[0.2, 0.45, 0.35])
    owner = np.repeat(np.arange(n), per)
    ball = rng.normal(size=(owner.size, 3))
    ball *= (rng.uniform(0.0, 0.35, owner.size) / np.linalg.norm(ball, axis=1))[:, None]
    a = f.cells.nuc_axes[owner]
    th = f.cells.nuc_angle[owner]
    off_long, off_short = ball[:, 1] * a[:, 1], ball[:, 2] * a[:, 2]
    centres = f.cells.nuc_centre[owner] + np.column_stack(
        [
            ball[:, 0] * a[:, 0],
            off_long * np.sin(th) + off_short * np.cos(th),
            off_long * np.cos(th) - off_short * np.sin(th),
        ]
    )
    rad = np.clip(rng.uniform(0.3, 0.42, owner.size) * a[:, 2], 3.0, 9.0)
    radii = np.column_stack(
        [
            np.minimum(rad * rng.uniform(0.8, 1.1, owner.size), 0.45 * a[:, 0]),
            rad,
            rad * rng.uniform(0.8, 1.2, owner.size),
        ]
    )
    nucleoli = np.minimum(splat_blobs(f.shape, centres, radii, random_rotations(rng, owner.size), edge=0.7), 1.0)
    nucleoli *= f.nuc_soft
    texture = bandpass_noise(f.shape, rng, 0.8, 2.5)
    rim = np.exp(-(((f.d_nuc + 1.2) / 1.0) ** 2))
    return {
        "fibrillarin": nucleoli * np.clip(0.75 + 0.25 * texture, 0.3, 1.0),
        "dna": f.nuc_soft * np.clip(0.7 + 0.15 * texture + 0.25 * rim, 0.05, 1.2) * (1.0 - 0.8 * nucleoli),
        "lamin_b1": np.where(f.cell, np.exp(-(((f.d_nuc + 0.3) / 0.8) ** 2)), 0.0),
    }


def _boundary(f: _Frame, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Membrane (the outer shell of every cell: lateral, apical and basal), ZO-1 (an apical belt on
    lateral cell-cell boundaries, in the top fifth of the cell height) and desmosome puncta (on lateral
    cell-cell boundaries, mostly in the upper half)."""
    belt_depth = np.minimum(4.0, 0.18 * f.height)[None]
    zo1 = np.exp(-((f.d_junc / 1.2) ** 2))[None] * (f.top[None] - f.zz < belt_depth) * f.cell
    jy, jx = np.nonzero(f.junction)
    k = rng.poisson(0.6 * jy.size)
    sel = rng.integers(0, jy.size, k) if jy.size else np.zeros(0, dtype=np.int64)
    py, px = jy[sel], jx[sel]
    pz = f.base + rng.uniform(0.25, 0.9, sel.size) * f.height[py, px]
    puncta = np.column_stack([pz, py, px]) + rng.normal(0, 0.3, (sel.size, 3))
    desmosomes = splat_blobs(f.shape, puncta, np.tile([1.3, 1.0, 1.0], (sel.size, 1)), profile="gauss")
    return {
        "membrane_caax_63x": np.where(f.cell, np.exp(-((f.surface / 1.0) ** 2)), 0.0),
        "zo1": zo1,
        "desmoplakin": np.minimum(desmosomes, 1.0) * f.cell,
    }


def _actomyosin(f: _Frame, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Actin (a cortex under the membrane plus thin straight basal stress fibres) and myosin IIB (the
    thicker half of those fibres plus an apical circumferential belt)."""
    _, ny, nx = f.shape
    n = f.cells.count
    nfib = rng.integers(6, 13, n)
    fowner = np.repeat(np.arange(n), nfib)
    cell_angle = rng.uniform(0, np.pi, n)
    fang = cell_angle[fowner] + rng.normal(0, 0.25, fowner.size)
    fmid = f.cells.nuc_centre[fowner, 1:] + rng.normal(0, 1.0, (fowner.size, 2)) * f.cells.dmax[fowner, None] * 0.5
    reach = f.cells.dmax[fowner] * 2.2
    dirv = np.column_stack([np.sin(fang), np.cos(fang)])
    fz = f.base + rng.uniform(0.8, 1.8, fowner.size)
    a_pts = np.column_stack([fz, fmid - dirv * reach[:, None]])
    b_pts = np.column_stack([fz, fmid + dirv * reach[:, None]])
    pts = segments_points(a_pts, b_pts, 0.5)
    per_segment = np.maximum(np.ceil(np.linalg.norm(b_pts - a_pts, axis=1) / 0.5).astype(int), 1) + 1
    seg_id = np.repeat(np.arange(fowner.size), per_segment)
    iy, ix = np.rint(pts[:, 1]).astype(int), np.rint(pts[:, 2]).astype(int)
    inb = (iy >= 0) & (iy < ny) & (ix >= 0) & (ix < nx)
    keep = np.zeros(len(pts), dtype=bool)
    keep[inb] = (f.labels[iy[inb], ix[inb]] == fowner[seg_id[inb]]) & (f.d_lat[iy[inb], ix[inb]] > 1.5)
    thick = rng.random(fowner.size) < 0.5
    fibres_thin = _line_density(f.shape, pts[keep], (0.7, 0.7, 0.7))
    fibres_thick = _line_density(f.shape, pts[keep & thick[seg_id]], (1.0, 1.2, 1.2))
    cortex = np.exp(-(((f.surface - 1.5) / 1.0) ** 2)) * f.cell
    belt_z = f.top - np.minimum(0.12 * f.height + 1.5, 0.3 * f.height)
    belt = np.exp(-(((f.d_lat - 2.5) / 1.3) ** 2))[None] * np.exp(-(((f.zz - belt_z[None]) / 1.3) ** 2)) * f.cell
    return {
        "beta_actin": np.minimum(0.6 * cortex + fibres_thin + 0.5 * fibres_thick, 1.5),
        "myosin_iib": np.minimum(fibres_thick + 0.8 * belt, 1.5),
    }


def _cytoplasmic(f: _Frame, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Microtubules (persistent curves from a centrosome beside the nucleus out to the membrane),
    mitochondria (worm-like tubes 2 to 3 voxels thick), ER (a sponge of band-passed noise around the
    nucleus, continuous with the nuclear envelope) and Golgi (flattened blobs next to the centrosome)."""
    n = f.cells.count
    axes, centre, angle = f.cells.nuc_axes[:n], f.cells.nuc_centre[:n], f.cells.nuc_angle[:n]
    phi = rng.uniform(0, 2 * np.pi, n)
    reach_nuc = np.hypot(axes[:, 1] * np.cos(phi - angle), axes[:, 2] * np.sin(phi - angle))
    centrosome = centre.copy()
    centrosome[:, 0] += 0.35 * axes[:, 0]
    centrosome[:, 1] += np.sin(phi) * (reach_nuc + 2.5)
    centrosome[:, 2] += np.cos(phi) * (reach_nuc + 2.5)
    allowed_mt = (
        f.cell & (f.d_nuc > 0.5) & (f.d_lat[None] >= 1.0) & (f.zz >= f.base + 1.0) & (f.zz <= f.top[None] - 1.0)
    )
    centrosome = np.stack([_snap(allowed_mt & (f.labels == i)[None], centrosome[i]) for i in range(n)])
    nmt = rng.integers(35, 61, n)
    mowner = np.repeat(np.arange(n), nmt)
    alpha = phi[mowner] + rng.normal(0, 1.1, mowner.size)
    mdir = np.column_stack([rng.normal(0, 0.15, mowner.size), np.sin(alpha), np.cos(alpha)])
    mlen = rng.uniform(0.8, 2.6, mowner.size) * f.cells.dmax[mowner]
    mt_pts = random_walks(rng, allowed_mt, centrosome[mowner], mdir, mlen, step=0.5, turn=0.06, z_damp=0.3)

    allowed_mito = _organelle_space(f)
    starts = _pick(rng, allowed_mito, int(rng.poisson(1.2e-3 * float(allowed_mito.sum()))))
    ang_m = rng.uniform(0, 2 * np.pi, len(starts))
    mito_dir = np.column_stack([rng.normal(0, 0.3, len(starts)), np.sin(ang_m), np.cos(ang_m)])
    mito_len = rng.uniform(2.0, 7.0, len(starts)) * UM
    mito_pts = random_walks(rng, allowed_mito, starts, mito_dir, mito_len, step=0.5, turn=0.25, z_damp=0.6)

    sponge = np.clip((bandpass_noise(f.shape, rng, 0.7, 1.8) - 0.3) / 0.8, 0.0, 1.0)
    near = np.exp(-np.clip(f.d_nuc, 0.0, None) / (3.0 * UM))
    envelope = np.exp(-(((f.d_nuc - 0.8) / 0.7) ** 2))
    er = ((0.35 + 0.65 * sponge) * near * f.cyto + 0.5 * envelope * f.cell) * (f.surface > 0.5)

    gowner = np.repeat(np.arange(n), rng.integers(14, 25, n))
    gcentre = centrosome[gowner] + rng.normal(0, 1.0, (gowner.size, 3)) * np.array([1.5, 3.5, 3.5])
    gradii = np.column_stack(
        [rng.uniform(1.0, 1.5, gowner.size), rng.uniform(1.8, 2.8, gowner.size), rng.uniform(2.8, 4.0, gowner.size)]
    )
    golgi = splat_blobs(f.shape, gcentre, gradii, random_rotations(rng, gowner.size), edge=0.5)
    return {
        "alpha_tubulin": _line_density(f.shape, mt_pts, (0.8, 0.7, 0.7)),
        "tom20": _line_density(f.shape, mito_pts, (1.1, 1.0, 1.0)) * (1.0 - f.nuc_soft),
        "sec61_beta": er,
        "st6gal1": np.minimum(golgi, 1.0) * f.cyto,
    }


def _organelle_space(f: _Frame) -> np.ndarray:
    """Cytoplasm clear of the nucleus and the cell surface, where mitochondria and distractors go."""
    return f.cyto & (f.d_nuc > 1.5) & (f.surface > 1.2)


def _distractors(f: _Frame, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Unlabelled objects that only TL sees: lipid droplets (few, strong) and vesicles (many, weaker)."""
    space = _organelle_space(f)
    volume = float(space.sum())
    drops = _pick(rng, space, max(1, int(rng.poisson(4e-5 * volume))))
    ves = _pick(rng, space, max(1, int(rng.poisson(2.5e-4 * volume))))
    drop_r = np.repeat(rng.uniform(1.5, 2.8, (len(drops), 1)), 3, axis=1)
    ves_r = np.repeat(rng.uniform(1.0, 1.5, (len(ves), 1)), 3, axis=1)
    return {
        "lipid_droplets": np.minimum(splat_blobs(f.shape, drops, drop_r), 1.0) * f.cell,
        "vesicles": np.minimum(splat_blobs(f.shape, ves, ves_r), 1.0) * f.cell,
    }


def make_scene(shape: tuple[int, int, int], rng: np.random.Generator, colony_position: str | None = None) -> Scene:
    """Draw one field of view of the given (Z, Y, X) shape; ``colony_position`` is drawn when None."""
    position = colony_position or str(rng.choice(COLONY_POSITIONS, p=[0.5, 0.3, 0.2]))
    f = _frame(shape, rng, position)
    drawn = {**_nuclear(f, rng), **_boundary(f, rng), **_actomyosin(f, rng), **_cytoplasmic(f, rng)}
    return Scene(
        densities={name: np.ascontiguousarray(drawn[name], dtype=np.float32) for name in STRUCTURES},
        distractors={k: v.astype(np.float32) for k, v in _distractors(f, rng).items()},
        cell=f.cell,
        nucleus=f.nucleus,
        surface_distance=f.surface,
        labels=f.labels,
        base=f.base,
        top=f.top,
        colony_position=position,
    )
