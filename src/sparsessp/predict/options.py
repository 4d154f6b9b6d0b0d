"""What a prediction run is asked to do: :class:`PredictOptions` and the ``--timepoints`` syntax."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sparsessp.errors import InputError

FORMATS: tuple[str, ...] = ("ome-tiff", "ome-zarr")
SUFFIXES: dict[str, str] = {"ome-tiff": ".ome.tif", "ome-zarr": ".ome.zarr"}
DTYPES: tuple[str, ...] = ("float32", "uint16")


@dataclass
class PredictOptions:
    """Settings of :func:`sparsessp.predict.predict_files` (the ``sparsessp predict`` options, same names).

    ``z_step`` / ``pixel_size`` (um) override the files' metadata; ``channel`` picks the TL channel (index
    or name) of multi-channel files; ``timepoints`` is ``--timepoints`` text (None: every timepoint);
    ``merge`` writes one multi-channel output per input instead of one per structure; ``max_memory_gb``
    bounds the block buffers (it picks the y-x block size); ``devices`` processes share the files x
    timepoints; ``resume`` skips finished outputs and finished timepoints of an interrupted run.
    """

    model: Path
    structures: list[str]
    out: Path
    z_step: float | None = None
    pixel_size: float | None = None
    channel: int | str | None = None
    timepoints: str | None = None
    merge: bool = False
    format: str = "ome-tiff"
    dtype: str = "float32"
    with_input: bool = False
    keep_input_grid: bool = False
    preview: bool = False
    overwrite: bool = False
    resume: bool = False
    device: str | None = None
    devices: int = 1
    max_memory_gb: float = 0.5
    precision: str = "auto"


def parse_timepoints(text: str | None, count: int, source: Path) -> list[int]:
    """Timepoint indices from ``"0-9,15"`` (ranges inclusive, sorted, unique); None means all ``count``."""
    if text is None:
        return list(range(count))
    chosen: set[int] = set()
    for part in (p.strip() for p in text.split(",")):
        try:
            lo, _, hi = part.partition("-")
            first, last = int(lo), int(hi) if hi else int(lo)
        except ValueError:
            raise InputError(f"--timepoints {text!r}: use indices and ranges such as 0-9,15") from None
        if first > last or first < 0 or last >= count:
            raise InputError(f"--timepoints {part!r} is out of range: {source} has timepoints 0..{count - 1}")
        chosen.update(range(first, last + 1))
    return sorted(chosen)
