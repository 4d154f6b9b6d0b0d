"""Checkpoints: one dict saved with torch.save through an atomic file, always loaded with weights_only=True.

Layout (CONTRACTS.md): ``format``, ``version``, ``package_version``, ``config`` (JSON-mode dict),
``structures``, ``model`` (state dict) and, for training state, ``optimizer``, ``scaler``, ``epoch``,
``step``, ``rng``, ``data``, ``best_val``. Anything else a user may hand us (a pickle that would run code,
a truncated file, another program's weights, another model's weights) is a one-line CheckpointError.
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from sparsessp import __version__, memory_format
from sparsessp.errors import CheckpointError, ConfigError
from sparsessp.fileio import atomic_path

if TYPE_CHECKING:
    from torch import nn

    from sparsessp.config import Config

FORMAT = "sparsessp-checkpoint"
VERSION = 1

MODEL_KEYS: tuple[str, ...] = ("data.structures", "data.patch", "data.sparse_ratio", "model")
"""Config entries that decide the network's parameters: a checkpoint only fits a config that agrees on them."""


def base_state(cfg: Config, model_state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The part every checkpoint has: format tag, versions, resolved config, structures and weights."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "package_version": __version__,
        "config": cfg.model_dump(mode="json"),
        "structures": list(cfg.data.structures),
        "model": model_state,
    }


def imported_state(model: nn.Module) -> dict[str, Any]:
    """The checkpoint layout of an imported released model (:mod:`sparsessp.models.compat`), plus ``architecture``."""
    from sparsessp.models.compat import architecture_of

    state = base_state(model.config, model.state_dict())
    state["architecture"] = architecture_of(model)
    return state


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` atomically (temp file, fsync, rename); a crash leaves the previous file intact."""
    if state.get("format") != FORMAT:
        raise ValueError(f"a checkpoint state needs format={FORMAT!r} (build it with base_state)")
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _read(path: Path) -> Any:
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*pickle protocol", category=UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc).lower()
        # "unsupported operand": torch could not even parse it, as with garbage, a TIFF or a protocol-4+ pickle
        if "weights only" in text and ("unsupported operand" not in text or _imports_code(path)):
            raise CheckpointError(
                f"{path} holds pickled Python objects that would run code when loaded; refusing to load it"
            ) from None
        raise CheckpointError(f"{path} is not a checkpoint (unreadable pickle data)") from None
    except Exception as exc:  # any other failure of a foreign file means the same to the user
        reason = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
        raise CheckpointError(f"{path} is not a readable checkpoint (truncated or corrupt: {reason})") from None


_CODE_OPCODES = frozenset({"GLOBAL", "STACK_GLOBAL", "INST", "OBJ", "REDUCE", "NEWOBJ", "NEWOBJ_EX", "EXT1", "EXT2",
                           "EXT4"})


def _imports_code(path: Path) -> bool:
    """Whether ``path`` is a plain pickle that imports or calls Python objects (its opcodes are read, never run)."""
    import pickletools

    try:
        with open(path, "rb") as fh:
            return any(op.name in _CODE_OPCODES for op, _, _ in pickletools.genops(fh))
    except Exception:  # not a pickle at all
        return False


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a sparsessp checkpoint; non-checkpoints, pickles, truncated files and foreign formats are refused."""
    path = Path(path)
    obj = _read(path)
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a sparsessp checkpoint (released weights can be converted with `sparsessp import-weights`)"
        )
    if int(obj.get("version", 0)) > VERSION:
        raise CheckpointError(
            f"{path} was written by a newer sparsessp (checkpoint version {obj['version']} > {VERSION}); upgrade"
        )
    for key in ("config", "model"):
        if key not in obj:
            raise CheckpointError(f"{path} is an incomplete sparsessp checkpoint (no {key!r})")
    return obj


def checkpoint_config(ckpt: dict[str, Any], path: str | Path) -> Config:
    """The resolved config stored in a checkpoint."""
    from sparsessp.config import config_from_dict

    try:
        return config_from_dict(ckpt["config"])
    except ConfigError as exc:
        raise CheckpointError(f"{path}: its stored config is not valid here ({exc})") from None


def check_same_model(cfg: Config, ckpt: dict[str, Any], path: str | Path) -> None:
    """Refuse a checkpoint whose network differs from the one ``cfg`` describes, naming the first key."""
    from sparsessp.config import differences, lookup

    now, saved = cfg.model_dump(mode="json"), ckpt["config"]
    for key in MODEL_KEYS:
        diff = differences(lookup(now, key), lookup(saved, key), key)
        if diff:
            first = diff[0]
            raise CheckpointError(
                f"{path} belongs to a different model ({first}: {lookup(saved, first)!r} in the checkpoint, "
                f"{lookup(now, first)!r} now)"
            )


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], path: str | Path) -> None:
    """Load a state dict strictly; a mismatch is a one-line CheckpointError instead of torch's long report."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or shapes:
        first = (
            f"missing {missing[0]!r}"
            if missing
            else f"unexpected {unexpected[0]!r}"
            if unexpected
            else f"{shapes[0]!r} has shape {tuple(state[shapes[0]].shape)}, the model {tuple(own[shapes[0]].shape)}"
        )
        raise CheckpointError(
            f"{path} holds weights of a different model ({len(missing)} missing, {len(unexpected)} unexpected, "
            f"{len(shapes)} of another shape; first: {first})"
        )
    model.load_state_dict(state, strict=True)


def load_model(path: str | Path) -> nn.Module:
    """Rebuild the network a checkpoint describes and load its weights; eval mode, ``.config``/``.structures`` set.

    The model is on the CPU, its weights in the layout ``inference.memory_format`` means there
    (:mod:`sparsessp.memory_format`; :func:`sparsessp.inference.prepare_model` redoes it for another device).

    Checkpoints of imported released architectures (key ``architecture``) are rebuilt by
    :func:`sparsessp.models.compat.build_from_checkpoint`.
    """
    from sparsessp.models.compat import build_from_checkpoint
    from sparsessp.models.registry import build_model

    with warnings.catch_warnings():  # a refused pickle is one line; torch's protocol warning would add two
        warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
        ckpt = load_checkpoint(path)
    model = build_from_checkpoint(ckpt)
    if model is None:
        cfg = checkpoint_config(ckpt, path)
        model = build_model(cfg)
        load_weights(model, ckpt["model"], path)
        model.config = cfg
        model.structures = list(ckpt.get("structures") or cfg.data.structures)
    return memory_format.for_device(model, model.config.inference.memory_format, "cpu").eval()
