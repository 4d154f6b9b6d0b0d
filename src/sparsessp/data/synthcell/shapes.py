"""Vectorised drawing primitives for SynthCell scenes: noise fields, blobs, curves and random walkers.

Everything works on float32 volumes in (z, y, x) voxel coordinates and draws from a caller's
``numpy.random.Generator``, so a scene is a pure function of its seed.
"""

from __future__ import annotations

import numpy as np
from scipy import fft


def bandpass_noise(shape: tuple[int, ...], rng: np.random.Generator, low: float, high: float) -> np.ndarray:
    """Gaussian noise band-passed between the scales ``low`` < ``high`` (voxels, a difference of
    Gaussians applied in Fourier space), normalised to zero mean and unit standard deviation."""
    white = rng.standard_normal(shape, dtype=np.float32)
    spec = fft.rfftn(white, workers=1)
    k2 = np.zeros(spec.shape, dtype=np.float32)
    for axis, n in enumerate(shape):
        freq = fft.rfftfreq(n) if axis == len(shape) - 1 else fft.fftfreq(n)
        view = [1] * len(shape)
        view[axis] = freq.size
        k2 = k2 + (freq.astype(np.float32) ** 2).reshape(view)
    two_pi2 = np.float32(2.0 * np.pi**2)
    spec *= np.exp(-two_pi2 * low**2 * k2) - np.exp(-two_pi2 * high**2 * k2)
    field = fft.irfftn(spec, shape, workers=1).astype(np.float32, copy=False)
    field -= field.mean()
    field /= max(float(field.std()), 1e-12)
    return field


