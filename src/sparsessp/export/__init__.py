"""Export a trained model for other tools: bioimage.io model packages (Fiji/deepImageJ, ilastik, QuPath, ...).

The flow is describe (:mod:`sparsessp.export.describe`) -> test (``bioimageio.core.test_model``) -> save
(:mod:`sparsessp.export.package`). Imported lazily: bioimage.io's libraries load only when used.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_API = {
    "export_bioimageio": "sparsessp.export.package",
    "run_model_test": "sparsessp.export.package",
    "package_name": "sparsessp.export.package",
    "FORMATS": "sparsessp.export.package",
}

__all__ = list(_API)


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(import_module(_API[name]), name)
    raise AttributeError(f"module 'sparsessp.export' has no attribute {name!r}")
