"""The twelve AllenCell structures (dataset names), in the order that defines default task ids."""

from __future__ import annotations

STRUCTURES: tuple[str, ...] = (
    "alpha_tubulin",
    "beta_actin",
    "desmoplakin",
    "dna",
    "fibrillarin",
    "lamin_b1",
    "membrane_caax_63x",
    "myosin_iib",
    "sec61_beta",
    "st6gal1",
    "tom20",
    "zo1",
)

DESCRIPTIONS: dict[str, str] = {
    "alpha_tubulin": "microtubules",
    "beta_actin": "actin filaments",
    "desmoplakin": "desmosomes",
    "dna": "DNA",
    "fibrillarin": "nucleolus",
    "lamin_b1": "nuclear envelope",
    "membrane_caax_63x": "cell membrane",
    "myosin_iib": "actomyosin bundles",
    "sec61_beta": "endoplasmic reticulum",
    "st6gal1": "Golgi apparatus",
    "tom20": "mitochondria",
    "zo1": "tight junctions",
}

TARGET_VOXEL_UM = 0.29
"""Isotropic voxel size of the target grid (um), as in the paper."""
