"""Files of a SynthCell dataset: OME-TIFF images, RepMode-style split manifests and a preview panel.

Every file is written through :func:`sparsessp.fileio.atomic_path`; the OME-XML carries a UUID derived
from the file's seed and a fixed creator, so the same options give byte-identical files.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sparsessp.fileio import atomic_path, atomic_write_text
from sparsessp.structures import TARGET_VOXEL_UM

MANIFEST_COLUMNS: tuple[str, ...] = (
    "path_czi",
    "channel_signal",
    "channel_target",
    "structureProteinName",
    "colony_position",
)
SPLITS: tuple[str, ...] = ("train", "val", "test")
CREATOR = "sparsessp SynthCell-12"
_UUID_NAMESPACE = uuid.UUID("6f1c2a7e-52d4-4c1e-9a8b-5ad3c0e11a12")


def write_ome_tiff(path: Path, channels: np.ndarray, names: Sequence[str], key: str) -> None:
    """Write a CZYX stack as OME-TIFF with channel names and 0.29 um physical sizes.

    ``key`` names the content (e.g. seed, structure and index); the OME UUID is derived from it, so
    the bytes depend only on the data. No date, no tifffile version in the file.
    """
    import tifffile

    if channels.ndim != 4 or channels.shape[0] != len(names):
        raise ValueError(f"expected (C, Z, Y, X) with C = {len(names)}, got {channels.shape}")
    metadata = {
        "axes": "CZYX",
        "UUID": str(uuid.uuid5(_UUID_NAMESPACE, key)),
        "Creator": CREATOR,
        "Name": Path(path).name.split(".")[0],
        "PhysicalSizeX": TARGET_VOXEL_UM,
        "PhysicalSizeXUnit": "µm",
        "PhysicalSizeY": TARGET_VOXEL_UM,
        "PhysicalSizeYUnit": "µm",
        "PhysicalSizeZ": TARGET_VOXEL_UM,
        "PhysicalSizeZUnit": "µm",
        "Channel": {"Name": list(names)},
    }
    with atomic_path(path) as tmp:
        tifffile.imwrite(
            tmp,
            np.ascontiguousarray(channels),
            ome=True,
            photometric="minisblack",
            metadata=metadata,
            software=CREATOR,
            datetime=None,
        )


def write_manifest(path: Path, rows: Sequence[dict[str, object]]) -> None:
    """One split list with RepMode's columns (rows are dicts keyed by :data:`MANIFEST_COLUMNS`)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(MANIFEST_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row[k] for k in MANIFEST_COLUMNS})
    atomic_write_text(path, buf.getvalue())


def read_manifest(path: Path) -> list[dict[str, str]]:
    """Rows of one split list as dicts of strings."""
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _first_row(root: Path, structure: str) -> dict[str, str] | None:
    for split in SPLITS:
        path = root / structure / f"{split}.csv"
        if path.is_file():
            rows = read_manifest(path)
            if rows:
                return rows[0]
    return None


def _stretch(image: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(image, [0.5, 99.8])
    return np.clip((image - lo) / max(hi - lo, 1e-6), 0.0, 1.0)


def write_preview(root: Path, png: Path, structures: Sequence[str]) -> None:
    """A PNG panel, one column per structure (its first listed file): the TL slice where TL varies most,
    then the target's XY and XZ max-intensity projections; each panel stretched to its own percentiles."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import tifffile

    columns = []
    for name in structures:
        row = _first_row(root, name)
        if row is None:
            continue
        data = tifffile.imread(root / row["path_czi"]).astype(np.float32)
        tl = data[int(row["channel_signal"])]
        target = data[int(row["channel_target"])]
        z = int(np.argmax(tl.reshape(tl.shape[0], -1).std(axis=1)))
        columns.append((name, tl, z, target))
    if not columns:
        raise ValueError(f"no manifest rows found under {root}")
    n = len(columns)
    nz, ny, _ = columns[0][1].shape
    fig, axes = plt.subplots(
        3,
        n,
        figsize=(1.9 * n, 1.9 * (2 + nz / ny)),
        squeeze=False,
        gridspec_kw={"height_ratios": [1, 1, max(nz / ny, 0.15)]},
    )
    for i, (name, tl, z, target) in enumerate(columns):
        axes[0, i].imshow(_stretch(tl[z]), cmap="gray", vmin=0, vmax=1)
        axes[0, i].set_title(f"{name}\nTL z={z}", fontsize=7)
        axes[1, i].imshow(_stretch(target.max(axis=0)), cmap="magma", vmin=0, vmax=1)
        axes[1, i].set_title("XY MIP", fontsize=7)
        axes[2, i].imshow(_stretch(target.max(axis=1)), cmap="magma", vmin=0, vmax=1, aspect="auto", origin="lower")
        axes[2, i].set_title("XZ MIP", fontsize=7)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"SynthCell-12 preview: {root}", fontsize=8)
    fig.tight_layout()
    with atomic_path(png) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
