"""Importers of released weights reproduce the released code's outputs (shared golden fixtures).

The fixtures were made by running the authors' code (random weights, float32, CPU). Agreement asked
for: relative L2 error below 1e-5.

One fact about the SparseSSP fixture that its README gets backwards: the saved checkpoint holds the
BatchNorm running statistics AFTER the train-mode call that produced ``y_train_mode`` (every
``num_batches_tracked`` is 1), while ``eval_task*`` were computed BEFORE that call. The eval tests undo
that one update (momentum 0.1): the batch statistics come from replaying the train-mode call with
momentum 1, and ``before = (saved - 0.1 * batch) / 0.9``. The sliding-window output was computed with
the saved statistics, so it needs no such step.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from sparsessp.errors import CheckpointError, UserError
from sparsessp.models.compat import build_from_checkpoint, import_weights
from sparsessp.models.conditioning.mode import ROUTES, MoDEConv

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "official"
RELEASED = FIXTURES / "sparsessp_repmode_3to2d_tiny.ckpt.pth"
TOL = 1e-5

pytestmark = [
    pytest.mark.skipif(not (FIXTURES / "MANIFEST.json").is_file(), reason=f"shared fixtures not found at {FIXTURES}"),
    pytest.mark.usefixtures("one_thread"),
]


def rel(out: Tensor, ref: Tensor) -> float:
    return float(torch.linalg.vector_norm(out.double() - ref.double()) / torch.linalg.vector_norm(ref.double()))


@pytest.fixture(scope="module")
def released_io() -> dict:
    return torch.load(FIXTURES / "sparsessp_repmode_3to2d_tiny.io.pth", weights_only=True)


def released(route: str | None = None) -> nn.Module:
    return import_weights(RELEASED, "sparsessp-released", sparse_ratio=4, patch=(16, 32, 32), route=route)


def undo_one_batchnorm_update(model: nn.Module, x: Tensor, tasks: Tensor) -> None:
    """Running statistics as they were before one train-mode call on (x, tasks) (see the module docstring)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.running_mean.clone(), m.running_var.clone(), m.momentum) for m in norms]
    for m in norms:
        m.momentum = 1.0
    model.train()
    with torch.no_grad():
        model(x, tasks)
    for m, (mean, var, momentum) in zip(norms, saved):
        m.running_mean.copy_((mean - 0.1 * m.running_mean) / 0.9)
        m.running_var.copy_((var - 0.1 * m.running_var) / 0.9)
        m.momentum = momentum
    model.eval()


def test_released_sparsessp_eval_outputs(released_io: dict) -> None:
    model = released()
    assert not model.training
    assert (model.sparse_ratio, tuple(model.patch), len(model.structures)) == (4, (16, 32, 32), 12)
    assert model.config.model.topology == "3to2d" and model.config.model.conditioning == "repmode"
    undo_one_batchnorm_update(model, released_io["x_train"], released_io["t_train"])
    x = released_io["x_eval"]
    with torch.no_grad():
        for task in (0, 3, 11):
            out = model(x, torch.full((len(x),), task))
            assert rel(out, released_io[f"eval_task{task}"]) < TOL, task
        mixed = model(x, torch.tensor([3, 11]))  # each sample its own kernel (the release would use task 3's)
    assert rel(mixed[1:], released_io["eval_task11"][1:]) < TOL


def test_released_sparsessp_train_mode_output(released_io: dict) -> None:
    """Per-task folding (``by_task``) does the release's own arithmetic; see the next test for the others."""
    model = released("by_task").train()
    with torch.no_grad():
        out = model(released_io["x_train"], released_io["t_train"])
    assert rel(out, released_io["y_train_mode"]) < TOL


def test_released_sparsessp_train_mode_routes_agree_in_float64(released_io: dict) -> None:
    """All routes compute one function. In float32 they differ from the fixture by up to ~1e-5 only
    because this tiny batch-normalised net (batch statistics over a few voxels) amplifies rounding:
    the fixture itself is 8.8e-6 away from the float64 result."""
    outs = {}
    for route in ROUTES:
        model = released(route).double().train()
        with torch.no_grad():
            outs[route] = model(released_io["x_train"].double(), released_io["t_train"])
    for route in ROUTES:
        assert rel(outs[route], outs[ROUTES[0]]) < 1e-10, route
    assert rel(outs[ROUTES[0]], released_io["y_train_mode"]) < 2e-5


