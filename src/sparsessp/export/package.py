"""`export_bioimageio`: describe -> test (bioimage.io's own ``test_model``) -> save, one zip per structure.

Everything a user can get wrong (the checkpoint, a structure name, an existing output) is checked before
anything is written; each package is built in a temporary folder, tested, zipped there and only then
copied atomically to ``<out>/<name>``. bioimage.io's network checks are off unless the user turned them on
(``BIOIMAGEIO_PERFORM_IO_CHECKS``): nothing is downloaded.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from sparsessp.errors import InputError, UserError

FORMATS: tuple[str, ...] = ("bioimageio",)


class ExportError(UserError):
    """A package that bioimage.io's own model test does not pass."""


def package_name(structure: str) -> str:
    """File name of the package of ``structure``."""
    return f"sparsessp_{structure}.bioimageio.zip"


def plan_outputs(structures: Sequence[str], out: Path, overwrite: bool = False) -> dict[str, Path]:
    """The package path of each structure; existing files are refused unless ``overwrite``."""
    if not structures:
        raise InputError("give at least one structure to export")
    if len(set(structures)) != len(structures):
        raise InputError(f"a structure is listed twice: {', '.join(structures)}")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder")
    paths = {s: out / package_name(s) for s in structures}
    for path in paths.values():
        if path.exists() and not overwrite:
            raise UserError(f"{path} exists; refusing to overwrite it (use --overwrite)")
    return paths


def _first_failure(summary: object) -> str:
    for detail in getattr(summary, "details", []):
        if getattr(detail, "status", "passed") == "failed":
            errors = getattr(detail, "errors", None) or []
            reason = errors[0].msg if errors else detail.name
            return " ".join(f"{detail.name}: {reason}".split())
    return "status " + str(getattr(summary, "status", "unknown"))


def run_model_test(source: str | Path | object) -> object:
    """Run ``bioimageio.core.test_model`` (on the CPU) on a description or package; return its summary."""
    os.environ.setdefault("BIOIMAGEIO_PERFORM_IO_CHECKS", "0")
    from bioimageio.core import test_model

    return test_model(source, devices=["cpu"])


def export_bioimageio(
    checkpoint: str | Path,
    structures: Sequence[str],
    out: str | Path,
    *,
    overwrite: bool = False,
    authors: Sequence[str] = ("sparsessp",),
) -> dict[str, Path]:
    """Write one tested bioimage.io model package (format 0.5, zip) per structure; return their paths."""
    os.environ.setdefault("BIOIMAGEIO_PERFORM_IO_CHECKS", "0")
    from bioimageio.spec import save_bioimageio_package

    from sparsessp.engine.checkpoint import load_model
    from sparsessp.export.describe import describe
    from sparsessp.fileio import atomic_path
    from sparsessp.inference import task_id_of

    out = Path(out)
    paths = plan_outputs(list(structures), out, overwrite)
    model = load_model(checkpoint)
    for structure in structures:
        task_id_of(model, structure)
    for structure, path in paths.items():
        with tempfile.TemporaryDirectory(prefix="sparsessp-export-") as tmp:
            staging = Path(tmp) / "files"
            staging.mkdir()
            descr = describe(model, structure, staging, Path(checkpoint).name, authors)
            summary = run_model_test(descr)
            if summary.status != "passed":
                raise ExportError(f"the bioimage.io model test failed for {structure}: {_first_failure(summary)}")
            zipped = save_bioimageio_package(descr, output_path=Path(tmp) / package_name(structure))
            with atomic_path(path) as target:
                shutil.copyfile(zipped, target)
    return paths
