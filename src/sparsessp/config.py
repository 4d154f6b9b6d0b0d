"""Run configuration: a pydantic schema of the stable names in product.md, YAML files and overrides.

Every section forbids unknown keys, so a typo is an error naming the key before any work starts.
Cross-field rules of the model design space live in :mod:`sparsessp.design` (no torch import, no
:mod:`sparsessp.models`), and are applied here when a config is built.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sparsessp.design import check_model_config, check_resampling_patch
from sparsessp.errors import ConfigError
from sparsessp.structures import STRUCTURES


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SynthCellConfig(_Section):
    """How to generate SynthCell-12 when `data.root` holds no dataset yet."""

    size: tuple[int, int, int] = (64, 192, 192)
    count: int = Field(4, ge=1, description="fields of view per structure")
    seed: int = 0
    photons: float = Field(200.0, gt=0)


class DataConfig(_Section):
    root: Path = Path("data/synthcell")
    structures: list[str] = Field(default_factory=lambda: list(STRUCTURES))
    patch: tuple[int, int, int] = (32, 128, 128)
    sparse_ratio: int = Field(4, ge=1, le=64)
    flip: bool = True
    single_structure: str | None = Field(
        None, description="Multi-Net data mode: feed only this structure's samples"
    )
    samples_per_epoch: int | None = Field(None, ge=1, description="patches per epoch; default one per volume")
    num_workers: int = Field(0, ge=0)
    cache_dir: Path | None = None
    synthcell: SynthCellConfig | None = None

    @field_validator("structures")
    @classmethod
    def _structures(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("list at least one structure")
        if len(set(v)) != len(v):
            raise ValueError("structures must be unique")
        return v

    @field_validator("patch")
    @classmethod
    def _patch(cls, v: tuple[int, int, int]) -> tuple[int, int, int]:
        if min(v) < 1:
            raise ValueError("patch sizes must be positive")
        return v

    @model_validator(mode="after")
    def _single(self) -> DataConfig:
        if self.single_structure is not None and self.single_structure not in self.structures:
            raise ValueError(f"single_structure {self.single_structure!r} is not in data.structures")
        return self


ARCHITECTURE_OPTIONS: dict[str, dict[str, int]] = {
    "sparsessp": {},
    "fnet": {"mult_chan": 32, "depth": 4},
    "repmode": {"mult_chan": 32, "kernel_size": 5},
    "sparsessp-released": {"mult_chan": 32, "decoder_mult_chan": 64, "kernel_size": 5},
}
"""``model.architecture`` values and their ``model.architecture_options`` with the released (full-size)
defaults: pytorch_fnet depth 4 from 32 channels; RepMode 3D 32 ... 512; the released SparseSSP encoder
32 ... 256, bottleneck 512, skip gates to 64 ... 512, decoder 512 ... 64; MoDE kernels 5."""


def architecture_levels(name: str, options: dict[str, int]) -> int:
    """Down-samplings of a released architecture (patch sizes must be multiples of 2 ** levels)."""
    return int(options["depth"]) if name == "fnet" else 4


class ModelConfig(_Section):
    architecture: Literal["sparsessp", "fnet", "repmode", "sparsessp-released"] = Field(
        "sparsessp",
        description="sparsessp: our design-space skeleton (the keys below); the others: released networks, sized by "
        "architecture_options, which ignore the design-space keys",
    )
    architecture_options: dict[str, int] = Field(default_factory=dict)
    topology: Literal["3d", "2d", "3to2d", "2to3d"] = "3to2d"
    interpolation: Literal["prefix", "postfix", "none"] = "prefix"
    prefix_mode: Literal["nearest", "trilinear", "aligned"] = "nearest"
    postfix_placement: Literal["output", "features"] = Field(
        "output",
        description="postfix only; output (the paper's): the head maps to the output grid at depth D/r, then a "
        "ConvTranspose3d (kernel = stride = (r, 1, 1)) up-samples that output; features (ours): up-sample the "
        "3D decoder's last feature before the head, or map a 2D head's D/r channels to D by a 1x1 conv",
    )
    projection: Literal["3d", "2d"] = "3d"
    conditioning: str = "condnet"
    backbone: str = "unet"
    backbone_weights: Path | None = None
    width: float = Field(1.0, gt=0, description="multiplies every channel count")
    channels: list[int] = Field(default_factory=lambda: [32, 64, 128, 256, 256])
    embed_dim: int = Field(256, ge=1, description="upsample embedding dimension U of 2D features")
    projection_kernel: int = Field(1, ge=1, description="kernel size of the projection convs in 2D (odd)")
    norm: Literal["batch", "instance"] = "batch"
    conditioning_options: dict[str, Any] = Field(
        default_factory=dict,
        description="mechanism options; tsn: style adain (the paper's / official TSNs', default) or film (ours), "
        "latent_dim, mapping_layers; multinet: member fnet (pytorch_fnet's U-Net, the paper's, default) or sparsessp",
    )

    @field_validator("channels")
    @classmethod
    def _channels(cls, v: list[int]) -> list[int]:
        if len(v) < 2 or min(v) < 1:
            raise ValueError("give at least two positive channel counts (levels = len(channels))")
        return v

    @model_validator(mode="after")
    def _architecture_options(self) -> ModelConfig:
        allowed = ARCHITECTURE_OPTIONS[self.architecture]
        unknown = sorted(set(self.architecture_options) - set(allowed))
        if unknown:
            known = ", ".join(allowed) or "none"
            raise ValueError(f"architecture_options: {self.architecture} has no option {unknown[0]!r} (known: {known})")
        for key, value in self.architecture_options.items():
            if value < 1:
                raise ValueError(f"architecture_options.{key}: expected an integer >= 1, got {value}")
        return self

    def architecture_spec(self) -> dict[str, int]:
        """``architecture_options`` over the released defaults of ``architecture``."""
        return {**ARCHITECTURE_OPTIONS[self.architecture], **self.architecture_options}

    @property
    def levels(self) -> int:
        return len(self.channels)

    def scaled_channels(self) -> list[int]:
        """Channel counts after the width factor (at least 1 each)."""
        return [max(1, round(c * self.width)) for c in self.channels]


class TrainConfig(_Section):
    batch_size: int = Field(8, ge=1)
    lr: float = Field(1e-4, gt=0)
    lr_schedule: Literal["constant", "cosine"] = Field(
        "constant", description="cosine: decay to 0 over min(epochs, max_steps) steps, after warmup_steps"
    )
    warmup_steps: int = Field(0, ge=0)
    epochs: int = Field(1000, ge=1)
    max_steps: int | None = Field(None, ge=1)
    max_minutes: float | None = Field(None, gt=0)
    val_every: int = Field(20, ge=1)
    val_volumes: int | None = Field(None, ge=1, description="cap on validation volumes per structure")
    seed: int = 0
    precision: Literal[
        "auto", "32-true", "64-true", "16-mixed", "bf16-mixed", "32", "16", "bf16", "fp32", "fp16"
    ] = Field("32-true", description="auto: bf16-mixed where the device runs bf16 natively, else 32-true")
    memory_format: Literal["auto", "channels_last", "contiguous"] = Field(
        "auto", description="layout of the convolution weights: auto is channels-last on CPUs (measured faster), "
        "contiguous elsewhere (sparsessp.memory_format)",
    )
    compile: bool = Field(
        False, description="torch.compile the training forward pass: faster steps after a one-off compile (the "
        "quickstart's 2d step 19.2 -> 26.0 it/s after 51 s on two CPU cores); needs a C++ compiler on a CPU",
    )
    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps"] = "auto"
    devices: int = Field(1, ge=1)
    num_nodes: int = Field(1, ge=1)
    strategy: Literal["auto", "ddp", "ddp_spawn"] = "auto"
    checkpoint_every: int | None = Field(None, ge=1, description="steps between last.ckpt writes")
    batches: Literal["auto", "mixed", "per_task"] = Field(
        "auto",
        description="per_task: each step one structure's full batch (the paper's Multi-Net, trained per structure); "
        "mixed: shuffled samples of all structures; auto: per_task for multinet, mixed otherwise",
    )
    init_from: Path | None = Field(
        None, description="start from these weights: a sparsessp checkpoint or a released .pth (weights-only read)"
    )
    deterministic: bool = False


class InferenceConfig(_Section):
    overlap: float = Field(0.5, ge=0, lt=1)
    sigma_scale: float = Field(0.125, gt=0)
    blend: Literal["released", "monai"] = "released"
    window_batch: int | None = Field(
        None, ge=1,
        description="windows per model call; none: as many as make about 2**21 output voxels (1 to 16; "
        "16 for the quickstart's 32 x 64 x 64 window, 4 for the paper's 32 x 128 x 128)",
    )
    memory_format: Literal["auto", "channels_last", "contiguous"] = Field(
        "auto", description="layout of the convolution weights for evaluate / predict: auto is channels-last on "
        "CPUs, contiguous elsewhere (sparsessp.memory_format)",
    )


class Config(_Section):
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    inference: InferenceConfig = Field(default_factory=InferenceConfig)

    @model_validator(mode="after")
    def _design_space(self) -> Config:
        if self.model.architecture != "sparsessp":
            self._check_released_architecture()
            return self
        check_model_config(self.model, self.data)
        return self

    def _check_released_architecture(self) -> None:
        """Sizes a released network needs: patch multiples of its down-sampling, depth a multiple of r."""
        name, spec = self.model.architecture, self.model.architecture_spec()
        check_resampling_patch(self.data.patch, self.data.sparse_ratio, architecture_levels(name, spec),
                               f"model.architecture {name}")

    @property
    def num_tasks(self) -> int:
        return len(self.data.structures)

    @property
    def per_task_batches(self) -> bool:
        """Whether training feeds one structure's full batch per step (``train.batches``)."""
        if self.train.batches == "auto":
            return self.model.architecture == "sparsessp" and self.model.conditioning == "multinet"
        return self.train.batches == "per_task"

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    def save(self, path: Path) -> None:
        from sparsessp.fileio import atomic_write_text

        atomic_write_text(Path(path), self.to_yaml())


