"""Imaging of a SynthCell scene: refractive index, bright-field transmitted light and fluorescence.

Transmitted light follows a weak-phase-object model: the axial derivative of the Gaussian-blurred
refractive-index map (a structure is dark above focus and bright below) minus a small absorption
term, under uneven illumination, with shot and read noise. Its axial blur spans several voxels, so
every slice also carries its neighbours (the sparse-view problem depends on it). Fluorescence is
a structure's density through an anisotropic Gaussian PSF with shot noise (Poisson mean and
variance), background, read noise and a camera offset. Outputs are raw camera counts (uint16), never normalised.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from sparsessp.data.synthcell.scene import Scene
from sparsessp.data.synthcell.shapes import bandpass_noise
from sparsessp.errors import InputError

CONTRASTS: dict[str, float] = {
    "cytoplasm": 0.012,
    "alpha_tubulin": 0.020,
    "beta_actin": 0.017,
    "desmoplakin": 0.028,
    "dna": 0.025,
    "fibrillarin": 0.050,
    "lamin_b1": 0.017,
    "membrane_caax_63x": 0.017,
    "myosin_iib": 0.022,
    "sec61_beta": 0.014,
    "st6gal1": 0.028,
    "tom20": 0.030,
    "zo1": 0.022,
    "lipid_droplets": 0.070,
    "vesicles": 0.035,
}
"""Refractive-index increment over the medium per unit density (cytoplasm: per unit cell volume)."""


@dataclass(frozen=True)
class Optics:
    """Microscope parameters (lengths in voxels of 0.29 um, intensities in camera counts)."""

    tl_sigma: tuple[float, float, float] = (2.5, 1.0, 1.0)
    phase_gain: float = 40.0
    absorption_gain: float = 6.0
    tl_level: float = 30000.0
    tl_read_noise: float = 4.0
    illumination: float = 0.03
    psf_sigma: tuple[float, float, float] = (1.2, 0.6, 0.6)
    background: float = 4.0
    read_noise: float = 2.0
    offset: float = 100.0


OPTICS = Optics()


def resolve_contrasts(contrasts: dict[str, float] | None = None) -> dict[str, float]:
    """The default table with ``contrasts`` laid over it; an unknown name is an :class:`InputError`."""
    unknown = sorted(set(contrasts or {}) - set(CONTRASTS))
    if unknown:
        raise InputError(f"unknown contrast {unknown[0]!r}; known: {', '.join(CONTRASTS)}")
    return {**CONTRASTS, **{k: float(v) for k, v in (contrasts or {}).items()}}


def optics_options(optics: Optics = OPTICS, contrasts: dict[str, float] | None = None) -> dict[str, object]:
    """The imaging parameters as plain JSON data (recorded in synthcell.json)."""
    return {"optics": asdict(optics), "contrasts": resolve_contrasts(contrasts)}


def refractive_index(scene: Scene, contrasts: dict[str, float] | None = None) -> np.ndarray:
    """Index increment over the medium: cytoplasm offset plus every structure's and distractor's share."""
    table = resolve_contrasts(contrasts)
    dn = scene.cell.astype(np.float32) * np.float32(table["cytoplasm"])
    for name, density in (*scene.densities.items(), *scene.distractors.items()):
        dn += np.float32(table[name]) * density
    return dn


def _to_uint16(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(values), 0, np.iinfo(np.uint16).max).astype(np.uint16)


def _slab(volume: np.ndarray, pad: int) -> slice:
    """The z range holding the non-zero part of ``volume``, widened by ``pad`` (blurs only act there)."""
    rows = np.flatnonzero(volume.reshape(volume.shape[0], -1).any(axis=1))
    if rows.size == 0:
        return slice(0, 0)
    return slice(max(0, int(rows[0]) - pad), min(volume.shape[0], int(rows[-1]) + pad + 1))


def _shot_noise(expected: np.ndarray, read_noise: float, rng: np.random.Generator) -> np.ndarray:
    """Shot plus read noise: a Gaussian with the Poisson variance (``expected``) plus ``read_noise**2``.

    The same mean and variance as Poisson counts, several times faster to draw than exact Poisson.
    """
    sd = np.sqrt(expected + np.float32(read_noise**2))
    return expected + sd * rng.standard_normal(expected.shape, dtype=np.float32)


def transmitted_light(dn: np.ndarray, rng: np.random.Generator, optics: Optics = OPTICS) -> np.ndarray:
    """Bright-field stack (uint16 counts) of an index map ``dn`` (Z, Y, X)."""
    sz, sy, sx = optics.tl_sigma
    zs = _slab(dn, int(np.ceil(3.0 * sz)) + 1)
    phase = np.zeros(dn.shape, dtype=np.float32)
    absorbed = np.zeros(dn.shape, dtype=np.float32)
    lateral = ndimage.gaussian_filter1d(dn[zs], sy, axis=1, truncate=3.0)
    lateral = ndimage.gaussian_filter1d(lateral, sx, axis=2, truncate=3.0)
    phase[zs] = ndimage.gaussian_filter1d(lateral, sz, axis=0, order=1, truncate=3.0)
    absorbed[zs] = ndimage.gaussian_filter1d(lateral, sz, axis=0, truncate=3.0)
    _, ny, nx = dn.shape
    yy, xx = np.meshgrid(np.linspace(-1, 1, ny), np.linspace(-1, 1, nx), indexing="ij")
    tilt = rng.normal(0, 1, 2)
    uneven = tilt[0] * yy + tilt[1] * xx - 0.5 * (yy**2 + xx**2) + 0.5 * bandpass_noise((ny, nx), rng, 12.0, 40.0)
    illum = (1.0 + optics.illumination * uneven).astype(np.float32)
    signal = optics.tl_level * illum[None] * (1.0 + optics.phase_gain * phase - optics.absorption_gain * absorbed)
    return _to_uint16(_shot_noise(np.maximum(signal, 0.0), optics.tl_read_noise, rng))


def fluorescence(density: np.ndarray, rng: np.random.Generator, photons: float, optics: Optics = OPTICS) -> np.ndarray:
    """Widefield-like fluorescence stack (uint16 counts): ``photons`` expected photons per unit density."""
    blurred = np.zeros(density.shape, dtype=np.float32)
    zs = _slab(density, int(np.ceil(3.0 * optics.psf_sigma[0])) + 1)
    blurred[zs] = ndimage.gaussian_filter(density[zs], optics.psf_sigma, truncate=3.0)
    expected = np.maximum(blurred, 0.0) * np.float32(photons) + np.float32(optics.background)
    return _to_uint16(_shot_noise(expected, optics.read_noise, rng) + np.float32(optics.offset))
