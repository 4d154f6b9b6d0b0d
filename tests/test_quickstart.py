"""`sparsessp quickstart` end to end at a tiny size: simulate -> train -> evaluate -> report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sparsessp.cli.main import main

TINY = [
    "data.structures=[dna,lamin_b1]", "data.synthcell.size=[8,32,32]", "data.synthcell.count=3",
    "data.patch=[8,32,32]", "train.max_steps=1", "train.batch_size=2", "model.channels=[4,8]",
    "model.embed_dim=8", "train.val_every=1",
]


def _argv(out: Path, data: Path) -> list[str]:
    return ["quickstart", "--out", str(out), "--data", str(data), "--minutes", "2",
            *(a for item in TINY for a in ("--set", item))]


def test_quickstart_tiny_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, data = tmp_path / "run", tmp_path / "data"
    assert main(_argv(out, data)) == 0
    stdout = capsys.readouterr().out
    assert "SynthCell-12 written to" in stdout
    assert stdout.strip().splitlines()[-1] == f"results: {out / 'metrics.json'}"
    assert "| dna |" in stdout and "| lamin_b1 |" in stdout and f"report: {out / 'report' / 'report.md'}" in stdout
    result = json.loads((out / "metrics.json").read_text())
    assert set(result["per_structure"]) == {"dna", "lamin_b1"}
    assert set(result["overall"]) == {"MSE", "MAE", "R2", "pearson"}
    assert (out / "report" / "run_mips.png").is_file() and (out / "config.yaml").is_file()
    assert f"{result['overall']['MSE']:.4f}" in (out / "report" / "report.md").read_text()

    assert main(_argv(out, data)) == 2  # the run folder is taken
    assert "already holds a run" in capsys.readouterr().err
    assert main(["quickstart", "--out", str(tmp_path / "x"), "--minutes", "0"]) == 2
    assert "--minutes must be positive" in capsys.readouterr().err
    assert main(["quickstart", "--out", str(tmp_path / "x"), "--set", "data.bogus=1"]) == 2
    assert "unknown key 'data.bogus'" in capsys.readouterr().err


def test_quickstart_reuses_matching_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from sparsessp.cli.quickstart import quickstart_config
    from sparsessp.data.synthcell import ensure_dataset, generate

    data = tmp_path / "data"
    cfg = quickstart_config([*TINY, f"data.root={data}"])
    generate(data, size=(8, 32, 32), count=3, seed=0, photons=200.0, structures=["dna", "lamin_b1"], workers=1)
    before = (data / "synthcell.json").stat().st_mtime_ns
    assert "reusing" in ensure_dataset(cfg)
    assert (data / "synthcell.json").stat().st_mtime_ns == before
    other = quickstart_config([*TINY, f"data.root={data}", "data.synthcell.seed=1"])
    assert "written" in ensure_dataset(other)
    assert json.loads((data / "synthcell.json").read_text())["seed"] == 1


def test_wall_clock_cap_is_said_plainly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, data = tmp_path / "run", tmp_path / "data"
    argv = [a if a != "train.max_steps=1" else "train.max_steps=100000" for a in _argv(out, data)]
    argv[argv.index("--minutes") + 1] = "0.0005"  # 30 ms: the cap stops training long before its steps
    assert main(argv) == 0
    stdout = capsys.readouterr().out
    assert "NOTE: training was stopped early by the 0.0005-minute wall-clock cap at step" in stdout
    assert "of 100000" in stdout
    assert "stopped early" in (out / "report" / "report.md").read_text()
    assert "stopped early" in (out / "report" / "report.html").read_text()


def test_train_makes_the_synthcell_data_its_config_describes(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    from sparsessp.cli.quickstart import quickstart_config

    config = tmp_path / "quickstart.yaml"
    quickstart_config([*TINY, f"data.root={tmp_path / 'fresh'}"]).save(config)
    assert not (tmp_path / "fresh").exists()
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "run")]) == 0
    assert "SynthCell-12 written to" in capsys.readouterr().out
    assert (tmp_path / "run" / "checkpoints" / "best.ckpt").is_file()
