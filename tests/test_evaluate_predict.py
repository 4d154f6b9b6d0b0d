"""`sparsessp evaluate`, `report` and `predict` on a tiny checkpoint and a tiny hand-made dataset."""

from __future__ import annotations

import csv
import json
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from sparsessp.cli.main import main
from sparsessp.config import Config, load_config
from sparsessp.data.io import read_volume, write_ome_tiff
from sparsessp.engine.checkpoint import base_state, save_checkpoint
from sparsessp.models.registry import build_model

STRUCTURES = ("dna", "lamin_b1")
TINY = [
    "data.patch=[8,16,16]", "data.sparse_ratio=4", "model.channels=[4,8]", "model.embed_dim=8",
    f"data.structures=[{','.join(STRUCTURES)}]", "inference.window_batch=8",
]


def _volume(rng: np.random.Generator, shape: tuple[int, int, int]) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(rng.normal(size=shape), 1.5).astype(np.float32) * 50 + 300


def _make_dataset(root: Path) -> None:
    rng = np.random.default_rng(0)
    for s, structure in enumerate(STRUCTURES):
        rows = []
        for i in range(2 - s):
            tl = _volume(rng, (10, 18, 20))  # sparse 3 x 18 x 20: one batch of 8 windows
            target = np.abs(tl - 300) + rng.normal(size=tl.shape).astype(np.float32)
            path = root / "images" / f"{structure}_{i}.ome.tif"
            path.parent.mkdir(parents=True, exist_ok=True)
            write_ome_tiff(path, np.stack([tl, target]), (0.29, 0.29, 0.29), ["TL", structure])
            rows.append({"path_czi": str(path.relative_to(root)), "channel_signal": 0, "channel_target": 1,
                         "structureProteinName": structure, "colony_position": ""})
        for split in ("train", "val", "test"):
            (root / structure).mkdir(parents=True, exist_ok=True)
            with open(root / structure / f"{split}.csv", "w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)


def _make_run(run: Path, cfg: Config, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    model = build_model(cfg)
    run.mkdir(parents=True)
    cfg.save(run / "config.yaml")
    ckpt = run / "checkpoints" / "best.ckpt"
    save_checkpoint(ckpt, base_state(cfg, model.state_dict()))
    return ckpt


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("tiny")
    _make_dataset(base / "data")
    cfg = load_config(None, [*TINY, f"data.root={base / 'data'}"])
    ckpt = _make_run(base / "run", cfg)
    _make_run(base / "baseline", cfg, seed=1)
    entry = {"MSE": 2.0, "MAE": 1.0, "R2": 0.25, "pearson": 0.5}  # an evaluated Multi-Net run's results
    (base / "baseline" / "metrics.json").write_text(
        json.dumps({"overall": entry, "per_structure": dict.fromkeys(STRUCTURES, entry)}))
    return {"base": base, "run": base / "run", "baseline": base / "baseline", "ckpt": ckpt, "data": base / "data"}


def _one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and "Traceback" not in err
    return lines[0]


def test_evaluate_writes_metrics_and_report(tiny: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["evaluate", "--run", str(tiny["run"]), "--checkpoint", "best", "--baseline", str(tiny["baseline"])])
    out = capsys.readouterr().out
    assert rc == 0
    last = out.strip().splitlines()[-1]
    assert last == f"results: {tiny['run'] / 'metrics.json'}"
    result = json.loads((tiny["run"] / "metrics.json").read_text())
    assert list(result) == ["overall", "per_structure_mean", "per_structure"]
    assert set(result["per_structure"]) == set(STRUCTURES)
    for entry in [result["overall"], result["per_structure_mean"], *result["per_structure"].values()]:
        assert set(entry) == {"MSE", "MAE", "R2", "pearson"}
    with open(tiny["run"] / "evaluation" / "test" / "volumes.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["structure"] for r in rows] == ["dna", "dna", "lamin_b1"]
    assert all(int(r["depth"]) == 10 and int(r["height"]) == 18 and int(r["width"]) == 20 for r in rows)
    dna = np.mean([float(r["MSE"]) for r in rows[:2]])
    assert abs(result["per_structure"]["dna"]["MSE"] - dna) < 1e-6 * max(1.0, dna)
    for key in ("MSE", "R2"):  # two dna volumes, one lamin_b1: the two means differ
        every = np.mean([float(r[key]) for r in rows])
        assert abs(result["overall"][key] - every) < 1e-6 * max(1.0, abs(every))
        by_structure = np.mean([result["per_structure"][s][key] for s in STRUCTURES])
        assert abs(result["per_structure_mean"][key] - by_structure) < 1e-9 * max(1.0, abs(by_structure))
        assert abs(every - by_structure) > 1e-4 * max(1.0, abs(every))
    assert "all volumes" in out and "mean over structures" in out and "SSIM" in out and "ΔMSE %" in out
    gains = json.loads((tiny["run"] / "evaluation" / "test" / "improvement.json").read_text())
    base = json.loads((tiny["baseline"] / "metrics.json").read_text())
    expected = 100 * (base["overall"]["MSE"] - result["overall"]["MSE"]) / base["overall"]["MSE"]
    assert abs(gains["overall"]["MSE"] - expected) < 1e-9

    report_dir = tiny["base"] / "report"
    assert main(["report", str(tiny["run"]), str(tiny["baseline"]), "--out", str(report_dir)]) == 0
    text = (report_dir / "report.md").read_text()
    assert f"{result['overall']['R2']:.4f}" in text and f"{result['per_structure']['lamin_b1']['MAE']:.4f}" in text
    assert (report_dir / "run_mips.png").stat().st_size > 1000 and (report_dir / "report.html").is_file()
    assert "Relative improvement" in text


def test_evaluate_user_errors(tiny: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "--run", str(tiny["base"] / "missing")]) == 2
    assert "run folder not found" in _one_error_line(capsys.readouterr().err)
    assert main(["evaluate", "--run", str(tiny["run"]), "--checkpoint", "last"]) == 2
    assert "checkpoint not found" in _one_error_line(capsys.readouterr().err)
    assert main(["evaluate", "--run", str(tiny["run"]), "--baseline", str(tiny["data"])]) == 2
    assert "no evaluation results" in _one_error_line(capsys.readouterr().err)
    assert main(["report", str(tiny["data"]), "--out", str(tiny["base"] / "r2")]) == 2
    _one_error_line(capsys.readouterr().err)


def _ome(path: Path, data: np.ndarray, z_um: float | None, names: list[str] | None = None) -> Path:
    write_ome_tiff(path, data, (z_um, 0.29, 0.29), names)
    return path


def test_predict_z_step_from_metadata(tiny: dict[str, Path], tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(3)
    src = _ome(tmp_path / "in" / "cell.ome.tif", _volume(rng, (5, 20, 24)), 1.16)
    out = tmp_path / "out"
    rc = main(["predict", str(src), "--model", str(tiny["ckpt"]), "--structures", "dna,lamin_b1",
               "--out", str(out), "--with-input", "--preview"])
    assert rc == 0, capsys.readouterr().err
    for structure in STRUCTURES:
        image = read_volume(out / f"cell_{structure}.ome.tif", validate=False)
        assert image.data.shape == (2, 20, 20, 24) and image.data.dtype == np.float32
        assert image.channel_names == [structure, "TL"]
        assert image.physical_sizes == pytest.approx((0.29, 0.29, 0.29))
        with tifffile.TiffFile(out / f"cell_{structure}.ome.tif") as tif:
            assert "z-scores" in tif.ome_metadata
    assert (out / "cell_preview.png").stat().st_size > 1000

    keep = tmp_path / "keep"
    assert main(["predict", str(src.parent), "--model", str(tiny["ckpt"]), "--structures", "dna", "--out",
                 str(keep), "--keep-input-grid", "--dtype", "uint16"]) == 0
    image = read_volume(keep / "cell_dna.ome.tif", validate=False)
    assert image.data.shape == (1, 5, 20, 24) and image.physical_sizes == pytest.approx((1.16, 0.29, 0.29))
    with tifffile.TiffFile(keep / "cell_dna.ome.tif") as tif:
        assert tif.series[0].dtype == np.uint16

    dense = _ome(tmp_path / "dense.ome.tif", _volume(rng, (9, 16, 16)), None)
    capsys.readouterr()
    assert main(["predict", str(dense), "--model", str(tiny["ckpt"]), "--structures", "dna", "--out", str(out),
                 "--z-step", "0.29"]) == 0
    assert read_volume(out / "dense_dna.ome.tif", validate=False).data.shape == (1, 12, 16, 16)
    odd = _ome(tmp_path / "odd.ome.tif", _volume(rng, (6, 16, 16)), 1.0)
    assert main(["predict", str(odd), "--model", str(tiny["ckpt"]), "--structures", "dna", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert err.count("warning:") == 1 and "resampled" in err


def _bad_inputs(tmp_path: Path, tiny: dict[str, Path]) -> list[tuple[list[str], str]]:
    rng = np.random.default_rng(4)
    good = _ome(tmp_path / "good.ome.tif", _volume(rng, (4, 16, 16)), 1.16)
    flat = tmp_path / "flat.tif"
    tifffile.imwrite(flat, _volume(rng, (1, 16, 16))[0])
    two = _ome(tmp_path / "two.ome.tif", np.stack([_volume(rng, (4, 16, 16))] * 2), 1.16, ["TL", "DNA"])
    const = _ome(tmp_path / "const.ome.tif", np.full((4, 16, 16), 7, np.float32), 1.16)
    nan = _volume(rng, (4, 16, 16))
    nan[1, 2, 3] = np.nan
    nan_file = _ome(tmp_path / "nan.ome.tif", nan, 1.16)
    sparse = _ome(tmp_path / "sparse.ome.tif", _volume(rng, (4, 16, 16)), 2.32)
    foreign = tmp_path / "foreign.pth"
    torch.save({"model": {"w": torch.zeros(2)}, "metas": {"epoch": 0}}, foreign)
    pickled = tmp_path / "pickled.ckpt"
    pickled.write_bytes(pickle.dumps(Path("x")))
    other = tmp_path / "other.ckpt"
    other_cfg = load_config(None, [*TINY[:-2], "data.structures=[tom20]"])
    save_checkpoint(other, base_state(other_cfg, {"w": torch.zeros(1)}))
    ckpt = str(tiny["ckpt"])
    return [
        ([str(good), "--model", ckpt, "--structures", "tom20"], "does not know structure 'tom20'"),
        ([str(good), "--model", ckpt, "--structures", ""], "at least one structure"),
        ([str(flat), "--model", ckpt, "--structures", "dna"], "2D image"),
        ([str(two), "--model", ckpt, "--structures", "dna"], "--channel"),
        ([str(two), "--model", ckpt, "--structures", "dna", "--channel", "5"], "out of range"),
        ([str(const), "--model", ckpt, "--structures", "dna"], "constant"),
        ([str(nan_file), "--model", ckpt, "--structures", "dna"], "NaN"),
        ([str(sparse), "--model", ckpt, "--structures", "dna"], "sparser than the model"),
        ([str(good), str(nan_file), "--model", ckpt, "--structures", "dna"], "NaN"),
        ([str(good), "--model", str(foreign), "--structures", "dna"], "not a sparsessp checkpoint"),
        ([str(good), "--model", str(pickled), "--structures", "dna"], "pickle"),
        ([str(good), "--model", str(other), "--structures", "dna"], "holds weights of a different model"),
        ([str(tmp_path / "nope.tif"), "--model", ckpt, "--structures", "dna"], "not found"),
        ([str(tiny["base"] / "run" / "checkpoints"), "--model", ckpt, "--structures", "dna"], "no image files"),
    ]


def test_predict_bad_inputs_exit_2_one_line_no_file(tiny: dict[str, Path], tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    for argv, message in _bad_inputs(tmp_path, tiny):
        rc = main(["predict", *argv, "--out", str(out)])
        line = _one_error_line(capsys.readouterr().err)
        assert rc == 2, argv
        assert message in line, (argv, line)
        assert not out.exists() or not any(out.iterdir()), (argv, list(out.iterdir()))


def test_predict_refuses_existing_output(tiny: dict[str, Path], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    src = _ome(tmp_path / "a.ome.tif", _volume(np.random.default_rng(5), (4, 16, 16)), 1.16)
    out = tmp_path / "out"
    out.mkdir()
    (out / "a_lamin_b1.ome.tif").write_bytes(b"keep me")
    argv = ["predict", str(src), "--model", str(tiny["ckpt"]), "--structures", "dna,lamin_b1", "--out", str(out)]
    assert main(argv) == 2
    assert re.search(r"a_lamin_b1\.ome\.tif exists.*--overwrite", _one_error_line(capsys.readouterr().err))
    assert sorted(p.name for p in out.iterdir()) == ["a_lamin_b1.ome.tif"]
    assert (out / "a_lamin_b1.ome.tif").read_bytes() == b"keep me"
    assert main([*argv, "--overwrite"]) == 0
    assert read_volume(out / "a_lamin_b1.ome.tif").data.shape == (1, 16, 16, 16)
