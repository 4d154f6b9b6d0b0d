"""`sparsessp ablate` and the grids it shares with `bench`: variants, budgets, continuation, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from conftest import tiny_train_config
from sparsessp.cli.main import main
from sparsessp.config import load_config
from sparsessp.errors import ConfigError
from sparsessp.grids import GRIDS, grid_configs, parse_axes


def test_axes_make_the_cartesian_product_with_yaml_values() -> None:
    rows = parse_axes(["data.sparse_ratio=[2, 4]", "model.channels=[[4, 8], [8, 16]]"])
    assert rows == [
        {"data.sparse_ratio": 2, "model.channels": [4, 8]},
        {"data.sparse_ratio": 2, "model.channels": [8, 16]},
        {"data.sparse_ratio": 4, "model.channels": [4, 8]},
        {"data.sparse_ratio": 4, "model.channels": [8, 16]},
    ]
    for bad, message in (("data.sparse_ratio", "expects KEY="), ("data.sparse_ratio=4", "YAML list"),
                         ("data.sparse_ratio=[]", "YAML list")):
        with pytest.raises(ConfigError, match=message):
            parse_axes([bad])
    with pytest.raises(ConfigError, match="twice"):
        parse_axes(["train.lr=[0.1]", "train.lr=[0.2]"])


def test_named_grids_keep_their_row_names_and_validate_every_row() -> None:
    base = load_config(None, [])
    names = [name for name, _ in grid_configs(base, "methods")]
    assert len(names) == len(GRIDS["methods"].rows) == 24 and names[0] == "multinet/3d"
    ratios = [cfg.data.sparse_ratio for _, cfg in grid_configs(base, "sparsity")]
    assert ratios == [1, 2, 4, 8]
    with pytest.raises(ConfigError, match="unknown grid"):
        grid_configs(base, "nope")


def _ablate(tmp: Path, *extra: str) -> list[str]:
    config = tiny_train_config(tmp, ["dna", "lamin_b1"], seed=3, samples_per_epoch=4)
    return ["ablate", "--config", str(config), "--out", str(tmp / "abl"), "--axis", "data.sparse_ratio=[1, 2]", *extra]


def test_ablate_trains_each_variant_then_reuses_resumes_and_refuses_changed_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], one_thread: None
) -> None:
    argv = _ablate(tmp_path, "--steps", "2")
    out = tmp_path / "abl"
    assert main(argv) == 0
    stdout = capsys.readouterr().out
    assert stdout.strip().splitlines()[-1] == f"results: {out / 'results.json'}"
    rows = json.loads((out / "results.json").read_text())
    assert [r["name"] for r in rows] == ["sparse_ratio=1", "sparse_ratio=2"]
    assert [r["status"] for r in rows] == ["trained", "trained"] and [r["steps"] for r in rows] == [2, 2]
    for row in rows:
        run = out / "runs" / row["folder"]
        assert yaml.safe_load((run / "config.yaml").read_text())["data"]["sparse_ratio"] == row["changes"][
            "data.sparse_ratio"]
        saved = json.loads((run / "metrics.json").read_text())
        assert row["overall"]["R2"] == saved["overall"]["R2"] and set(row["per_structure_R2"]) == {"dna", "lamin_b1"}
        assert f"{row['overall']['R2']:.4f}" in (out / "results.md").read_text()
    assert (out / "r2.png").is_file() and (out / "report" / "report.md").is_file()
    assert (out / "report" / "r2_vs_sparsity.png").is_file()  # the report sees two sparse ratios

    assert main(argv) == 0  # same command again: nothing to train
    again = json.loads((out / "results.json").read_text())
    assert [r["status"] for r in again] == ["reused", "reused"]
    assert [r["overall"] for r in again] == [r["overall"] for r in rows]

    assert main(_ablate(tmp_path, "--steps", "3")) == 0  # a larger budget continues both runs
    longer = json.loads((out / "results.json").read_text())
    assert [r["status"] for r in longer] == ["resumed", "resumed"] and [r["steps"] for r in longer] == [3, 3]

    capsys.readouterr()
    assert main(_ablate(tmp_path, "--steps", "3", "--set", "train.lr=0.5")) == 1  # another config, same folders
    changed = json.loads((out / "results.json").read_text())
    assert all(r["status"].startswith("failed:") and "train.lr differs" in r["status"] for r in changed)
    assert "2 of 2 variant(s) failed" in capsys.readouterr().err


def test_parallel_jobs_give_the_same_rows_and_keep_worker_output_in_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "abl"
    assert main(_ablate(tmp_path, "--steps", "1", "--jobs", "2", "--no-report")) == 0
    rows = json.loads((out / "results.json").read_text())
    assert sorted(r["name"] for r in rows) == ["sparse_ratio=1", "sparse_ratio=2"]
    assert all(r["status"] == "trained" and r["steps"] == 1 for r in rows)
    for row in rows:
        assert "done:" in (out / "runs" / f"{row['folder']}.log").read_text()
    assert "done:" not in capsys.readouterr().err
    assert not (out / "report").exists()


ORPHAN_SCRIPT = """
import multiprocessing, os, sys, time
from sparsessp.ablation import stop_when_orphaned

def child(parent, path):
    stop_when_orphaned(parent, poll_s=0.1)
    open(path, "w").write(str(os.getpid()))
    time.sleep(120)

if __name__ == "__main__":
    multiprocessing.get_context("spawn").Process(target=child, args=(os.getpid(), sys.argv[1])).start()
    time.sleep(120)
"""


def test_a_worker_stops_when_the_ablation_process_is_killed(tmp_path: Path) -> None:
    """A killed `ablate --jobs` (its parent gone) leaves no worker running on (they stop within a second)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import psutil

    script, pid_file = tmp_path / "pool.py", tmp_path / "child.pid"
    script.write_text(ORPHAN_SCRIPT)
    parent = subprocess.Popen([sys.executable, str(script), str(pid_file)], env={**os.environ})
    try:
        deadline = time.monotonic() + 60
        while not (pid_file.is_file() and pid_file.read_text()) and time.monotonic() < deadline:
            time.sleep(0.1)
        child = psutil.Process(int(pid_file.read_text()))
        assert child.is_running() and child.status() != psutil.STATUS_ZOMBIE
        parent.send_signal(signal.SIGTERM)
        parent.wait(10)
        stopped = time.monotonic() + 10
        while child.is_running() and child.status() != psutil.STATUS_ZOMBIE and time.monotonic() < stopped:
            time.sleep(0.1)
        assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE, "worker outlived its ablation"
    finally:
        parent.kill()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--axis", "model.bogus=[1, 2]"], "bogus"),
        (["--grid", "sparsity"], "not both"),
        (["--steps", "0"], "--steps must be positive"),
        (["--jobs", "0"], "--jobs must be at least 1"),
        (["--set", "data.synthcell=null", "--set", "data.root=/nonexistent/data"], "holds no dataset manifest"),
    ],
)
def test_ablate_bad_input_is_one_line_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    assert main(_ablate(tmp_path, *extra)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0]
    assert not (tmp_path / "abl").exists()
