"""Describe one structure of a sparsessp model as a bioimage.io model (format 0.5): files and ``ModelDescr``.

:func:`describe` writes every file a package holds into a staging folder (TorchScript weights, the
state dict when the network can be rebuilt from its config, test input and output arrays, a cover, a
README) and returns the description that points at them. The package's input is one sparse TL window
``(batch, channel, z, y, x)`` on the model's sparse grid (z-step ``r x 0.29`` um, pixel 0.29 um); its
output is the dense window on the 0.29 um grid, whose size the spec derives from the input's through
the axes' scales. Windows overlap by half (``halo`` = a quarter of the window per side), as
``sparsessp predict`` tiles them.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from sparsessp.export.network import FixedTaskNetwork, fixed_task_network
from sparsessp.inference import model_sparse_ratio, model_window, task_id_of
from sparsessp.structures import DESCRIPTIONS, TARGET_VOXEL_UM

if TYPE_CHECKING:
    from bioimageio.spec.model.v0_5 import ModelDescr
    from torch import nn

INPUT_ID = "tl"
NORM_EPS = 1e-6
"""bioimage.io's zero_mean_unit_variance divides by ``std + eps``; the test output is computed the same way."""

PAPER = (
    "Zheng et al., SparseSSP: 3D Subcellular Structure Prediction from Sparse-View Transmitted Light Images, "
    "ECCV 2024"
)
PAPER_URL = "https://arxiv.org/abs/2407.02159"


@dataclass(frozen=True)
class ModelFacts:
    """What a package says about the model it holds."""

    structure: str
    task_id: int
    sparse_ratio: int
    window: tuple[int, int, int]
    config: dict[str, Any] | None
    source: str


def model_facts(model: nn.Module, structure: str, source: str) -> ModelFacts:
    """Task id, sparse ratio, dense window and stored config of ``model`` for ``structure``."""
    config = getattr(model, "config", None)
    return ModelFacts(
        structure=structure,
        task_id=task_id_of(model, structure),
        sparse_ratio=model_sparse_ratio(model),
        window=model_window(model),
        config=config.model_dump(mode="json") if config is not None else None,
        source=source,
    )


def sample_input(facts: ModelFacts, seed: int = 0) -> np.ndarray:
    """A SynthCell field of view of the window's size, every r-th TL plane: ``(1, 1, D/r, H, W)`` float32."""
    from sparsessp.data.synthcell import render_fov

    depth, height, width = facts.window
    structure = facts.structure if facts.structure in DESCRIPTIONS else "dna"  # SynthCell renders the 12 only
    stack, _ = render_fov((depth, height, width), seed, structure, 0)
    sparse = stack[0, :: facts.sparse_ratio].astype(np.float32)
    return np.ascontiguousarray(sparse[None, None])


def normalise(tl: np.ndarray) -> np.ndarray:
    """Per-sample zero mean, unit variance over (channel, z, y, x), exactly as the package's preprocessing."""
    data = tl.astype(np.float64)
    mean = data.mean(axis=(1, 2, 3, 4), keepdims=True)
    std = data.std(axis=(1, 2, 3, 4), keepdims=True)
    return ((data - mean) / (std + NORM_EPS)).astype(np.float32)


