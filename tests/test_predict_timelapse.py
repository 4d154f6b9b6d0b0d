"""`sparsessp predict` on real acquisitions: time-lapses in OME-TIFF, CZI and ImageJ hyperstacks into
OME-Zarr read back by the field's readers, block-wise = whole-volume, two processes = one, resume after a
kill, file permissions, and the one-line answers a new user met."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

from conftest import random_checkpoint
from sparsessp.cli.main import main
from sparsessp.config import load_config
from sparsessp.engine.checkpoint import base_state, load_model, save_checkpoint
from sparsessp.inference import predict_volume
from sparsessp.models.registry import build_model
from sparsessp.precision import cpu_has_bf16
from sparsessp.predict import PredictOptions, predict_files

TINY = [
    "data.patch=[8,16,16]", "data.sparse_ratio=4", "model.channels=[4,8]", "model.embed_dim=8",
    "data.structures=[dna,lamin_b1]", "inference.window_batch=8",
]
ROOT = Path(__file__).resolve().parents[1]


def _volume(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    return (gaussian_filter(rng.normal(size=shape), 1.5) * 50 + 300).astype(np.float32)


@pytest.fixture(autouse=True)
def small_pyramid(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pyramid levels down to 16 pixels, so small (fast) test fields get several levels."""
    from sparsessp.predict import writers

    monkeypatch.setattr(writers, "PYRAMID_MIN", 16)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return random_checkpoint(tmp_path_factory.mktemp("model"), TINY)


def _ome_timelapse(path: Path, data: np.ndarray, z_step: float = 1.16, dt: float = 30.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, data, ome=True, photometric="minisblack", metadata={
        "axes": "TZYX", "PhysicalSizeZ": z_step, "PhysicalSizeY": 0.29, "PhysicalSizeX": 0.29,
        "TimeIncrement": dt, "TimeIncrementUnit": "s"})
    return path


