"""`sparsessp export`: bioimage.io packages that bioimage.io's own model test passes, and refused bad input."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from sparsessp.cli.main import main
from sparsessp.config import load_config
from sparsessp.engine.checkpoint import base_state, load_model, save_checkpoint
from sparsessp.models.registry import build_model

os.environ.setdefault("BIOIMAGEIO_PERFORM_IO_CHECKS", "0")

QUICKSTART = Path(__file__).resolve().parents[1] / "src" / "sparsessp" / "configs" / "quickstart.yaml"


def _one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and "Traceback" not in err
    return lines[0]


@pytest.fixture(scope="module")
def untrained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint of the quickstart network (random weights): enough for the checks before any export."""
    cfg = load_config(QUICKSTART, ["data.structures=[dna,lamin_b1]"])
    path = tmp_path_factory.mktemp("untrained") / "model.ckpt"
    save_checkpoint(path, base_state(cfg, build_model(cfg).state_dict()))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The quickstart config trained for 3 steps on a small SynthCell set (the package's test, not its quality)."""
    from sparsessp.data.synthcell import ensure_dataset
    from sparsessp.engine.trainer import train

    base = tmp_path_factory.mktemp("trained")
    cfg = load_config(QUICKSTART, [
        f"data.root={base / 'data'}", "data.structures=[dna,lamin_b1]", "data.synthcell.size=[32,64,64]",
        "data.synthcell.count=3", "data.samples_per_epoch=8", "train.max_steps=3", "train.batch_size=2",
        "train.warmup_steps=0", "train.val_every=100", "train.accelerator=cpu",
    ])
    ensure_dataset(cfg)
    return train(cfg, base / "run") / "checkpoints" / "best.ckpt"


@pytest.mark.slow
def test_export_writes_packages_that_bioimageio_tests_as_passed(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bioimageio.core import create_prediction_pipeline
    from bioimageio.core.digest_spec import get_test_inputs, get_test_outputs
    from bioimageio.spec import load_model_description

    from sparsessp.export import run_model_test

    out = tmp_path / "bmz"
    assert main(["export", str(trained), "--structures", "dna,lamin_b1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    zips = {s: out / f"sparsessp_{s}.bioimageio.zip" for s in ("dna", "lamin_b1")}
    for structure, path in zips.items():
        assert f"wrote {path} ({structure}; bioimage.io model test passed)" in printed
        with zipfile.ZipFile(path) as zf:
            assert {"rdf.yaml", "weights_torchscript.pt", "weights_state_dict.pt", "test_input.npy",
                    "test_output.npy", "cover.png", "README.md"} <= set(zf.namelist())
            rdf = yaml.safe_load(zf.read("rdf.yaml"))
            doc = zf.read("README.md").decode()
        assert rdf["format_version"].startswith("0.5")
        (tl,), (pred,) = rdf["inputs"], rdf["outputs"]
        assert [a.get("id", a["type"]) for a in tl["axes"]] == ["batch", "channel", "z", "y", "x"]
        z_in, y_in, x_in = tl["axes"][2:]
        assert (z_in["size"], z_in["scale"], y_in["scale"], x_in["scale"]) == (8, pytest.approx(1.16), 0.29, 0.29)
        norm = [step for step in tl["preprocessing"] if step["id"] == "zero_mean_unit_variance"]
        assert norm[0]["kwargs"]["axes"] == ["channel", "z", "y", "x"]  # per volume, as in training
        assert pred["id"] == structure and pred["axes"][1]["channel_names"] == [structure]
        assert [(a["scale"], a["halo"], a["size"]["axis_id"]) for a in pred["axes"][2:]] == [
            (0.29, 8, "z"), (0.29, 16, "y"), (0.29, 16, "x")]
        assert "z-scores" in doc and "sparse ratio 4" in doc and "SynthCell" in doc
        assert "SparseSSP" in rdf["cite"][0]["text"] and "ECCV 2024" in rdf["cite"][0]["text"]

    # bioimage.io's own test of the saved zip, and a reload that reproduces the test output with both weights
    summary = run_model_test(zips["lamin_b1"])
    assert summary.status == "passed", summary.format()
    descr = load_model_description(zips["lamin_b1"], perform_io_checks=False)
    inputs, expected = get_test_inputs(descr), get_test_outputs(descr)
    assert tuple(expected.members["lamin_b1"].data.shape) == (1, 1, 32, 64, 64)  # 8 planes at 1.16 um -> 32 at 0.29
    for weights in ("torchscript", "pytorch_state_dict"):
        with create_prediction_pipeline(descr, weight_format=weights, devices=["cpu"]) as pipeline:
            got = pipeline.predict_sample_without_blocking(inputs, skip_input_padding=True, skip_output_cropping=True)
        np.testing.assert_allclose(got.members["lamin_b1"].data.values, expected.members["lamin_b1"].data.values,
                                   atol=1e-4, rtol=1e-4)

    # the packaged output is sparsessp's own model for that structure (task fixed), not another task's
    model = load_model(trained)
    with zipfile.ZipFile(zips["dna"]) as zf:
        tl_array = np.load(zf.open("test_input.npy"))
        packaged = np.load(zf.open("test_output.npy"))
    x = torch.from_numpy((tl_array - tl_array.mean()) / (tl_array.std() + 1e-6))
    with torch.no_grad():
        own = model(x, torch.tensor([model.structures.index("dna")])).numpy()
        other = model(x, torch.tensor([model.structures.index("lamin_b1")])).numpy()
    np.testing.assert_allclose(packaged, own, atol=1e-4, rtol=1e-4)
    assert np.abs(packaged - other).max() > 1e-3


def test_export_refuses_a_file_that_is_not_a_sparsessp_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = tmp_path / "other.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, fake)
    out = tmp_path / "bmz"
    assert main(["export", str(fake), "--structures", "dna", "--out", str(out)]) == 2
    assert "is not a sparsessp checkpoint" in _one_error_line(capsys.readouterr().err)
    assert not out.exists()


def test_export_refuses_an_unknown_structure(untrained: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bmz"
    assert main(["export", str(untrained), "--structures", "dna,tom20", "--out", str(out)]) == 2
    assert "does not know structure 'tom20'" in _one_error_line(capsys.readouterr().err)
    assert not out.exists()


def test_export_refuses_an_existing_package_without_overwrite(untrained: Path, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bmz"
    out.mkdir()
    existing = out / "sparsessp_lamin_b1.bioimageio.zip"
    existing.write_bytes(b"keep me")
    assert main(["export", str(untrained), "--structures", "dna,lamin_b1", "--out", str(out)]) == 2
    assert "use --overwrite" in _one_error_line(capsys.readouterr().err)
    assert sorted(p.name for p in out.iterdir()) == [existing.name] and existing.read_bytes() == b"keep me"
    assert main(["export", str(untrained), "--structures", "dna,dna", "--out", str(out)]) == 2
    assert "listed twice" in _one_error_line(capsys.readouterr().err)
