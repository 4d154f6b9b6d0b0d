"""Dataset manifests: which image files make each structure's train / val / test split.

Two forms are read, the first found wins:

1. RepMode's (and SynthCell's): ``ROOT/<structure>/<split>.csv`` with columns ``path_czi``,
   ``channel_signal``, ``channel_target`` and optionally ``structureProteinName``, ``colony_position``
   and ``timepoint``. Other columns (e.g. a pandas index) are ignored.
2. Our single-file form, for a user's own data: ``ROOT/manifest.csv`` with columns ``structure``, ``split``,
   ``path``, ``channel_signal``, ``channel_target`` and optionally ``timepoint``; one row per file.

A relative path is resolved against ROOT (or, when no file is there, against the CSV's own folder).
Channels are indices, or channel names as stored in the file. Missing files, columns or values are one-line
:class:`~sparsessp.errors.InputError`\\ s.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from sparsessp.errors import InputError

SPLITS: tuple[str, ...] = ("train", "val", "test")
SINGLE_MANIFEST = "manifest.csv"

_REPMODE_REQUIRED = ("path_czi", "channel_signal", "channel_target")
_SINGLE_REQUIRED = ("structure", "split", "path", "channel_signal", "channel_target")


@dataclass(frozen=True)
class ManifestEntry:
    """One image file of a split: where it is and which channels are the TL signal and the target."""

    structure: str
    split: str
    path: Path
    channel_signal: int | str
    channel_target: int | str
    timepoint: int | None = None
    protein: str | None = None
    colony_position: str | None = None


def manifest_path(root: str | Path, structure: str, split: str) -> Path:
    """The RepMode-style CSV of one structure and split."""
    return Path(root) / structure / f"{split}.csv"


def has_manifest(root: str | Path) -> bool:
    """Whether ``root`` holds a manifest of either form."""
    root = Path(root)
    return (root / SINGLE_MANIFEST).is_file() or any(root.glob(f"*/{SPLITS[0]}.csv"))


def read_manifest(root: str | Path, structure: str, split: str) -> list[ManifestEntry]:
    """Entries of ``structure``'s ``split``, with image paths resolved and checked to exist."""
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"dataset root not found: {root}")
    per_structure = manifest_path(root, structure, split)
    if per_structure.is_file():
        rows = _read_csv(per_structure, _REPMODE_REQUIRED)
        entries = [_repmode_entry(row, structure, split, root, per_structure, n) for n, row in rows]
    elif (root / SINGLE_MANIFEST).is_file():
        single = root / SINGLE_MANIFEST
        rows = _read_csv(single, _SINGLE_REQUIRED)
        entries = [
            _single_entry(row, root, single, n)
            for n, row in rows
            if row["structure"].strip() == structure and row["split"].strip() == split
        ]
    else:
        raise InputError(
            f"no manifest for structure {structure!r} split {split!r}: "
            f"expected {per_structure} or {root / SINGLE_MANIFEST}"
        )
    return entries


def _read_csv(path: Path, required: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    """Rows of a CSV with their line numbers; missing required columns are an error naming them."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip() for h in (reader.fieldnames or [])]
            missing = [c for c in required if c not in header]
            if missing:
                raise InputError(f"{path}: missing column(s) {', '.join(missing)} (has: {', '.join(header) or 'none'})")
            reader.fieldnames = header
            return [(n + 2, {k: (v or "") for k, v in row.items() if k is not None}) for n, row in enumerate(reader)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"cannot read manifest {path}: {exc}") from None


def _channel(value: str, column: str, csv_path: Path, line: int) -> int | str:
    text = value.strip()
    if not text:
        raise InputError(f"{csv_path} line {line}: empty {column}")
    try:
        number = float(text)
    except ValueError:
        return text
    if number != int(number) or number < 0:
        raise InputError(f"{csv_path} line {line}: {column} {text!r} is not a channel index")
    return int(number)


def _timepoint(row: dict[str, str], csv_path: Path, line: int) -> int | None:
    text = row.get("timepoint", "").strip()
    if not text:
        return None
    try:
        return int(float(text))
    except ValueError:
        raise InputError(f"{csv_path} line {line}: timepoint {text!r} is not an integer") from None


def _resolve(value: str, root: Path, csv_path: Path, line: int) -> Path:
    text = value.strip()
    if not text:
        raise InputError(f"{csv_path} line {line}: empty image path")
    path = Path(text).expanduser()
    if not path.is_absolute():
        candidates = [root / path, csv_path.parent / path]
        path = next((c for c in candidates if c.exists()), candidates[0])
    if not path.exists():
        raise InputError(f"{csv_path} line {line}: image file not found: {path}")
    return path


def _optional(row: dict[str, str], key: str) -> str | None:
    value = row.get(key, "").strip()
    return value or None


def _repmode_entry(
    row: dict[str, str], structure: str, split: str, root: Path, csv_path: Path, line: int
) -> ManifestEntry:
    return ManifestEntry(
        structure=structure,
        split=split,
        path=_resolve(row["path_czi"], root, csv_path, line),
        channel_signal=_channel(row["channel_signal"], "channel_signal", csv_path, line),
        channel_target=_channel(row["channel_target"], "channel_target", csv_path, line),
        timepoint=_timepoint(row, csv_path, line),
        protein=_optional(row, "structureProteinName"),
        colony_position=_optional(row, "colony_position"),
    )


def _single_entry(row: dict[str, str], root: Path, csv_path: Path, line: int) -> ManifestEntry:
    return ManifestEntry(
        structure=row["structure"].strip(),
        split=row["split"].strip(),
        path=_resolve(row["path"], root, csv_path, line),
        channel_signal=_channel(row["channel_signal"], "channel_signal", csv_path, line),
        channel_target=_channel(row["channel_target"], "channel_target", csv_path, line),
        timepoint=_timepoint(row, csv_path, line),
    )