def _check_ome_zarr(path: Path, shape: tuple[int, ...], dt: float) -> None:
    """Shape, T, scale and pyramid of an output as ome-zarr and bioio's OME-Zarr reader see them."""
    from bioio import BioImage
    from bioio_ome_zarr import Reader as OmeZarrReader
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    node = next(iter(Reader(parse_url(str(path)))()))
    levels = node.data
    assert len(levels) >= 2, "a pyramid napari can browse"
    assert tuple(levels[0].shape) == shape
    assert tuple(levels[1].shape[-2:]) == ((shape[-2] + 1) // 2, (shape[-1] + 1) // 2)
    transforms = node.metadata["coordinateTransformations"]
    assert transforms[0][0]["scale"] == pytest.approx([dt, 1.0, 0.29, 0.29, 0.29])
    assert transforms[1][0]["scale"][-1] == pytest.approx(0.58)
    assert [a["name"] for a in node.metadata["axes"]] == list("tczyx")
    image = BioImage(path, reader=OmeZarrReader)
    assert tuple(image.shape) == shape
    assert pytest.approx(0.29) == image.physical_pixel_sizes.Z
    assert pytest.approx(0.29) == image.physical_pixel_sizes.X
    assert np.isfinite(np.asarray(levels[0][-1, 0])).all()


def _write_ome_stack(path: Path, volume: np.ndarray) -> None:
    """One OME-TIFF z-stack at r = 4 (z-step 1.16 um) on the 0.29 um x-y grid."""
    tifffile.imwrite(path, volume, ome=True, metadata={"axes": "ZYX", "PhysicalSizeZ": 1.16,
                                                       "PhysicalSizeY": 0.29, "PhysicalSizeX": 0.29})


def _zarr_level0(path: Path) -> np.ndarray:
    import zarr

    return np.asarray(zarr.open_group(str(path), mode="r")["0"][:])


def test_ome_tiff_timelapse_to_ome_zarr(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _ome_timelapse(tmp_path / "in" / "movie.ome.tif", np.stack([_volume((4, 40, 36), t) for t in range(3)]))
    out = tmp_path / "out"
    rc = main(["predict", str(src), "--model", str(ckpt), "--structures", "dna,lamin_b1", "--out", str(out),
               "--format", "ome-zarr", "--merge", "--quiet", "--precision", "fp32"])
    assert rc == 0, capsys.readouterr().err
    result = out / "movie_prediction.ome.zarr"
    _check_ome_zarr(result, (3, 2, 16, 40, 36), 30.0)
    assert sorted(p.name for p in out.iterdir()) == ["movie_prediction.ome.zarr"]
    model = load_model(ckpt)
    whole = predict_volume(model, tifffile.imread(src)[2], "lamin_b1", z_step_um=1.16)
    got = _zarr_level0(result)[2, 1]
    assert np.linalg.norm(got - whole) / np.linalg.norm(whole) < 1e-5


def test_czi_timelapse_to_ome_zarr(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pyczi = pytest.importorskip("pylibCZIrw.czi", reason="pylibCZIrw (writes the test CZI; dev extra) not installed")
    data = (np.stack([_volume((4, 34, 38), t) for t in range(3)]) * 10).astype(np.uint16)
    src = tmp_path / "cell.czi"
    with pyczi.create_czi(str(src), exist_ok=True) as doc:
        for t in range(3):
            for z in range(4):
                doc.write(data=data[t, z], plane={"C": 0, "Z": z, "T": t})
        doc.write_metadata(channel_names={0: "TL"}, scale_x=0.29e-6, scale_y=0.29e-6, scale_z=1.16e-6)  # metres
    out = tmp_path / "out"
    assert main(["predict", str(src), "--model", str(ckpt), "--structures", "dna", "--out", str(out),
                 "--format", "ome-zarr", "--timepoints", "0-2", "--quiet"]) == 0, capsys.readouterr().err
    _check_ome_zarr(out / "cell_dna.ome.zarr", (3, 1, 16, 34, 38), 1.0)


def test_imagej_hyperstack_timelapse_to_ome_zarr(ckpt: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    data = np.stack([_volume((4, 2, 36, 34), t) for t in range(3)])  # T Z C Y X, channels TL and a stain
    src = tmp_path / "hyper.tif"
    tifffile.imwrite(src, data, imagej=True, resolution=(1 / 0.29, 1 / 0.29),
                     metadata={"axes": "TZCYX", "spacing": 1.16, "unit": "um", "finterval": 5.0,
                               "Labels": ["TL", "stain"] * 12})
    out = tmp_path / "out"
    argv = ["predict", str(src), "--model", str(ckpt), "--structures", "dna", "--out", str(out),
            "--format", "ome-zarr", "--quiet"]
    assert main(argv) == 2
    line = capsys.readouterr().err.strip()
    assert "--channel" in line and "0=TL" in line and "1=stain" in line and "3 timepoints" in line
    assert main([*argv, "--channel", "TL"]) == 0, capsys.readouterr().err
    _check_ome_zarr(out / "hyper_dna.ome.zarr", (3, 1, 16, 36, 34), 5.0)


def test_blockwise_equals_whole_volume(ckpt: Path, tmp_path: Path) -> None:
    volume = _volume((5, 40, 50), 7)
    src = tmp_path / "cell.ome.tif"
    _write_ome_stack(src, volume)
    options = PredictOptions(ckpt, ["lamin_b1"], tmp_path / "out", format="ome-zarr", max_memory_gb=2e-4,
                             precision="fp32")
    from sparsessp.inference import choose_block, window_grid

    assert choose_block(window_grid((5, 40, 50), (8, 16, 16), 4), 2e-4 * 2**30, 8)[0] < 40, "several blocks"
    predict_files([src], options)
    got = _zarr_level0(tmp_path / "out" / "cell_lamin_b1.ome.zarr")[0, 0]
    whole = predict_volume(load_model(ckpt), volume, "lamin_b1", z_step_um=1.16)
    assert got.shape == whole.shape
    assert np.linalg.norm(got - whole) / np.linalg.norm(whole) < 1e-5


@pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU has no native bf16")
def test_bf16_prediction_is_close_to_fp32(ckpt: Path, tmp_path: Path) -> None:
    """`predict --precision bf16` runs the network under bf16 autocast, writes float32, and stays near fp32."""
    volume = _volume((5, 40, 50), 3)
    src = tmp_path / "cell.ome.tif"
    _write_ome_stack(src, volume)
    got = {}
    for precision in ("fp32", "bf16"):
        out = tmp_path / precision
        assert main(["predict", str(src), "--model", str(ckpt), "--structures", "lamin_b1", "--out", str(out),
                     "--format", "ome-zarr", "--precision", precision, "--quiet"]) == 0
        got[precision] = _zarr_level0(out / "cell_lamin_b1.ome.zarr")[0, 0]
    assert got["bf16"].dtype == np.float32
    difference = np.linalg.norm(got["bf16"] - got["fp32"]) / np.linalg.norm(got["fp32"])
    assert 0 < difference < 3e-2  # bf16 really ran (not bit-equal) and kept the prediction


def test_default_precision_is_the_devices_best(ckpt: Path, tmp_path: Path) -> None:
    """Without --precision, predict runs in `auto`: bf16 on a CPU that runs it natively, else fp32."""
    from sparsessp.precision import best

    volume = _volume((5, 24, 28), 4)
    src = tmp_path / "cell.ome.tif"
    _write_ome_stack(src, volume)
    got = {}
    for name, extra in (("default", []), ("best", ["--precision", best("cpu")])):
        out = tmp_path / name
        assert main(["predict", str(src), "--model", str(ckpt), "--structures", "dna", "--out", str(out),
                     "--format", "ome-zarr", "--device", "cpu", "--quiet", *extra]) == 0
        got[name] = _zarr_level0(out / "cell_dna.ome.zarr")[0, 0]
    np.testing.assert_array_equal(got["default"], got["best"])


def test_fp16_on_the_cpu_is_refused_before_any_work(ckpt: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "cell.ome.tif"
    tifffile.imwrite(src, _volume((5, 24, 24)), ome=True, metadata={"axes": "ZYX", "PhysicalSizeZ": 1.16})
    out = tmp_path / "out"
    assert main(["predict", str(src), "--model", str(ckpt), "--structures", "dna", "--out", str(out),
                 "--precision", "fp16", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "fp16" in err[0] and "use fp32" in err[0]
    assert not out.exists() or not any(out.iterdir())


def test_two_processes_equal_one(ckpt: Path, tmp_path: Path) -> None:
    src = _ome_timelapse(tmp_path / "in" / "a.ome.tif", np.stack([_volume((4, 40, 36), t) for t in range(3)]))
    _ome_timelapse(tmp_path / "in" / "b.ome.tif", _volume((2, 4, 40, 36), 9))
    outs = {}
    for n in (1, 2):
        options = PredictOptions(ckpt, ["dna", "lamin_b1"], tmp_path / f"out{n}", devices=n, with_input=True)
        result = predict_files([src.parent], options)
        assert len(result.written) == 4
        outs[n] = {p.name: tifffile.imread(p) for p in result.written}
    assert outs[1].keys() == outs[2].keys()
    for name in outs[1]:
        np.testing.assert_array_equal(outs[1][name], outs[2][name])
    assert outs[1]["a_dna.ome.tif"].shape == (3, 2, 16, 40, 36)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT / "src")}


def test_killed_run_resumes_without_redoing(ckpt: Path, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    for i in range(3):
        _ome_timelapse(folder / f"m{i}.ome.tif", np.stack([_volume((4, 32, 32), 10 * i + t) for t in range(2)]))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "sparsessp.cli.main", "predict", str(folder), "--model", str(ckpt),
           "--structures", "dna", "--out", str(out), "--quiet", "--device", "cpu"]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    first = out / "m0_dna.ome.tif"
    deadline = time.time() + 300
    while not first.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert first.exists(), proc.stderr.read().decode() if proc.stderr else ""
    last = out / "m2_dna.ome.tif"
    if last.exists():
        pytest.skip("the run finished before it could be killed")
    stamp = first.stat().st_mtime_ns, first.stat().st_ino
    done = subprocess.run([*cmd, "--resume"], env=_env(), capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert f"skipped {first}" in done.stdout
    assert (first.stat().st_mtime_ns, first.stat().st_ino) == stamp, "a finished output was redone"
    assert sorted(p.name for p in out.iterdir()) == [f"m{i}_dna.ome.tif" for i in range(3)]
    fresh = tmp_path / "fresh"
    predict_files([folder], PredictOptions(ckpt, ["dna"], fresh))
    for i in range(3):
        np.testing.assert_array_equal(tifffile.imread(out / f"m{i}_dna.ome.tif"),
                                      tifffile.imread(fresh / f"m{i}_dna.ome.tif"))


def test_resume_keeps_finished_timepoints(ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sparsessp.predict import run as run_module

    src = _ome_timelapse(tmp_path / "movie.ome.tif", np.stack([_volume((4, 20, 20), t) for t in range(3)]))
    out = tmp_path / "out"
    calls: list[int] = []
    real = run_module._Predictor.run_unit

    def interrupted(self: run_module._Predictor, unit: run_module._Unit, progress: object) -> None:
        calls.append(unit.t_index)
        if unit.t_index == 2 and len(calls) == 3:
            raise KeyboardInterrupt  # as if killed during the last timepoint
        real(self, unit, progress)  # type: ignore[arg-type]

    monkeypatch.setattr(run_module._Predictor, "run_unit", interrupted)
    with pytest.raises(KeyboardInterrupt):
        predict_files([src], PredictOptions(ckpt, ["dna"], out))
    assert not (out / "movie_dna.ome.tif").exists()
    predict_files([src], PredictOptions(ckpt, ["dna"], out, resume=True))
    assert calls == [0, 1, 2, 2], "timepoints 0 and 1 were not redone"
    fresh = tmp_path / "fresh"
    monkeypatch.setattr(run_module._Predictor, "run_unit", real)
    predict_files([src], PredictOptions(ckpt, ["dna"], fresh))
    np.testing.assert_array_equal(tifffile.imread(out / "movie_dna.ome.tif"),
                                  tifffile.imread(fresh / "movie_dna.ome.tif"))


def test_files_are_0644_under_umask_022(ckpt: Path, tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        src = _ome_timelapse(tmp_path / "in" / "c.ome.tif", _volume((1, 4, 20, 20)))
        out = tmp_path / "out"
        predict_files([src], PredictOptions(ckpt, ["dna"], out, preview=True))
        predict_files([src], PredictOptions(ckpt, ["dna"], out, format="ome-zarr"))
        cfg = load_config(None, TINY)
        save_checkpoint(out / "model.ckpt", base_state(cfg, build_model(cfg).state_dict()))
        cfg.save(out / "config.yaml")
    finally:
        os.umask(old)
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) > 5
    for path in files:
        assert path.stat().st_mode & 0o777 == 0o644, path
    for path in [p for p in out.rglob("*") if p.is_dir()]:
        assert path.stat().st_mode & 0o777 == 0o755, path


def test_no_z_step_anywhere_asks_for_it(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "plain.tif"
    tifffile.imwrite(src, _volume((16, 20, 20)))
    out = tmp_path / "out"
    assert main(["predict", str(src), "--model", str(ckpt), "--structures", "dna", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "--z-step" in err and str(src) in err
    assert not out.exists() or not any(out.iterdir())
    assert main(["predict", str(src), "--model", str(ckpt), "--structures", "dna", "--out", str(out),
                 "--z-step", "0.29", "--quiet"]) == 0
    from sparsessp.data.io import read_volume

    image = read_volume(out / "plain_dna.ome.tif", validate=False)
    assert image.data.shape == (1, 16, 20, 20) and image.physical_sizes == pytest.approx((0.29, None, None))


def test_absurd_metadata_says_it_looks_wrong(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pyczi = pytest.importorskip("pylibCZIrw.czi", reason="pylibCZIrw (writes the test CZI; dev extra) not installed")
    src = tmp_path / "um_as_m.czi"
    with pyczi.create_czi(str(src), exist_ok=True) as doc:
        for z in range(4):
            doc.write(data=(_volume((20, 20), z) * 10).astype(np.uint16), plane={"C": 0, "Z": z, "T": 0})
        doc.write_metadata(channel_names={0: "TL"}, scale_x=0.29, scale_y=0.29, scale_z=1.16)  # um written as m
    out = tmp_path / "out"
    argv = ["predict", str(src), "--model", str(ckpt), "--structures", "dna", "--out", str(out), "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "looks wrong" in err and "--z-step" in err and "sparse ratio" not in err
    assert main([*argv, "--z-step", "1.16"]) == 2
    assert "looks wrong" in capsys.readouterr().err and "--pixel-size" in err + "--pixel-size"
    assert main([*argv, "--z-step", "1.16", "--pixel-size", "0.29"]) == 0
    from sparsessp.data.io import read_volume

    assert read_volume(out / "um_as_m_dna.ome.tif", validate=False).physical_sizes == pytest.approx((0.29,) * 3)


def _ngff(path: Path, data: np.ndarray, units: bool) -> Path:
    import zarr

    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    group.create_array("0", data=data)
    unit = {"unit": "micrometer"} if units else {}
    group.attrs["multiscales"] = [{"version": "0.4", "axes": [{"name": a, "type": "space", **unit} for a in "zyx"],
                                   "datasets": [{"path": "0", "coordinateTransformations": [
                                       {"type": "scale", "scale": [1.16, 0.29, 0.29]}]}]}]
    return path


def test_ome_zarr_inputs(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _volume((4, 20, 20))
    plain = _ngff(tmp_path / "nosuffix", data, units=False)
    out = tmp_path / "out"
    base = ["--model", str(ckpt), "--structures", "dna", "--quiet"]
    assert main(["predict", str(plain), *base, "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "carry no unit" in err and "nosuffix" in err
    level = _ngff(tmp_path / "b.zarr", data, units=True) / "0"
    assert main(["predict", str(level), *base, "--out", str(tmp_path / "o2")]) == 0
    assert "error" not in capsys.readouterr().err
    assert main(["predict", str(tmp_path), *base, "--out", str(tmp_path / "o3")]) == 0
    assert "error" not in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "o3").iterdir()) == ["b_dna.ome.tif", "nosuffix_dna.ome.tif"]
    broken = tmp_path / "broken.zarr"
    broken.mkdir()
    (broken / ".zattrs").write_text('{"multiscales": [{"axes": ["z", "y", "x"], "datasets": [{"path": "0"}]}]}')
    assert main(["predict", str(broken), *base, "--out", str(out)]) == 2
    line = capsys.readouterr().err.strip()
    assert "\n" not in line and str(broken) in line and "0x" not in line and "list index" not in line


def test_unwritable_out_is_found_before_work(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _ome_timelapse(tmp_path / "c.ome.tif", _volume((1, 4, 20, 20)))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["predict", str(src), "--model", str(ckpt), "--structures", "dna", "--out", str(blocker / "sub")]) == 2
    assert str(blocker) in capsys.readouterr().err
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders; the permission case needs another user")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    assert main(["predict", str(src), "--model", str(ckpt), "--structures", "dna", "--out", str(locked)]) == 2
    line = capsys.readouterr().err
    assert "not writable" in line and str(locked) in line and ".tmp" not in line


def test_timepoints_option(tmp_path: Path) -> None:
    from sparsessp.errors import InputError
    from sparsessp.predict import parse_timepoints

    assert parse_timepoints("0-3,7,2", 10, tmp_path) == [0, 1, 2, 3, 7]
    assert parse_timepoints(None, 3, tmp_path) == [0, 1, 2]
    for bad in ("5-2", "10", "a"):
        with pytest.raises(InputError):
            parse_timepoints(bad, 10, tmp_path)
