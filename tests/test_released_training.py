"""The released architectures train through `sparsessp train` (model.architecture) and start from released
weights (train.init_from): the golden fixtures' tiny networks on a tiny SynthCell-12."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from conftest import tiny_train_config
from sparsessp.cli.main import main
from sparsessp.config import load_config
from sparsessp.engine.checkpoint import (
    base_state,
    imported_state,
    load_checkpoint,
    load_model,
    load_weights,
    save_checkpoint,
)
from sparsessp.errors import CheckpointError, ConfigError
from sparsessp.models.compat import import_weights, initial_state_dict
from sparsessp.models.registry import ARCHITECTURES, build_model, resolve
from sparsessp.structures import STRUCTURES

pytestmark = pytest.mark.usefixtures("one_thread")

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "official"
LR = 1e-4
STEPS = 2

CASES = {  # architecture -> (architecture_options of the fixture's widths, fixture file)
    "fnet": ({"mult_chan": 4, "depth": 4}, "fnet_3d_tiny.state_dict.pth"),
    "repmode": ({"mult_chan": 4, "kernel_size": 5}, "repmode_3d_tiny.state_dict.pth"),
    "sparsessp-released": ({"mult_chan": 4, "decoder_mult_chan": 4, "kernel_size": 5},
                           "sparsessp_repmode_3to2d_tiny.ckpt.pth"),
}


def _fixture(name: str) -> Path:
    path = FIXTURES / name
    if not path.is_file():
        pytest.skip(f"shared fixtures not found at {FIXTURES}")
    return path


def _released_state(arch: str) -> dict[str, torch.Tensor]:
    """The fixture's weights under our module's names (the importer's own renaming)."""
    obj = torch.load(_fixture(CASES[arch][1]), weights_only=True)
    state = obj.get("model", obj)
    return resolve(ARCHITECTURES, arch).convert_state_dict(dict(state))


@pytest.fixture(scope="module")
def config_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny SynthCell-12 (the fixtures' RepMode networks have twelve tasks), windows 16 x 32 x 32, r = 4."""
    folder = tmp_path_factory.mktemp("released")
    path = tiny_train_config(folder, list(STRUCTURES), seed=0, samples_per_epoch=4, max_steps=STEPS, lr=LR,
                             val_volumes=1)
    tree = yaml.safe_load(path.read_text())
    tree["data"].update(patch=[16, 32, 32], sparse_ratio=4)
    path.write_text(yaml.safe_dump(tree))
    return path


def _sets(arch: str, *extra: str) -> list[str]:
    options = CASES[arch][0]
    text = "{" + ", ".join(f"{k}: {v}" for k, v in options.items()) + "}"
    return [f"model.architecture={arch}", f"model.architecture_options={text}", *extra]


def _argv(config: Path, out: Path, sets: list[str]) -> list[str]:
    return ["train", "--config", str(config), "--out", str(out), *(a for s in sets for a in ("--set", s))]


@pytest.mark.parametrize("arch", sorted(CASES))
def test_init_from_loads_the_released_weights_exactly(arch: str, config_file: Path, tmp_path: Path) -> None:
    released = _released_state(arch)
    cfg = load_config(config_file, _sets(arch, f"train.init_from={_fixture(CASES[arch][1])}"))
    model = build_model(cfg)
    assert type(model).__name__ == resolve(ARCHITECTURES, arch).__name__
    assert model.state_dict().keys() == released.keys()
    load_weights(model, initial_state_dict(cfg.train.init_from, model), cfg.train.init_from)
    for key, value in model.state_dict().items():
        assert torch.equal(value, released[key]), key
    # the same weights through a sparsessp checkpoint of the imported network
    ckpt = tmp_path / "imported.ckpt"
    imported = import_weights(_fixture(CASES[arch][1]), arch, structures=["dna"] if arch == "fnet" else None)
    assert imported.config.model.architecture == arch
    assert imported.config.model.architecture_spec() == cfg.model.architecture_spec()
    save_checkpoint(ckpt, imported_state(imported))
    fresh = build_model(cfg)
    load_weights(fresh, initial_state_dict(ckpt, fresh), ckpt)
    for key, value in fresh.state_dict().items():
        assert torch.equal(value, released[key]), key


def test_released_checkpoint_with_bottle_neck_keys_and_wrong_architecture(config_file: Path, tmp_path: Path) -> None:
    obj = torch.load(_fixture(CASES["sparsessp-released"][1]), weights_only=True)
    published = {k.replace("bottle.", "bottle_neck.", 1): v for k, v in obj["model"].items()}
    assert any(k.startswith("bottle_neck.") for k in published)
    path = tmp_path / "published.pth"
    torch.save({"model": published, "optimizer": {}, "metas": {"epoch": 0}}, path)
    cfg = load_config(config_file, _sets("sparsessp-released"))
    model = build_model(cfg)
    load_weights(model, initial_state_dict(path, model), path)
    released = _released_state("sparsessp-released")
    assert all(torch.equal(v, released[k]) for k, v in model.state_dict().items())
    ours = build_model(load_config(config_file, [f"train.init_from={path}", "model.embed_dim=16"]))
    with pytest.raises(CheckpointError, match="holds weights of a different model"):
        load_weights(ours, initial_state_dict(path, ours), path)
    with pytest.raises(ConfigError, match="multiples of 16"):
        load_config(config_file, [*_sets("repmode"), "data.patch=[8, 16, 16]"])


@pytest.mark.parametrize("arch", sorted(CASES))
def test_released_architecture_fine_tunes_through_train(arch: str, config_file: Path, tmp_path: Path) -> None:
    released = _released_state(arch)
    run = tmp_path / "run"
    sets = _sets(arch, f"train.init_from={_fixture(CASES[arch][1])}")
    assert main(_argv(config_file, run, sets)) == 0
    ckpt = load_checkpoint(run / "checkpoints" / "last.ckpt")
    assert ckpt["step"] == STEPS and ckpt["config"]["model"]["architecture"] == arch
    params = dict(build_model(load_config(config_file, sets)).named_parameters())
    moved = 0.0
    for key in params:  # Adam moves a weight by at most about lr per step: the run started from the fixture
        delta = float((ckpt["model"][key] - released[key]).abs().max())
        assert delta <= 1.01 * LR * STEPS, (key, delta)
        moved = max(moved, delta)
    assert moved > 0.5 * LR  # and it trained
    model = load_model(run / "checkpoints" / "best.ckpt")
    assert type(model).__name__ == resolve(ARCHITECTURES, arch).__name__
    with torch.no_grad():
        out = model(torch.randn(2, 1, 4, 32, 32), torch.tensor([0, 5]))
    assert out.shape == (2, 1, 16, 32, 32) and bool(torch.isfinite(out).all())


def test_released_architecture_trains_from_scratch(config_file: Path, tmp_path: Path) -> None:
    run = tmp_path / "scratch"
    assert main(_argv(config_file, run, _sets("sparsessp-released", "train.max_steps=3"))) == 0
    first = load_checkpoint(run / "checkpoints" / "last.ckpt")
    assert first["step"] == 3
    cfg = load_config(config_file, _sets("sparsessp-released"))
    init = base_state(cfg, build_model(cfg).state_dict())
    save_checkpoint(tmp_path / "init.ckpt", init)
    assert main(_argv(config_file, tmp_path / "again", _sets("sparsessp-released", "train.max_steps=3",
                                                             f"train.init_from={tmp_path / 'init.ckpt'}"))) == 0
    assert load_checkpoint(tmp_path / "again" / "checkpoints" / "last.ckpt")["step"] == 3


def test_default_released_architecture_is_the_full_size_release() -> None:
    import json

    from sparsessp.models.compat.blocks import rename_mode_keys
    from sparsessp.models.compat.sparsessp_released import _alias

    manifest = json.loads(_fixture("MANIFEST.json").read_text())["sparsessp_repmode_3to2d_released_full_size"]
    cfg = load_config(None, ["model.architecture=sparsessp-released", "data.sparse_ratio=8"])
    with torch.device("meta"):
        model = build_model(cfg)
    assert sum(p.numel() for p in model.parameters()) == manifest["params"] == 198_883_264
    released = {name: torch.empty(shape, device="meta") for name, shape in manifest["state_dict"].items()}
    converted = rename_mode_keys(_alias(released))  # the importer's renaming (its value checks need real tensors)
    ours = model.state_dict()
    assert converted.keys() == ours.keys()
    assert all(tuple(converted[k].shape) == tuple(ours[k].shape) for k in ours)
