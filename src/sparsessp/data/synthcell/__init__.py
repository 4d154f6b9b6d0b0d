"""SynthCell-12: the embedded synthetic dataset (synthcell.md), written in RepMode's layout.

``generate`` writes ``ROOT/images/<structure>_<index>.ome.tif`` (CZYX uint16 counts: TL, DNA, target
structure), ``ROOT/<structure>/{train,val,test}.csv`` and, last, ``ROOT/synthcell.json`` with the
options, so :func:`dataset_matches` can tell whether a folder already holds the wanted dataset.
Each field of view is seeded from (seed, structure, index): results do not depend on the worker count.
"""

from __future__ import annotations

import json
import math
import os
import warnings
import zlib
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_all_start_methods, get_context
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sparsessp.data.synthcell.optics import (
    CONTRASTS,
    OPTICS,
    Optics,
    fluorescence,
    optics_options,
    refractive_index,
    transmitted_light,
)
from sparsessp.data.synthcell.scene import Scene, make_scene
from sparsessp.data.synthcell.writer import SPLITS, write_manifest, write_ome_tiff, write_preview
from sparsessp.errors import InputError
from sparsessp.fileio import atomic_write_text
from sparsessp.structures import STRUCTURES, TARGET_VOXEL_UM

if TYPE_CHECKING:
    from sparsessp.config import Config

__all__ = [
    "CONTRASTS",
    "FORMAT",
    "GENERATOR_VERSION",
    "OPTICS",
    "PROTEINS",
    "STRUCTURES",
    "Optics",
    "Scene",
    "dataset_matches",
    "ensure_dataset",
    "generate",
    "make_scene",
    "options",
    "render_fov",
    "split_sizes",
    "write_preview",
]

FORMAT = "synthcell-12"
GENERATOR_VERSION = 1
"""Bumped whenever the same options would give different files."""

PROTEINS: dict[str, str] = {
    "alpha_tubulin": "alpha-tubulin",
    "beta_actin": "beta-actin",
    "desmoplakin": "desmoplakin",
    "dna": "DNA",
    "fibrillarin": "fibrillarin",
    "lamin_b1": "lamin B1",
    "membrane_caax_63x": "CAAX",
    "myosin_iib": "myosin IIB",
    "sec61_beta": "Sec61 beta",
    "st6gal1": "ST6GAL1",
    "tom20": "Tom20",
    "zo1": "ZO1",
}
"""structureProteinName of each dataset (the tagged protein of its cell line)."""

_SPLIT_STREAM = 0xFFFFFFFF
_MIN_SIZE = (8, 32, 32)


def _stream(seed: int, name: str, *more: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(name.encode()), *more]))


def split_sizes(count: int) -> tuple[int, int, int]:
    """(train, val, test) sizes of ``count`` files: test = ceil(25%), val = ceil(10% of the rest).

    Rounding up keeps at least one test and one validation file whenever count >= 3; with 2 files there
    is one test file and no validation file, with 1 file only a training file.
    """
    test = math.ceil(0.25 * count) if count >= 2 else 0
    val = math.ceil(0.10 * (count - test)) if count - test >= 2 else 0
    return count - test - val, val, test


def _check(size: Sequence[int], count: int, seed: int, photons: float, structures: Iterable[str]) -> list[str]:
    if len(size) != 3 or any(int(s) < m for s, m in zip(size, _MIN_SIZE)):
        raise InputError(f"size must be Z Y X of at least {_MIN_SIZE}, got {tuple(size)}")
    if count < 1:
        raise InputError(f"count must be at least 1, got {count}")
    if seed < 0:
        raise InputError(f"seed must be a non-negative integer, got {seed}")
    if not photons > 0:
        raise InputError(f"photons must be positive, got {photons}")
    wanted = list(dict.fromkeys(structures))
    unknown = [s for s in wanted if s not in STRUCTURES]
    if unknown:
        raise InputError(f"unknown structure {unknown[0]!r}; known: {', '.join(STRUCTURES)}")
    if not wanted:
        raise InputError("list at least one structure")
    return [s for s in STRUCTURES if s in wanted]


