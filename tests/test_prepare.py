"""Manifests, preparation (z-score, resampling to 0.29 um, cache) and the guarded RepMode .pth import."""

from __future__ import annotations

import argparse
import logging
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from sparsessp.cli.main import main
from sparsessp.config import config_from_dict
from sparsessp.data import prepare as prep
from sparsessp.data.io import read_volume, write_ome_tiff
from sparsessp.data.manifest import ManifestEntry, has_manifest, read_manifest
from sparsessp.errors import CheckpointError, InputError, UserError

HEADER = "path_czi,channel_signal,channel_target,structureProteinName,colony_position\n"


def make_root(root: Path, structures: tuple[str, ...] = ("dna", "lamin_b1"), counts: tuple[int, int, int] = (2, 1, 1),
              shape: tuple[int, int, int] = (6, 20, 20), xy_um: float = 0.29) -> Path:
    """A RepMode-style root: per structure and split a CSV, per file a 3-channel OME-TIFF [TL, DNA, target]."""
    rng = np.random.default_rng(0)
    for structure in structures:
        for split, count in zip(("train", "val", "test"), counts):
            lines = [HEADER]
            for i in range(count):
                rel = f"{structure}/{split}_{i}.ome.tif"
                data = rng.random((3, *shape), dtype=np.float32) * 100
                write_ome_tiff(root / rel, data, (0.29, xy_um, xy_um), ["TL", "DNA", structure])
                lines.append(f"{rel},0,2,{structure.upper()},A{i}\n")
            (root / structure / f"{split}.csv").write_text("".join(lines))
    return root


def make_cfg(root: Path, structures: list[str], **data: object) -> object:
    tree = {"data": {"root": str(root), "structures": structures, "patch": [4, 16, 16], "sparse_ratio": 2, **data},
            "model": {"channels": [4, 8]}}
    return config_from_dict(tree)


def test_read_manifest_resolves_paths(tmp_path: Path) -> None:
    make_root(tmp_path)
    entries = read_manifest(tmp_path, "dna", "train")
    assert [e.path for e in entries] == [tmp_path / "dna/train_0.ome.tif", tmp_path / "dna/train_1.ome.tif"]
    first = entries[0]
    assert (first.channel_signal, first.channel_target, first.protein, first.colony_position) == (0, 2, "DNA", "A0")
    assert first.structure == "dna" and first.split == "train" and first.timepoint is None
    assert has_manifest(tmp_path)


def test_single_file_manifest(tmp_path: Path) -> None:
    write_ome_tiff(tmp_path / "imgs/a.ome.tif", np.random.rand(2, 3, 8, 8), channel_names=["TL", "lamin"])
    (tmp_path / "manifest.csv").write_text(
        "structure,split,path,channel_signal,channel_target,timepoint\n"
        "lamin_b1,train,imgs/a.ome.tif,TL,lamin,0\nlamin_b1,test,imgs/a.ome.tif,0,1,\n"
    )
    (entry,) = read_manifest(tmp_path, "lamin_b1", "train")
    assert (entry.channel_signal, entry.channel_target, entry.timepoint) == ("TL", "lamin", 0)
    assert read_manifest(tmp_path, "lamin_b1", "val") == []


@pytest.mark.parametrize(
    ("csv", "match"),
    [
        ("path_czi,channel_signal\nx.tif,0\n", "missing column.*channel_target"),
        (HEADER + "missing.tif,0,2,,\n", "line 2: image file not found"),
        (HEADER + "a.ome.tif,0,1.5,,\n", "not a channel index"),
        (HEADER + ",0,1,,\n", "empty image path"),
    ],
)
def test_manifest_errors(tmp_path: Path, csv: str, match: str) -> None:
    write_ome_tiff(tmp_path / "a.ome.tif", np.random.rand(2, 3, 8, 8))
    (tmp_path / "dna").mkdir()
    (tmp_path / "dna" / "train.csv").write_text(csv)
    with pytest.raises(InputError, match=match) as exc:
        read_manifest(tmp_path, "dna", "train")
    assert "\n" not in str(exc.value)


