"""Importers of released weights (SparseSSP, RepMode, pytorch_fnet) and checkpoints of those architectures.

The released networks are rebuilt exactly (``registry.ARCHITECTURES``), not mapped onto our U-Net
skeleton, so their outputs are reproduced to float tolerance (tests/test_compat_fixtures.py).

- :func:`import_weights` reads a released file (a bare state dict, SparseSSP's ``{'model': ...}``,
  RepMode's / pytorch_fnet's ``{'nn_state': ...}``; ``bottle_neck`` accepted; ``module.`` prefixes
  dropped) with ``weights_only=True`` and returns the model in eval mode with ``.config``,
  ``.structures``, ``.sparse_ratio`` and ``.patch``. RepMode's trainer also pickles its argparse
  options; that one class (a plain attribute bag) is allowed so its ``adopted_datasets`` name the tasks.
- :func:`initial_state_dict` reads the weights of ``train.init_from`` (a sparsessp checkpoint or a released
  file) for a model ``build_model`` made, so released networks can be fine-tuned.
- :func:`architecture_of` is the ``architecture`` entry (``{"name", "spec"}``) that
  :func:`sparsessp.engine.checkpoint.imported_state` adds to our checkpoint layout;
  :func:`build_from_checkpoint` rebuilds such a checkpoint (``None`` for our own networks), for
  :func:`sparsessp.engine.checkpoint.load_model`. Imports run one way: engine.checkpoint -> compat.
"""

from __future__ import annotations

import argparse
import pickle
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sparsessp.errors import CheckpointError, UserError

if TYPE_CHECKING:
    from torch import Tensor, nn

    from sparsessp.config import Config
    from sparsessp.models.compat.base import CompatModel

SOURCES: tuple[str, ...] = ("sparsessp-released", "repmode", "fnet")
CHECKPOINT_FORMAT = "sparsessp-checkpoint"
_WRAPPERS = ("model", "nn_state", "state_dict", "model_state_dict")
_PREFIXES = ("module.", "_orig_mod.", "_forward_module.")


