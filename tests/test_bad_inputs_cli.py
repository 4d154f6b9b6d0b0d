"""The "inputs it must survive" of docs/product.md, each through the real CLI: exit 2, one `error:` line.

Covers what other tests do not yet drive through a command: a truncated OME-TIFF given to `predict`, a
disk that fills up while `predict` writes, a `--model` pickle that would run code, `train`/`prepare`
configs with an unknown key or an impossible combination, and `evaluate --run` on a folder that is not
a run.
"""

from __future__ import annotations

import errno
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import random_checkpoint
from sparsessp.cli.main import main
from sparsessp.data.io import write_ome_tiff
from sparsessp.engine.checkpoint import FORMAT

TINY = [
    "data.patch=[8,16,16]", "data.sparse_ratio=4", "model.channels=[4,8]", "model.embed_dim=8",
    "data.structures=[dna,lamin_b1]", "inference.window_batch=8",
]


def _one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


def _tl_stack(path: Path, shape: tuple[int, int, int] = (4, 16, 16), seed: int = 0) -> Path:
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    volume = gaussian_filter(rng.normal(size=shape), 1.5).astype(np.float32) * 50 + 300
    path.parent.mkdir(parents=True, exist_ok=True)
    write_ome_tiff(path, volume, (1.16, 0.29, 0.29), ["TL"])
    return path


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return random_checkpoint(tmp_path_factory.mktemp("model"), TINY)


def _predict(src: Path, model: Path, out: Path, structures: str = "dna") -> list[str]:
    return ["predict", str(src), "--model", str(model), "--structures", structures, "--out", str(out)]


def _files_in(folder: Path) -> list[str]:
    """Every entry of ``folder`` (hidden temp files included); [] when it does not exist."""
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# ---- (1) truncated OME-TIFF ---------------------------------------------------------------------------------


@pytest.mark.parametrize("keep", [0, 8, 200, 0.5, -1], ids=["empty", "header", "ifd", "half", "last-byte"])
def test_predict_truncated_ome_tiff(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    keep: float) -> None:
    src = _tl_stack(tmp_path / "in" / "cell.ome.tif")
    data = src.read_bytes()
    cut = len(data) - 1 if keep == -1 else int(keep * len(data)) if isinstance(keep, float) else int(keep)
    src.write_bytes(data[:cut])
    out = tmp_path / "out"
    rc = main(_predict(src, ckpt, out))
    line = _one_error_line(capsys.readouterr().err)
    assert rc == 2
    assert str(src) in line and ("truncated" in line or "corrupt" in line), line
    assert _files_in(out) == []


# ---- (2) disk full while predict writes -----------------------------------------------------------------------