def _format_validation_error(err: ValidationError) -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"] if not str(p).startswith("function-after"))
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        return f"config: unknown key {loc!r}"
    return f"config: {loc}: {msg}" if loc else f"config: {msg}"


def _set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"config: cannot set {key!r}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value


def lookup(tree: Any, dotted: str) -> Any:
    """The value at a dotted key of a nested config tree (``None`` where the path does not exist)."""
    node = tree
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted keys (sorted) whose values differ between two config trees (or subtrees at ``prefix``)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for key in sorted(set(a) | set(b)):
            out += differences(a.get(key), b.get(key), f"{prefix}.{key}" if prefix else str(key))
        return out
    return [] if a == b else [prefix]


def parse_override(text: str) -> tuple[str, Any]:
    """Split ``key=value``; the value is read as YAML, so ``8``, ``[1, 2]`` and ``true`` have types."""
    if "=" not in text:
        raise ConfigError(f"--set expects key=value, got {text!r}")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"--set expects key=value, got {text!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {key}: value {raw!r} is not valid YAML ({exc.__class__.__name__})") from None
    return key, value


def config_from_dict(tree: dict[str, Any], overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Validate a config tree after applying ``key=value`` overrides; raises :class:`ConfigError`."""
    tree = yaml.safe_load(yaml.safe_dump(tree)) or {}
    for item in overrides:
        key, value = parse_override(item)
        _set_dotted(tree, key, value)
    try:
        return Config.model_validate(tree)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err)) from None


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a YAML config (or the defaults when ``path`` is None) and apply overrides."""
    tree: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            loaded = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a mapping of sections")
        tree = loaded or {}
    return config_from_dict(tree, overrides)