def _read(path: Path) -> Any:
    import torch

    if not path.is_file():
        raise CheckpointError(f"weights file not found: {path}")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = str(exc).splitlines()[-1].strip() if str(exc).strip() else "pickled objects"
        raise CheckpointError(
            f"{path} holds pickled objects that weights-only loading refuses ({reason[:160]}); "
            "re-save just the state dict with torch.save(model.state_dict(), path)"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as exc:
        raise CheckpointError(f"{path} is not a readable torch file ({exc.__class__.__name__})") from None


def _state_dict(obj: Any, path: Path) -> dict[str, Tensor]:
    """The state dict inside a released file, wrappers and parallel prefixes removed."""
    import torch

    if isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is already a sparsessp checkpoint: load it directly")
    state = obj
    if isinstance(obj, dict):
        for key in _WRAPPERS:
            if isinstance(obj.get(key), dict):
                state = obj[key]
                break
    if not isinstance(state, dict) or not state or not all(torch.is_tensor(v) for v in state.values()):
        raise CheckpointError(f"{path} holds no state dict (expected tensors, or one under {', '.join(_WRAPPERS)})")
    for prefix in _PREFIXES:
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return dict(state)


def _structures(obj: Any, source: str, spec: dict[str, Any], given: Sequence[str] | None) -> list[str]:
    from sparsessp.structures import STRUCTURES

    if source == "fnet":
        if given is None or len(given) != 1:
            raise UserError("fnet weights are one structure's network: name that structure (--structures NAME)")
        return list(given)
    num_tasks = spec["num_tasks"]
    opts = obj.get("opts") if isinstance(obj, dict) else None
    if given is not None:
        structures = list(given)
    elif isinstance(opts, argparse.Namespace) and isinstance(getattr(opts, "adopted_datasets", None), list):
        structures = [str(s) for s in opts.adopted_datasets]
    elif num_tasks == len(STRUCTURES):
        structures = list(STRUCTURES)
    else:
        raise UserError(f"the weights have {num_tasks} tasks: name them in order (--structures a,b,...)")
    if len(structures) != num_tasks:
        raise UserError(f"the weights have {num_tasks} tasks but {len(structures)} structures were named")
    return structures


def initial_state_dict(path: str | Path, model: nn.Module) -> dict[str, Tensor]:
    """The weights ``train.init_from`` names, keyed for ``model``: a sparsessp checkpoint's as saved, a released
    file's (SparseSSP ``{'model': ...}`` with ``bottle_neck``, RepMode / pytorch_fnet ``{'nn_state': ...}`` or a
    bare state dict) unwrapped and renamed by ``model``'s architecture. Read with ``weights_only=True``.
    """
    from sparsessp.models.compat.base import CompatModel

    path = Path(path)
    obj = _read(path)
    if isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT:
        state = obj.get("model")
        if not isinstance(state, dict):
            raise CheckpointError(f"{path} is an incomplete sparsessp checkpoint (no 'model')")
        return state
    state = _state_dict(obj, path)
    return type(model).convert_state_dict(state) if isinstance(model, CompatModel) else state


def _architecture(name: str) -> type[CompatModel]:
    from sparsessp.models.registry import ARCHITECTURES, resolve

    if name not in ARCHITECTURES:
        raise CheckpointError(f"unknown architecture {name!r}; known: {', '.join(ARCHITECTURES)}")
    return resolve(ARCHITECTURES, name)


def _load(model: nn.Module, state: dict[str, Tensor]) -> None:
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        detail = next((ln.strip() for ln in str(exc).splitlines()[1:] if ln.strip()), str(exc))
        raise CheckpointError(f"the weights do not fit the architecture: {detail[:200]}") from None
    if missing or unexpected:
        what = f"missing {missing[0]!r}" if missing else f"unexpected {unexpected[0]!r}"
        raise CheckpointError(
            f"the weights do not fit the architecture ({len(missing)} missing, {len(unexpected)} unexpected keys; "
            f"{what})"
        )


def _finish(model: CompatModel, cfg: Config) -> CompatModel:
    model.config = cfg
    model.structures = list(cfg.data.structures)
    model.sparse_ratio = cfg.data.sparse_ratio
    model.patch = tuple(cfg.data.patch)
    return model.eval()


def import_weights(
    path: str | Path,
    source: str,
    sparse_ratio: int | None = None,
    structures: Sequence[str] | None = None,
    *,
    patch: Sequence[int] | None = None,
    route: str | None = None,
) -> CompatModel:
    """Rebuild a released network from its weights file; eval mode, with ``.config`` and friends.

    ``sparse_ratio`` defaults to 8 for ``sparsessp-released`` (its one released setting) and 1 (dense)
    for ``repmode`` / ``fnet``; ``structures`` name the tasks in gate order (default: RepMode's saved
    options, else the twelve AllenCell structures; fnet needs its one structure); ``patch`` (D, H, W)
    defaults to the architecture's depth by 128 x 128; ``route`` is the MoDE training route.
    """
    from sparsessp.config import config_from_dict

    if source not in SOURCES:
        raise UserError(f"unknown weights source {source!r}; choose one of {', '.join(SOURCES)}")
    path = Path(path)
    obj = _read(path)
    state = _state_dict(obj, path)
    cls = _architecture(source)
    spec = cls.spec_from_state_dict(state)
    names = _structures(obj, source, spec, structures)
    depth = cls.patch_depth(spec)
    shape = tuple(patch) if patch is not None else (depth or 32, *cls.default_patch_hw)
    if len(shape) != 3:
        raise UserError(f"patch must be three sizes (D, H, W), got {shape}")
    if depth is not None and shape[0] != depth:
        raise UserError(f"patch depth {shape[0]} does not match the weights, whose head predicts {depth} slices")
    r = sparse_ratio if sparse_ratio is not None else cls.default_sparse_ratio
    model_tree = cls.config_tree(spec)
    if route is not None and model_tree["conditioning"] == "repmode":
        model_tree["conditioning_options"]["route"] = route
    data = {"structures": names, "patch": list(shape), "sparse_ratio": r}
    cfg = _trainable_config(cls, spec, data, model_tree) or config_from_dict({"data": data, "model": model_tree})
    model = _build(cls, spec, cfg)
    _load(model, cls.convert_state_dict(state))
    return _finish(model, cfg)


def _trainable_config(
    cls: type[CompatModel], spec: dict[str, Any], data: dict[str, Any], model_tree: dict[str, Any]
) -> Config | None:
    """The config naming the released network in ``model.architecture`` when its ``architecture_options`` rebuild
    ``spec`` exactly, so the imported checkpoint can be trained on (``train.init_from``); None otherwise."""
    from sparsessp.config import config_from_dict
    from sparsessp.errors import ConfigError

    tree = {**model_tree, "architecture": cls.architecture, "architecture_options": cls.options_from_spec(spec)}
    try:
        cfg = config_from_dict({"data": data, "model": tree})
    except ConfigError:
        return None
    return cfg if cls.spec_from_config(cfg) == spec else None


def _build(cls: type[CompatModel], spec: dict[str, Any], cfg: Config) -> CompatModel:
    from sparsessp.models.conditioning.mode import DEFAULT_ROUTE

    route = cfg.model.conditioning_options.get("route", DEFAULT_ROUTE)
    return cls(spec, route=route, sparse_ratio=cfg.data.sparse_ratio)


def architecture_of(model: CompatModel) -> dict[str, Any]:
    """The ``architecture`` entry (``{"name", "spec"}``) that rebuilds an imported model from a checkpoint."""
    return {"name": model.architecture, "spec": dict(model.spec)}


def build_from_checkpoint(ckpt: dict[str, Any]) -> nn.Module | None:
    """Rebuild (weights loaded, eval mode) a checkpoint of a released architecture; None for our own networks."""
    from sparsessp.config import config_from_dict

    arch = ckpt.get("architecture")
    if arch is None:
        return None
    if not isinstance(arch, dict) or not isinstance(arch.get("spec"), dict):
        raise CheckpointError("checkpoint key 'architecture' must be {'name': ..., 'spec': {...}}")
    cls = _architecture(str(arch.get("name")))
    cfg = config_from_dict(ckpt["config"])
    model = _build(cls, arch["spec"], cfg)
    _load(model, ckpt["model"])
    return _finish(model, cfg)