def options(
    size: Sequence[int] = (64, 192, 192),
    count: int = 4,
    seed: int = 0,
    photons: float = 200.0,
    structures: Iterable[str] = STRUCTURES,
    contrasts: dict[str, float] | None = None,
    optics: Optics | None = None,
) -> dict[str, object]:
    """The generation options as written to synthcell.json (everything that decides the files)."""
    names = _check(size, count, seed, photons, structures)
    return {
        "format": FORMAT,
        "generator_version": GENERATOR_VERSION,
        "size": [int(s) for s in size],
        "count": int(count),
        "seed": int(seed),
        "photons": float(photons),
        "structures": names,
        "voxel_um": TARGET_VOXEL_UM,
        "channels": ["TL", "DNA", "target"],
        **optics_options(optics or OPTICS, contrasts),
    }


def dataset_matches(root: str | Path, **kwargs: object) -> bool:
    """True when ``root`` holds a complete dataset made with these options (keywords as :func:`options`)."""
    path = Path(root) / "synthcell.json"
    if not path.is_file():
        return False
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return bool(found == json.loads(json.dumps(options(**kwargs))))  # type: ignore[arg-type]


def render_fov(
    size: Sequence[int],
    seed: int,
    structure: str,
    index: int,
    photons: float = 200.0,
    contrasts: dict[str, float] | None = None,
    optics: Optics | None = None,
) -> tuple[np.ndarray, Scene]:
    """One field of view: the (3, Z, Y, X) uint16 stack [TL, DNA, target] and the scene behind it."""
    optics = optics or OPTICS
    rng = _stream(seed, structure, index)
    shape = (int(size[0]), int(size[1]), int(size[2]))
    scene = make_scene(shape, rng)
    tl = transmitted_light(refractive_index(scene, contrasts), rng, optics)
    dna = fluorescence(scene.densities["dna"], rng, photons, optics)
    target = dna if structure == "dna" else fluorescence(scene.densities[structure], rng, photons, optics)
    return np.stack([tl, dna, target]), scene


@dataclass(frozen=True)
class _Job:
    root: str
    size: tuple[int, int, int]
    seed: int
    structure: str
    index: int
    photons: float
    contrasts: dict[str, float] | None
    optics: Optics

    @property
    def relpath(self) -> str:
        return f"images/{self.structure}_{self.index:03d}.ome.tif"


def _run_job(job: _Job) -> tuple[str, str]:
    """Render and write one field of view; returns (relative path, colony position)."""
    stack, scene = render_fov(job.size, job.seed, job.structure, job.index, job.photons, job.contrasts, job.optics)
    write_ome_tiff(
        Path(job.root) / job.relpath,
        stack,
        ["TL", "DNA", job.structure],
        key=f"{FORMAT}/{GENERATOR_VERSION}/{job.seed}/{job.structure}/{job.index}/{job.size}/{job.photons!r}",
    )
    return job.relpath, scene.colony_position


def _context() -> BaseContext:
    """Fork where the platform has it: workers start at once, and callers need no ``__main__`` guard
    (the workers only run numpy and scipy); spawn elsewhere."""
    return get_context("fork" if "fork" in get_all_start_methods() else "spawn")


def _clear(root: Path) -> None:
    """Remove what an earlier run of the generator wrote (and nothing else)."""
    (root / "synthcell.json").unlink(missing_ok=True)
    images = root / "images"
    if images.is_dir():
        for name in STRUCTURES:
            for path in images.glob(f"{name}_*.ome.tif"):
                path.unlink()
    for name in STRUCTURES:
        for split in SPLITS:
            (root / name / f"{split}.csv").unlink(missing_ok=True)