def _write_cover(path: Path, tl: np.ndarray, pred: np.ndarray, facts: ModelFacts) -> None:
    """A 2:1 PNG: XY and XZ max-intensity projections of the test input (upsampled in z) and output."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from sparsessp.evaluation import projections

    sparse = normalise(tl)[0, 0]
    dense_tl = np.repeat(sparse, facts.sparse_ratio, axis=0)
    images = [("TL", *projections(dense_tl)), (facts.structure, *projections(pred[0, 0]))]
    fig, axes = plt.subplots(1, 4, figsize=(8, 4), gridspec_kw={"width_ratios": [1, 1, 1, 1]})
    for col, (name, xy, xz) in enumerate(images):
        for k, (image, proj) in enumerate(((xy, "XY"), (xz, "XZ"))):
            ax = axes[2 * col + k]
            ax.imshow(image, cmap="gray" if name == "TL" else "magma", interpolation="nearest")
            ax.set_title(f"{name} {proj}", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(f"SparseSSP {facts.structure}: max-intensity projections (z-scores)", fontsize=10)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def readme(facts: ModelFacts) -> str:
    """The package's documentation: what goes in, what comes out, how to tile, what the model saw."""
    depth, height, width = facts.window
    r = facts.sparse_ratio
    what = DESCRIPTIONS.get(facts.structure, facts.structure)
    data = (facts.config or {}).get("data", {})
    train = (facts.config or {}).get("train", {})
    model = (facts.config or {}).get("model", {})
    synth = data.get("synthcell")
    if synth:
        trained_on = (f"SynthCell (sparsessp's simulated cells): {synth.get('count')} fields of view per structure "
                      f"of {synth.get('size')} voxels, seed {synth.get('seed')}, {synth.get('photons')} photons")
    else:
        trained_on = f"the prepared dataset at `{data.get('root', 'unknown')}`"
    structures = ", ".join(data.get("structures", [facts.structure]))
    return f"""# SparseSSP: {facts.structure} ({what}) from sparse transmitted light

Predicts the 3D fluorescence of **{facts.structure}** ({what}) from a *sparse* transmitted-light (TL)
z-stack: one TL plane every {r} planes of the 0.29 um grid (sparse ratio {r}, z-step {r * TARGET_VOXEL_UM:g} um),
pixel size 0.29 um. The output is the dense stack on the isotropic 0.29 um grid ({r} output planes per input plane;
input plane k sits at output plane k * {r}).

## Output values

The output is in **z-scores** of the structure's fluorescence intensity: the model was trained on targets
standardised per volume (zero mean, unit variance), so 0 is the volume's mean intensity and 1 one standard
deviation above it. It is not a calibrated intensity and not a probability.

## Input and preprocessing

- One channel: the TL stack, axes (batch, channel, z, y, x), z-step {r * TARGET_VOXEL_UM:g} um, pixel 0.29 um.
  Resample other z-steps or pixel sizes first (`sparsessp predict` does this for you).
- Preprocessing: zero mean, unit variance over the whole volume (as in training); the package declares it,
  so bioimage.io tools apply it.

## Tiling

The network runs on fixed windows: input {depth // r} x {height} x {width} (z, y, x), output
{depth} x {height} x {width}. Larger volumes are tiled with windows overlapping by half: the declared halo
({depth // 4}, {height // 4}, {width // 4} voxels of the output per side) is what to crop (or blend away) at
window borders. sparsessp itself blends overlapping windows with a Gaussian weight (sigma = window / 8).

## Training

- Trained on {trained_on}; structures of the multi-task model: {structures}
  (this package fixes the task to {facts.structure}, task id {facts.task_id}).
- Network: topology {model.get('topology', '?')}, interpolation {model.get('interpolation', '?')},
  conditioning {model.get('conditioning', '?')}, backbone {model.get('backbone', '?')};
  training steps: {train.get('max_steps', 'until the epoch budget')}, batch {train.get('batch_size', '?')}.
- Exported from `{facts.source}` with `sparsessp export`.

The test input is a simulated SynthCell field of view; the test output is this model's prediction for it.

## Weights

`torchscript` needs only PyTorch. `pytorch_state_dict` needs the sparsessp package, which rebuilds the network
(`sparsessp.export.network.fixed_task_network`) from the stored config.

## Citation

{PAPER}. {PAPER_URL}
"""


def _traced(net: FixedTaskNetwork, example: torch.Tensor) -> torch.jit.ScriptModule:
    """TorchScript by tracing one window (shape checks become constants: the package declares fixed windows)."""
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*torch.jit.trace", category=FutureWarning)
        return torch.jit.trace(net, example, check_trace=False)


def _state_dict_rebuilds(net: FixedTaskNetwork, facts: ModelFacts) -> bool:
    """Whether ``fixed_task_network(config, task_id)`` rebuilds this network, so state-dict weights can ship."""
    if facts.config is None:
        return False
    try:
        fixed_task_network(facts.config, facts.task_id).load_state_dict(net.state_dict(), strict=True)
    except Exception:  # an imported released architecture, or a config this version cannot rebuild
        return False
    return True


