"""`sparsessp bench`: parameter and MAC counts of the topology grid, and the timing path on the CPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from sparsessp.cli.main import main
from sparsessp.precision import best

QUICKSTART = str(Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml")

PAPER_TOPOLOGIES = {  # benchmarks/RESULTS.md, "Topologies": params, GMACs per patch at r = 2
    "3d": (17.20e6, 128.25e9),
    "2d": (6.16e6, 3.48e9),
    "3to2d": (12.48e6, 46.91e9),
    "2to3d": (11.35e6, 86.99e9),
}


def _json_rows(capsys: pytest.CaptureFixture[str], argv: list[str]) -> list[dict]:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_topology_grid_counts_match_the_recorded_table(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["bench", "--grid", "topologies", "--no-timing", "--json", "--set", "data.sparse_ratio=2"]
    rows = _json_rows(capsys, argv)
    assert [r["name"] for r in rows] == list(PAPER_TOPOLOGIES)
    for row in rows:
        params, macs = PAPER_TOPOLOGIES[row["name"]]
        assert row["params"] == pytest.approx(params, abs=0.005e6)
        assert row["macs"] == pytest.approx(macs, abs=0.005e9)
        assert row["train_it_per_s"] is None and row["train_mem_bytes"] is None and row["infer_mem_bytes"] is None
    macs = {r["name"]: r["macs"] for r in rows}
    assert macs["2d"] < macs["3to2d"] < macs["2to3d"] < macs["3d"]


def test_timing_on_the_cpu_reports_speed_memory_and_a_table(capsys: pytest.CaptureFixture[str]) -> None:
    small = ["--set", "data.patch=[16,32,32]", "--set", "model.channels=[4,8]", "--repeats", "1"]
    (row,) = _json_rows(capsys, ["bench", "--config", QUICKSTART, "--json", *small])
    assert row["name"] == "quickstart" and row["topology"] == "2d" and row["params"] > 0 and row["macs"] > 0
    assert row["train_it_per_s"] > 0 and row["infer_s_per_volume"] > 0
    assert row["precision"] == best("cpu")  # the quickstart's `auto`: bf16 where this CPU runs it natively
    assert row["train_mem_bytes"] > 0 and row["infer_mem_bytes"] > 0
    assert main(["bench", "--config", QUICKSTART, *small]) == 0
    assert "| quickstart | 2d |" in capsys.readouterr().out


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown where no GPU is present")
def test_cuda_without_a_gpu_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--device", "cuda", "--no-timing"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --device cuda: no CUDA device is available here"]