def random_rotations(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` uniformly random 3D rotation matrices (from normalised random quaternions), shape (n, 3, 3)."""
    q = rng.standard_normal((n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], axis=-1),
            np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], axis=-1),
            np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], axis=-1),
        ],
        axis=1,
    )


def splat_blobs(
    shape: tuple[int, int, int],
    centres: np.ndarray,
    radii: np.ndarray,
    rotations: np.ndarray | None = None,
    profile: str = "solid",
    edge: float = 0.5,
) -> np.ndarray:
    """Sum of ellipsoids drawn into a zero volume.

    ``centres`` (n, 3) and ``radii`` (n, 3) in voxels (z, y, x); ``rotations`` (n, 3, 3) orient the
    axes. ``profile="solid"`` gives a filled ellipsoid with a soft edge ``edge`` voxels wide (peak 1),
    ``"gauss"`` a Gaussian with the radii as standard deviations (peak 1). Each blob is evaluated in
    its own box, all boxes at once.
    """
    out = np.zeros(int(np.prod(shape)), dtype=np.float32)
    n = len(centres)
    if n == 0:
        return out.reshape(shape)
    centres = np.asarray(centres, dtype=np.float32)
    radii = np.maximum(np.asarray(radii, dtype=np.float32), 0.3)
    reach = radii.max() * (3.0 if profile == "gauss" else 1.0) + 2.0 * edge + 1.0
    half = int(np.ceil(reach))
    ax = np.arange(-half, half + 1)
    grid = np.stack(np.meshgrid(ax, ax, ax, indexing="ij"), axis=-1).reshape(-1, 3)  # (k, 3)
    base = np.floor(centres).astype(np.int64)  # (n, 3)
    vox = base[:, None, :] + grid[None, :, :]  # (n, k, 3)
    offs = (vox - centres[:, None, :]).astype(np.float32)
    if rotations is not None:
        offs = np.einsum("nkj,nji->nki", offs, np.asarray(rotations, dtype=np.float32))
    q = np.sqrt(np.sum((offs / radii[:, None, :]) ** 2, axis=-1))  # (n, k)
    if profile == "gauss":
        val = np.exp(-0.5 * q * q)
    else:
        scale = radii.min(axis=1, keepdims=True) / max(edge, 1e-3)
        val = 1.0 / (1.0 + np.exp(np.clip((q - 1.0) * scale * 4.0, -30.0, 30.0)))
    inside = np.all((vox >= 0) & (vox < np.asarray(shape)), axis=-1) & (val > 1e-3)
    flat = np.ravel_multi_index(tuple(vox[inside].T), shape)
    out += np.bincount(flat, weights=val[inside], minlength=out.size).astype(np.float32)
    return out.reshape(shape)


def deposit_points(shape: tuple[int, int, int], points: np.ndarray, weight: float = 1.0) -> np.ndarray:
    """Trilinear deposit of points (n, 3) into a zero volume (each point adds ``weight`` in total)."""
    out = np.zeros(int(np.prod(shape)), dtype=np.float64)
    if len(points) == 0:
        return out.astype(np.float32).reshape(shape)
    pts = np.asarray(points, dtype=np.float64)
    base = np.floor(pts).astype(np.int64)
    frac = pts - base
    dims = np.asarray(shape)
    for corner in np.ndindex(2, 2, 2):
        c = np.asarray(corner)
        idx = base + c
        w = np.prod(np.where(c == 1, frac, 1.0 - frac), axis=1) * weight
        ok = np.all((idx >= 0) & (idx < dims), axis=1)
        out += np.bincount(np.ravel_multi_index(tuple(idx[ok].T), shape), weights=w[ok], minlength=out.size)
    return out.astype(np.float32).reshape(shape)


def _lookup(mask: np.ndarray, pos: np.ndarray) -> np.ndarray:
    idx = np.rint(pos).astype(np.int64)
    inside = np.all((idx >= 0) & (idx < np.asarray(mask.shape)), axis=1)
    out = np.zeros(len(pos), dtype=bool)
    if inside.any():
        i = idx[inside]
        out[inside] = mask[i[:, 0], i[:, 1], i[:, 2]]
    return out


def _rotate_xy(d: np.ndarray, angle: np.ndarray) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    out = d.copy()
    out[:, 1] = c * d[:, 1] - s * d[:, 2]
    out[:, 2] = s * d[:, 1] + c * d[:, 2]
    return out


def random_walks(
    rng: np.random.Generator,
    allowed: np.ndarray,
    starts: np.ndarray,
    directions: np.ndarray,
    lengths: np.ndarray,
    step: float = 0.5,
    turn: float = 0.08,
    z_damp: float = 0.5,
) -> np.ndarray:
    """Persistent random walks (worm-like curves) confined to the ``allowed`` mask; returns visited points.

    All walkers advance together; at each step a direction turns by Gaussian noise of ``turn`` radians
    per voxel (z turns damped by ``z_damp``, so curves stay mostly parallel to the coverslip). A walker
    about to leave the mask first bounces in z, then turns in xy by 60 degrees one way, 60 the other way,
    then 120, so curves slide along obstacles; it stops if all fail, or after its ``lengths`` (voxels).
    """
    pos = np.asarray(starts, dtype=np.float64).copy()
    d = np.asarray(directions, dtype=np.float64).copy()
    d /= np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-9)
    alive = _lookup(allowed, pos)
    lengths = np.asarray(lengths, dtype=np.float64)
    n_steps = int(np.ceil(lengths.max() / step)) if len(lengths) else 0
    sd = turn * np.sqrt(step)
    noise_scale = np.array([z_damp, 1.0, 1.0])
    visited = [pos[alive]]
    for k in range(n_steps):
        idx = np.flatnonzero(alive & (lengths > k * step))
        if idx.size == 0:
            break
        p, v = pos[idx], d[idx]
        v = v + rng.normal(0.0, sd, size=v.shape) * noise_scale
        v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-9)
        nxt = p + step * v
        ok = _lookup(allowed, nxt)
        bounce = ~ok
        if bounce.any():
            v[bounce, 0] *= -1.0
            nxt[bounce] = p[bounce] + step * v[bounce]
            ok[bounce] = _lookup(allowed, nxt[bounce])
        sign = np.where(rng.random(len(idx)) < 0.5, -1.0, 1.0)
        for angle in (np.pi / 3.0, -2.0 * np.pi / 3.0, np.pi):
            retry = ~ok
            if not retry.any():
                break
            v[retry] = _rotate_xy(v[retry], sign[retry] * angle)
            nxt[retry] = p[retry] + step * v[retry]
            ok[retry] = _lookup(allowed, nxt[retry])
        pos[idx] = np.where(ok[:, None], nxt, p)
        d[idx] = v
        alive[idx[~ok]] = False
        visited.append(pos[idx[ok]])
    return np.concatenate(visited, axis=0) if visited else np.zeros((0, 3))


def segments_points(a: np.ndarray, b: np.ndarray, spacing: float = 0.5) -> np.ndarray:
    """Points every ``spacing`` voxels along the straight segments a[i] -> b[i] (each (n, 3))."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if len(a) == 0:
        return np.zeros((0, 3))
    lengths = np.linalg.norm(b - a, axis=1)
    counts = np.maximum(np.ceil(lengths / spacing).astype(np.int64), 1) + 1
    seg = np.repeat(np.arange(len(a)), counts)
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    t = (np.arange(seg.size) - starts) / np.repeat(counts - 1, counts).clip(min=1)
    return a[seg] + t[:, None] * (b - a)[seg]