def describe(
    model: nn.Module, structure: str, folder: Path, source: str, authors: Sequence[str] = ("sparsessp",)
) -> ModelDescr:
    """Write the package files of ``structure`` into ``folder`` and return their bioimage.io description."""
    from bioimageio.spec.model.v0_5 import (
        ArchitectureFromLibraryDescr,
        Author,
        AxisId,
        BatchAxis,
        ChannelAxis,
        CiteEntry,
        FileDescr,
        Identifier,
        InputTensorDescr,
        ModelDescr,
        OutputTensorDescr,
        PytorchStateDictWeightsDescr,
        SizeReference,
        SpaceInputAxis,
        SpaceOutputAxisWithHalo,
        TensorId,
        TorchscriptWeightsDescr,
        Version,
        WeightsDescr,
        ZeroMeanUnitVarianceDescr,
        ZeroMeanUnitVarianceKwargs,
    )

    from sparsessp import __version__

    facts = model_facts(model, structure, source)
    net = FixedTaskNetwork(model, facts.task_id).to("cpu").eval()
    tl = sample_input(facts)
    example = torch.from_numpy(normalise(tl))
    traced = _traced(net, example)
    with torch.no_grad():
        pred = traced(example).numpy().astype(np.float32)

    files = {name: folder / name for name in ("test_input.npy", "test_output.npy", "cover.png", "README.md",
                                             "weights_torchscript.pt", "weights_state_dict.pt")}
    np.save(files["test_input.npy"], tl)
    np.save(files["test_output.npy"], pred)
    _write_cover(files["cover.png"], tl, pred, facts)
    files["README.md"].write_text(readme(facts), encoding="utf-8")
    traced.save(str(files["weights_torchscript.pt"]))

    depth, height, width = facts.window
    r = facts.sparse_ratio
    z_in = TARGET_VOXEL_UM * r
    tl_id = TensorId(INPUT_ID)
    inputs = InputTensorDescr(
        id=tl_id,
        description=f"transmitted light, one plane every {r} planes of the 0.29 um grid (z-step {z_in:g} um)",
        axes=[
            BatchAxis(),
            ChannelAxis(channel_names=[Identifier("TL")]),
            SpaceInputAxis(id=AxisId("z"), size=depth // r, scale=z_in, unit="micrometer"),
            SpaceInputAxis(id=AxisId("y"), size=height, scale=TARGET_VOXEL_UM, unit="micrometer"),
            SpaceInputAxis(id=AxisId("x"), size=width, scale=TARGET_VOXEL_UM, unit="micrometer"),
        ],
        test_tensor=FileDescr(source=files["test_input.npy"]),
        preprocessing=[
            ZeroMeanUnitVarianceDescr(
                kwargs=ZeroMeanUnitVarianceKwargs(axes=[AxisId(a) for a in ("channel", "z", "y", "x")], eps=NORM_EPS)
            )
        ],
    )
    outputs = OutputTensorDescr(
        id=TensorId(structure),
        description=f"{structure} ({DESCRIPTIONS.get(structure, structure)}) fluorescence as z-scores, 0.29 um grid",
        axes=[
            BatchAxis(),
            ChannelAxis(channel_names=[Identifier(structure)]),
            *(
                SpaceOutputAxisWithHalo(
                    id=AxisId(axis),
                    size=SizeReference(tensor_id=tl_id, axis_id=AxisId(axis)),
                    halo=max(1, size // 4),
                    scale=TARGET_VOXEL_UM,
                    unit="micrometer",
                )
                for axis, size in zip("zyx", facts.window)
            ),
        ],
        test_tensor=FileDescr(source=files["test_output.npy"]),
    )
    torch_version = Version(torch.__version__.split("+")[0])
    state_dict = None
    if _state_dict_rebuilds(net, facts):
        torch.save(net.state_dict(), files["weights_state_dict.pt"])
        state_dict = PytorchStateDictWeightsDescr(
            source=files["weights_state_dict.pt"],
            architecture=ArchitectureFromLibraryDescr(
                import_from="sparsessp.export.network",
                callable=Identifier("fixed_task_network"),
                kwargs={"config": facts.config, "task_id": facts.task_id},
            ),
            pytorch_version=torch_version,
        )
    torchscript = TorchscriptWeightsDescr(
        source=files["weights_torchscript.pt"],
        pytorch_version=torch_version,
        parent="pytorch_state_dict" if state_dict is not None else None,
    )
    return ModelDescr(
        name=f"SparseSSP {structure} from sparse TL (r{r})",
        description=(
            f"3D {structure} ({DESCRIPTIONS.get(structure, structure)}) fluorescence, as z-scores on the 0.29 um grid, "
            f"predicted from a transmitted-light stack sampled every {r} planes (SparseSSP, sparse ratio {r})."
        ),
        authors=[Author(name=name) for name in authors],
        cite=[CiteEntry(text=PAPER, url=PAPER_URL)],
        license="MIT",
        documentation=FileDescr(source=files["README.md"]),
        covers=[FileDescr(source=files["cover.png"])],
        tags=["sparsessp", "3d", "transmitted-light", "label-free", "fluorescence-prediction", structure, "pytorch"],
        inputs=[inputs],
        outputs=[outputs],
        weights=WeightsDescr(pytorch_state_dict=state_dict, torchscript=torchscript),
        version=Version(__version__),
    )
