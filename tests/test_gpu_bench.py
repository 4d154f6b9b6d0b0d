"""benchmarks/gpu_bench.py: the parts that run without a GPU, so the GPU run works the first time."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import load_script

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT.parent / "shared" / "fixtures" / "official" / "MANIFEST.json"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: the script would measure")
def test_without_cuda_it_says_so_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert load_script("benchmarks/gpu_bench.py").main([]) == 0
    assert "needs an NVIDIA GPU" in capsys.readouterr().out


def test_every_route_equals_the_per_sample_reference_float64() -> None:
    bench = load_script("benchmarks/gpu_bench.py")
    errors = bench.tiny_route_check()
    assert set(errors) == {"by_task", "experts", "grouped", "inference (cached)"}
    assert max(errors.values()) <= bench.ROUTE_TOLERANCE["float64"], errors


def test_the_route_check_catches_a_wrong_route(monkeypatch: pytest.MonkeyPatch) -> None:
    from sparsessp.models.conditioning.mode import MoDEConv

    bench = load_script("benchmarks/gpu_bench.py")
    experts = MoDEConv._experts
    monkeypatch.setattr(MoDEConv, "_experts", lambda self, x, t: experts(self, x, t) * 1.01)
    errors = bench.tiny_route_check()
    assert errors["experts"] > bench.ROUTE_TOLERANCE["float32"]
    assert errors["by_task"] <= bench.ROUTE_TOLERANCE["float64"]


@pytest.mark.skipif(not MANIFEST.is_file(), reason="../shared/fixtures/official/MANIFEST.json is not here")
def test_full_size_weights_go_through_the_importer_to_the_released_spec() -> None:
    from sparsessp.models.compat.sparsessp_released import ReleasedSparseSSP

    bench = load_script("benchmarks/gpu_bench.py")
    shapes = json.loads(MANIFEST.read_text())["sparsessp_repmode_3to2d_released_full_size"]["state_dict"]
    meta = {key: torch.empty(shape, device="meta") for key, shape in shapes.items()}
    _, spec, ratio = bench.FULL_SPECS["sparsessp-3to2d-r8"]
    assert ReleasedSparseSSP.spec_from_state_dict(meta) == spec  # the script's full-size spec is the MANIFEST's
    pools = bench.random_released_state({key: shape for key, shape in shapes.items() if key.endswith("_pool")})
    assert len(ReleasedSparseSSP.convert_state_dict(pools)) == len(pools)  # the release's average kernels pass
    with torch.device("meta"):
        model = ReleasedSparseSSP(spec, sparse_ratio=ratio)
    assert sum(p.numel() for p in model.parameters()) == bench.FULL_SIZE_PARAMS