def _split_rows(
    seed: int, names: list[str], count: int, made: dict[tuple[str, int], tuple[str, str]]
) -> dict[str, dict[str, list[dict[str, object]]]]:
    sizes = dict(zip(SPLITS, split_sizes(count)))
    rows: dict[str, dict[str, list[dict[str, object]]]] = {}
    own = [s for s in names if s != "dna"] or ["dna"]
    for name in own:
        order = _stream(seed, name, _SPLIT_STREAM, count).permutation(count)
        parts = {"test": order[: sizes["test"]], "val": order[sizes["test"] : sizes["test"] + sizes["val"]]}
        parts["train"] = order[sizes["test"] + sizes["val"] :]
        rows[name] = {}
        for split in SPLITS:
            rows[name][split] = [
                {
                    "path_czi": made[(name, int(i))][0],
                    "channel_signal": 0,
                    "channel_target": 1 if name == "dna" else 2,
                    "structureProteinName": PROTEINS[name],
                    "colony_position": made[(name, int(i))][1],
                }
                for i in sorted(parts[split])
            ]
    if "dna" in names and own != ["dna"]:
        rng = _stream(seed, "dna", _SPLIT_STREAM, count)
        rows["dna"] = {}
        for split in SPLITS:
            pool = [dict(r, channel_target=1) for s in own for r in rows[s][split]]
            pick = sorted(rng.choice(len(pool), size=min(sizes[split], len(pool)), replace=False))
            rows["dna"][split] = [pool[i] for i in pick]
    return rows


def generate(
    root: str | Path,
    size: Sequence[int] = (64, 192, 192),
    count: int = 4,
    seed: int = 0,
    photons: float = 200.0,
    structures: Iterable[str] = STRUCTURES,
    workers: int | None = None,
    contrasts: dict[str, float] | None = None,
    optics: Optics | None = None,
) -> Path:
    """Write a SynthCell-12 dataset under ``root`` and return ``root``.

    ``count`` fields of view per structure; the ``dna`` dataset takes its samples from the other
    structures' files (channel 1 as target), split by split, as the real collection does (when it is
    the only structure, it gets files of its own). Files an earlier run wrote are replaced; anything else
    in ``root`` is left alone. ``workers`` processes render in parallel (default: all CPUs).
    ``contrasts`` and ``optics`` replace the default refractive-index table and microscope.
    """
    names = _check(size, count, seed, photons, structures)
    opts = options(size, count, seed, photons, names, contrasts, optics)
    optics = optics or OPTICS
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    _clear(root)
    own = [s for s in names if s != "dna"] or ["dna"]
    shape = (int(size[0]), int(size[1]), int(size[2]))
    jobs = [
        _Job(str(root), shape, int(seed), s, i, float(photons), contrasts, optics) for s in own for i in range(count)
    ]
    n_workers = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
    if n_workers == 1:
        results = [_run_job(job) for job in jobs]
    else:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*multi-threaded.*fork", category=DeprecationWarning)
            with ProcessPoolExecutor(max_workers=n_workers, mp_context=_context()) as pool:
                results = list(pool.map(_run_job, jobs))
    made = {(job.structure, job.index): res for job, res in zip(jobs, results)}
    for name, splits in _split_rows(int(seed), names, count, made).items():
        for split, rows in splits.items():
            write_manifest(root / name / f"{split}.csv", rows)
    atomic_write_text(root / "synthcell.json", json.dumps(opts, indent=2) + "\n")
    return root


def ensure_dataset(cfg: Config) -> str:
    """Make SynthCell-12 under ``cfg.data.root`` unless it (or another dataset) is there; says what happened."""
    from sparsessp.data.manifest import has_manifest

    root = Path(cfg.data.root)
    sc = cfg.data.synthcell
    if sc is None:
        return f"using the dataset at {root} (data.synthcell is not set)"
    wanted = {"size": tuple(sc.size), "count": sc.count, "seed": sc.seed, "photons": sc.photons,
              "structures": list(cfg.data.structures)}
    if dataset_matches(root, **wanted):
        return f"SynthCell-12 with these options is already in {root}; reusing it"
    if has_manifest(root) and not (root / "synthcell.json").is_file():
        return f"{root} holds a dataset that SynthCell did not make; using it as it is"
    generate(root, **wanted)
    return f"SynthCell-12 written to {root}"
