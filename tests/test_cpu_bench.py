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
    train = {"2d": {"it_s": {"fp32": 10.0, "bf16": 16.0}, "rel_l2": {"bf16": 4e-3}, "loss": {"fp32": 1.0, "bf16": 1.0}}}
    predict = {"seconds": {"before": 4.0, "fp32": 3.0, "bf16": 2.0}, "rel_l2": {"bf16": 5e-3}}
    table = load_script("benchmarks/cpu_bench.py").report(train, predict, "bf16")
    assert "| train 2d (it/s) | 10 | 16 | 1.60x | 1.5x | 4.0e-03 |" in table
    assert "| predict_volume (s) | 3 | 2 | 1.50x | 1.3x | 5.0e-03 | - |" in table
    assert "the previous default (s) | 4 | 2 | 2.00x |" in table