def test_manifest_absent(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no manifest for structure 'dna'"):
        read_manifest(tmp_path, "dna", "train")
    with pytest.raises(InputError, match="dataset root not found"):
        read_manifest(tmp_path / "nope", "dna", "train")
    with pytest.raises(InputError, match="unknown split"):
        read_manifest(tmp_path, "dna", "training")


def test_zscore_and_grid_factors() -> None:
    volume = np.random.default_rng(1).random((4, 6, 6)) * 50 + 3
    z = prep.zscore(volume)
    assert z.dtype == np.float32
    assert float(z.mean()) == pytest.approx(0, abs=1e-6) and float(z.std()) == pytest.approx(1, abs=1e-5)
    assert prep.grid_factors((0.29, 0.108, 0.108)) == (1.0, 0.37241, 0.37241)
    assert prep.grid_factors((None, 0.29, 0.58)) == (1.0, 1.0, 2.0)
    same = np.ones((3, 4, 4), np.float32)
    assert prep.resample(same, (1.0, 1.0, 1.0)) is same


def test_prepare_resamples_allencell_pixels(tmp_path: Path) -> None:
    make_root(tmp_path, ("lamin_b1",), (1, 0, 0), shape=(5, 54, 81), xy_um=0.108)
    (entry,) = read_manifest(tmp_path, "lamin_b1", "train")
    pair = prep.prepare_pair(entry, tmp_path / "cache")
    assert pair.signal.shape == pair.target.shape == (5, round(54 * 0.37241), round(81 * 0.37241)) == (5, 20, 30)
    for array in (pair.signal, pair.target):
        assert array.dtype == np.float32
        assert float(array.mean()) == pytest.approx(0, abs=1e-5) and float(array.std()) == pytest.approx(1, abs=1e-4)


def test_prepare_on_grid_is_only_zscored(tmp_path: Path) -> None:
    make_root(tmp_path, ("dna",), (1, 0, 0))
    (entry,) = read_manifest(tmp_path, "dna", "train")
    pair = prep.prepare_pair(entry, tmp_path / "cache", mmap=False)
    source = read_volume(entry.path)
    np.testing.assert_allclose(pair.signal, prep.zscore(source.data[0]), atol=1e-6)
    np.testing.assert_allclose(pair.target, prep.zscore(source.data[2]), atol=1e-6)


def test_cache_hit_does_not_read_the_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_root(tmp_path, ("dna",), (1, 0, 0))
    (entry,) = read_manifest(tmp_path, "dna", "train")
    first = prep.prepare_pair(entry, tmp_path / "cache")
    assert not first.cached
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 2

    real_read = prep.read_volume
    reads: list[object] = []

    def recording_read(*args: object, **kwargs: object) -> object:
        reads.append(kwargs["channel"])
        return real_read(*args, **kwargs)

    monkeypatch.setattr(prep, "read_volume", recording_read)
    second = prep.prepare_pair(entry, tmp_path / "cache")
    assert second.cached and isinstance(second.signal, np.memmap) and reads == []
    np.testing.assert_array_equal(second.signal, first.signal)
    other = ManifestEntry("dna", "train", entry.path, 0, 1)  # same TL, another target: only that is read
    third = prep.prepare_pair(other, tmp_path / "cache")
    assert reads == [[1]] and not third.cached
    np.testing.assert_array_equal(third.signal, first.signal)
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 3
    stat = entry.path.stat()
    os.utime(entry.path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # an edited source is prepared anew
    assert not prep.prepare_pair(entry, tmp_path / "cache").cached


def test_unknown_voxel_size_is_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    tifffile.imwrite(tmp_path / "plain.tif", np.random.default_rng(0).random((2, 4, 8, 8), dtype=np.float32),
                     photometric="minisblack", metadata={"axes": "CZYX"})
    entry = ManifestEntry("dna", "train", tmp_path / "plain.tif", 0, 1)
    with caplog.at_level(logging.WARNING, logger="sparsessp.data"):
        pair = prep.prepare_pair(entry, tmp_path / "cache")
    assert pair.signal.shape == (4, 8, 8)
    assert "no physical voxel size for axis z,y,x" in caplog.text


def test_prepare_dataset_summary_and_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_root(tmp_path / "root")
    cfg = make_cfg(tmp_path / "root", ["dna", "lamin_b1"], cache_dir=str(tmp_path / "c"))
    seen: list[bool] = []
    summary = prep.prepare_dataset(cfg, ["train", "val"], on_volume=lambda e, cached: seen.append(cached))
    assert summary.volumes == {("dna", "train"): 2, ("lamin_b1", "train"): 2, ("dna", "val"): 1, ("lamin_b1", "val"): 1}
    assert (summary.prepared, summary.cached, summary.cache_dir) == (6, 0, tmp_path / "c")
    assert seen == [False] * 6
    config = tmp_path / "cfg.yaml"
    cfg.save(config)
    assert main(["prepare", "--config", str(config), "--set", "data.single_structure=dna"]) == 0
    out = capsys.readouterr().out
    assert "4 volumes ready (1 prepared now, 3 from the cache)" in out
    assert main(["prepare", "--config", str(config), "--root", str(tmp_path / "absent")]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0


class _Evil:
    """Unpickling this creates a file: the refusal test asserts it never appears."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.target), "w"))


def _packed(n: int = 2, extra: object = None) -> dict[str, object]:
    rng = np.random.default_rng(3)
    data = [
        {"info": {"dataset": "fibrillarin", "path_czi": f"x{i}.czi", "colony_position": "edge, top"},
         "imgs": [torch.from_numpy(rng.random((1, 4, 12, 12), dtype=np.float32)),
                  rng.random((1, 4, 12, 12), dtype=np.float32)]}
        for i in range(n)
    ]
    return {"adopted_datasets_loaded": ["fibrillarin"], "df": extra, "data": data}


def test_pickled_pth_is_refused_without_running_code(tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    evil = tmp_path / "train.pth"
    torch.save({"data": [_Evil(marker)]}, evil)
    legacy = tmp_path / "val.pth"
    legacy.write_bytes(pickle.dumps({"data": [_Evil(marker)]}))
    for path in (evil, legacy):
        with pytest.raises(CheckpointError) as exc:
            prep.import_pth(path, tmp_path / "root")
        assert "--trust-pickle" in str(exc.value) and "\n" not in str(exc.value)
        assert not marker.exists()
    assert not (tmp_path / "root").exists()
    junk = tmp_path / "test.pth"
    junk.write_bytes(b"not a torch file" * 4)
    with pytest.raises(InputError, match="corrupt"):
        prep.import_pth(junk, tmp_path / "root")


def test_pth_import_with_trust(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "train.pth"
    packed = _packed(extra=argparse.Namespace(rows=2))  # a pickled object: like RepMode's pandas DataFrame
    torch.save(packed, path)
    with pytest.raises(CheckpointError):
        prep.load_pth(path)
    counts = prep.import_pth(path, tmp_path / "root", trust_pickle=True)
    assert counts == {"fibrillarin": 2}
    entries = read_manifest(tmp_path / "root", "fibrillarin", "train")
    assert [e.colony_position for e in entries] == ["edge, top", "edge, top"]
    image = read_volume(entries[1].path)
    np.testing.assert_array_equal(image.data[1], packed["data"][1]["imgs"][1][0])
    assert image.physical_sizes == pytest.approx((0.29, 0.29, 0.29))
    with pytest.raises(UserError, match="--overwrite"):
        prep.import_pth(path, tmp_path / "root", trust_pickle=True)
    plain = tmp_path / "plain.pth"  # tensors and numpy arrays only: no trust needed
    torch.save(_packed(1), plain)
    assert prep.import_pth(plain, tmp_path / "root", split="val") == {"fibrillarin": 1}
    config = tmp_path / "cfg.yaml"
    make_cfg(tmp_path / "root", ["fibrillarin"]).save(config)
    argv = ["prepare", "--config", str(config), "--from-pth", str(path), "--trust-pickle", "--overwrite"]
    assert main(argv) == 0
    assert "2 volumes ready" in capsys.readouterr().out
