"""benchmarks/cpu_bench.py: fair alternation, the side-by-side table, and the quality figure."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import load_script


def test_rounds_alternate_their_order() -> None:
    calls: list[str] = []
    bench = load_script("benchmarks/cpu_bench.py")
    results = bench.alternating({"a": "a", "b": "b"}, 3, lambda run: calls.append(run) or float(len(calls)))
    assert calls == ["a", "b", "b", "a", "a", "b"]
    assert results == {"a": [1.0, 4.0, 5.0], "b": [2.0, 3.0, 6.0]}


def test_relative_l2() -> None:
    bench = load_script("benchmarks/cpu_bench.py")
    ref = np.ones(100)
    assert bench.relative_l2(ref, ref) == 0.0
    assert bench.relative_l2(ref * 1.01, ref) == pytest.approx(0.01)


def test_report_gives_speed_ups_against_the_targets() -> None:
    train = {"2d": {"it_s": {"fp32": 10.0, "default": 16.0}, "rel_l2": {"default": 4e-3},
                    "loss": {"fp32": 1.0, "default": 1.0}}}
    predict = {"seconds": {"fp32": 3.0, "default": 2.0}, "rel_l2": {"default": 5e-3}}
    table = load_script("benchmarks/cpu_bench.py").report(train, predict, "default (bf16, channels-last)")
    assert "| job | fp32 | default (bf16, channels-last) |" in table
    assert "| train 2d (it/s) | 10 | 16 | 1.60x | 1.5x | 4.0e-03 |" in table
    assert "| predict_volume (s) | 3 | 2 | 1.50x | 1.3x | 5.0e-03 | - |" in table


def test_the_default_runs_channels_last_and_the_reference_contiguous() -> None:
    import torch

    bench = load_script("benchmarks/cpu_bench.py")
    cfg = bench.quickstart_cfg("2d", "fp32")
    from sparsessp.models.registry import build_model

    weights = build_model(cfg).state_dict()
    batch = {"signal": torch.randn(2, 1, 8, 64, 64), "target": torch.randn(2, 1, 32, 64, 64),
             "task_id": torch.tensor([0, 1])}
    kernels = {name: [p for p in bench.TrainRun("2d", "fp32", layout, weights, batch).model.parameters()
                      if p.dim() == 4 and p.shape[1] > 1 and p.shape[2] > 1]
               for name, layout in (("reference", "contiguous"), ("default", "auto"))}
    assert kernels["reference"] and all(p.is_contiguous() for p in kernels["reference"])
    assert all(not p.is_contiguous() and p.is_contiguous(memory_format=torch.channels_last)
               for p in kernels["default"])
