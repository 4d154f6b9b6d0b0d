"""sparsessp: predict 3D fluorescence of subcellular structures from sparse-view transmitted-light stacks.

The public API (product.md) is re-exported here and imported lazily, so ``import sparsessp`` is cheap.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_API = {
    "load_config": "sparsessp.config",
    "Config": "sparsessp.config",
    "build_model": "sparsessp.models.registry",
    "load_model": "sparsessp.engine.checkpoint",
    "import_weights": "sparsessp.models.compat",
    "predict_volume": "sparsessp.inference",
    "predict_file": "sparsessp.predict",
    "predict_files": "sparsessp.predict",
    "PredictOptions": "sparsessp.predict",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(import_module(_API[name]), name)
    raise AttributeError(f"module 'sparsessp' has no attribute {name!r}")