def test_bottle_neck_alias_in_a_bare_state_dict(tmp_path: Path, released_io: dict) -> None:
    ckpt = torch.load(RELEASED, weights_only=True)
    renamed = {k.replace("bottle.", "bottle_neck.", 1) if k.startswith("bottle.") else k: v
               for k, v in ckpt["model"].items()}
    torch.save(renamed, tmp_path / "published.pth")  # bare state dict with the published key names
    model = import_weights(tmp_path / "published.pth", "sparsessp-released", sparse_ratio=4)
    with torch.no_grad():
        out = model(released_io["x_train"][:1], torch.tensor([5]))
        ref = released()(released_io["x_train"][:1], torch.tensor([5]))
    assert torch.equal(out, ref)


def test_released_sparsessp_sliding_window(released_io: dict) -> None:
    inference = pytest.importorskip("sparsessp.inference")
    r = int(released_io["sparse_ratio"])
    model = released()
    out = inference.sliding_window(
        model, released_io["volume"][:, :, ::r], int(released_io["sliding_window_task"]), (16, 32, 32), r,
        overlap=0.5, blend="released", batch_size=int(released_io["sliding_window_batch"]),
    )
    assert rel(out, released_io["y_sliding_window"]) < TOL


def test_repmode_3d_eval_outputs() -> None:
    io = torch.load(FIXTURES / "repmode_3d_tiny.io.pth", weights_only=True)
    model = import_weights(FIXTURES / "repmode_3d_tiny.state_dict.pth", "repmode")
    assert model.sparse_ratio == 1 and model.config.model.topology == "3d"
    with torch.no_grad():
        for task in (0, 6):
            assert rel(model(io["x"], torch.full((2,), task)), io[f"eval_task{task}"]) < TOL, task


def test_fnet_output() -> None:
    io = torch.load(FIXTURES / "fnet_3d_tiny.io.pth", weights_only=True)
    model = import_weights(FIXTURES / "fnet_3d_tiny.state_dict.pth", "fnet", structures=["dna"])
    assert model.structures == ["dna"] and model.config.model.conditioning == "none"
    with torch.no_grad():
        assert rel(model(io["x"], torch.zeros(2, dtype=torch.long)), io["y"]) < TOL


def test_checkpoint_round_trip_through_load_model(tmp_path: Path, released_io: dict) -> None:
    from sparsessp.engine.checkpoint import imported_state, load_model, save_checkpoint

    model = released()
    save_checkpoint(tmp_path / "ours.ckpt", imported_state(model))
    loaded = load_model(tmp_path / "ours.ckpt")
    assert type(loaded) is type(model) and not loaded.training
    assert (loaded.sparse_ratio, tuple(loaded.patch), loaded.structures) == (4, (16, 32, 32), model.structures)
    x, tasks = released_io["x_eval"], torch.tensor([0, 7])
    with torch.no_grad():
        assert torch.equal(loaded(x, tasks), model(x, tasks))
    assert build_from_checkpoint({"config": {}, "model": {}}) is None


def test_cli_writes_a_loadable_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "fnet.ckpt"
    cmd = [sys.executable, "-m", "sparsessp.cli.main", "import-weights", "--source", "fnet", "--structures", "dna",
           str(FIXTURES / "fnet_3d_tiny.state_dict.pth"), str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "fnet" in done.stdout and out.is_file()
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and again.stderr.startswith("error:") and "--overwrite" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("source", "kwargs", "error", "message"),
    [
        ("repmode", {}, CheckpointError, "encoder_block1"),
        ("fnet", {}, UserError, "--structures"),
        ("sparsessp-released", {"structures": ["a", "b"]}, UserError, "12 tasks"),
        ("sparsessp-released", {"patch": (32, 32, 32)}, UserError, "16 slices"),
        ("nonsense", {}, UserError, "unknown weights source"),
    ],
)
def test_wrong_weights_or_arguments_are_one_line_errors(
    source: str, kwargs: dict, error: type[Exception], message: str
) -> None:
    path = FIXTURES / ("fnet_3d_tiny.state_dict.pth" if source in ("repmode", "fnet") else RELEASED.name)
    with pytest.raises(error, match=message) as info:
        import_weights(path, source, **kwargs)
    assert "\n" not in str(info.value)


def test_pickled_objects_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"model": {"w": torch.ones(1)}, "hook": Path("x")}, path)
    with pytest.raises(CheckpointError, match="pickled"):
        import_weights(path, "fnet", structures=["dna"])


def test_mode_layers_are_ours() -> None:
    model = released()
    modes = [m for m in model.modules() if isinstance(m, MoDEConv)]
    assert len(modes) == 24  # 8 encoder + 2 bottleneck + 5 gates + 8 decoder + 1 head
    two_d = [m for m in modes if m.dims == 2]
    assert all(torch.allclose(m.pool3, torch.full((3, 3), 1 / 27)) for m in two_d)