def _enospc(*_: object, **__: object) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_predict_disk_full_in_tiff_writer(ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    import tifffile

    real_imwrite = tifffile.imwrite

    def imwrite_then_full(file: str | Path, data: np.ndarray, **kwargs: object) -> None:
        real_imwrite(file, data, **kwargs)  # the bytes land in the temp file, then the disk "fills up"
        with open(file, "ab") as fh:
            fh.write(b"\0" * 64)
        _enospc()

    src = _tl_stack(tmp_path / "in" / "cell.ome.tif")
    monkeypatch.setattr(tifffile, "imwrite", imwrite_then_full)
    out = tmp_path / "out"
    rc = main(_predict(src, ckpt, out))
    line = _one_error_line(capsys.readouterr().err)
    assert rc == 2
    assert "disk full" in line and "cell_dna.ome.tif" in line, line
    assert _files_in(out) == []


def test_predict_disk_full_at_fsync(ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    import sparsessp.fileio

    src = _tl_stack(tmp_path / "in" / "cell.ome.tif")
    out = tmp_path / "out"
    monkeypatch.setattr(sparsessp.fileio.os, "fsync", _enospc)
    rc = main([*_predict(src, ckpt, out), "--preview"])
    line = _one_error_line(capsys.readouterr().err)
    assert rc == 2
    assert "disk full" in line, line
    assert _files_in(out) == []


# ---- (3) a --model pickle that would run code -----------------------------------------------------------------


class _MakesMarker:
    """Unpickling this calls ``open(marker, "w")``: a stand-in for arbitrary code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return open, (str(self.marker), "w")


@pytest.mark.parametrize("how", ["pickle", "torch-save", "inside-checkpoint"])
def test_predict_refuses_code_running_pickle(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             how: str) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.ckpt"
    if how == "pickle":
        evil.write_bytes(pickle.dumps(_MakesMarker(marker)))
    elif how == "torch-save":
        torch.save(_MakesMarker(marker), evil)
    else:  # looks like a sparsessp checkpoint, with the payload among its values
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        assert state["format"] == FORMAT
        state["payload"] = _MakesMarker(marker)
        torch.save(state, evil)
    assert not marker.exists()
    src = _tl_stack(tmp_path / "in" / "cell.ome.tif")
    out = tmp_path / "out"
    rc = main(_predict(src, evil, out))
    line = _one_error_line(capsys.readouterr().err)
    assert rc == 2
    assert str(evil) in line and "pickle" in line, line
    assert not marker.exists()
    assert _files_in(out) == []


@pytest.mark.parametrize("content", [b"not a checkpoint at all", b"tiff"], ids=["text", "tiff"])
def test_predict_model_that_is_no_pickle_is_not_called_code(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                            content: bytes) -> None:
    """Garbage (or an image swapped in for --model) is "not a checkpoint", not a pickle that would run code."""
    src = _tl_stack(tmp_path / "in" / "cell.ome.tif")
    model = tmp_path / "model.ckpt"
    model.write_bytes(src.read_bytes() if content == b"tiff" else content)
    rc = main(_predict(src, model, tmp_path / "out"))
    line = _one_error_line(capsys.readouterr().err)
    assert rc == 2
    assert "is not a checkpoint" in line and "run code" not in line, line


# ---- (4) configs: unknown key, impossible combination ---------------------------------------------------------

BAD_CONFIGS = [
    ("model:\n  topolgy: 3d\n", [], "unknown key 'model.topolgy'"),
    ("bogus:\n  a: 1\n", [], "unknown key 'bogus'"),
    ("model:\n  topology: 3d\n  interpolation: none\n", [], "model.interpolation"),
    ("", ["model.topology=3d", "model.interpolation=none"], "model.interpolation"),
    ("", ["train.epochs_max=3"], "unknown key 'train.epochs_max'"),
]


@pytest.mark.parametrize("command", ["train", "prepare"])
def test_bad_config_is_one_line_naming_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               command: str) -> None:
    for i, (text, overrides, expected) in enumerate(BAD_CONFIGS):
        argv = [command, *(f"--set={o}" for o in [*TINY, f"data.root={tmp_path / 'data'}", *overrides])]
        if text:
            config = tmp_path / f"bad{i}.yaml"
            config.write_text(text)
            argv += ["--config", str(config)]
        run_dir = tmp_path / f"run{i}"
        if command == "train":
            argv += ["--out", str(run_dir)]
        rc = main(argv)
        line = _one_error_line(capsys.readouterr().err)
        assert rc == 2, argv
        assert expected in line, (argv, line)
        assert not run_dir.exists() and not (tmp_path / "data").exists()


def test_impossible_combination_says_what_to_change(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("model:\n  topology: 3d\n  interpolation: none\n")
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "run")]) == 2
    assert "use prefix or postfix" in _one_error_line(capsys.readouterr().err)


# ---- (5) evaluate --run on a folder that is not a run ---------------------------------------------------------


def test_evaluate_on_a_folder_that_is_not_a_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    images = tmp_path / "images"
    _tl_stack(images / "a.ome.tif")
    a_file = images / "a.ome.tif"
    garbage = tmp_path / "garbage"
    (garbage / "checkpoints").mkdir(parents=True)
    (garbage / "checkpoints" / "best.ckpt").write_bytes(b"not a checkpoint at all")
    cases = [(empty, "checkpoint not found"), (images, "checkpoint not found"), (a_file, "run folder not found"),
             (garbage, "is not a checkpoint")]
    for folder, expected in cases:
        before = sorted(str(p) for p in tmp_path.rglob("*"))
        rc = main(["evaluate", "--run", str(folder), "--device", "cpu"])
        line = _one_error_line(capsys.readouterr().err)
        assert rc == 2, folder
        assert expected in line, (folder, line)
        assert sorted(str(p) for p in tmp_path.rglob("*")) == before  # nothing written (no evaluation/ folder)
