"""benchmarks/synthcell_study.py: the verdict on each of the paper's claims follows the numbers it is given."""

from __future__ import annotations

from types import ModuleType

import pytest

from conftest import load_script


@pytest.fixture(scope="module")
def study() -> ModuleType:
    return load_script("benchmarks/synthcell_study.py")


def _row(r2: float, ratio: int = 4, extra: dict | None = None, **labels: str) -> dict:
    name = "/".join(labels.values()) + f"/r{ratio}"
    return {"name": name, "labels": labels, "extra": extra or {}, "ratio": ratio, "status": "trained",
            "overall": {"MSE": 1 - r2, "MAE": 0.5, "R2": r2, "pearson": 0.0}}


def test_claims_agree_and_disagree_with_the_numbers(study: ModuleType) -> None:
    t1 = [_row(0.3, approach="DoDNet", interpolation="prefix", topology="3D"),
          _row(0.2, approach="DoDNet", interpolation="postfix", topology="3D"),
          _row(0.1, approach="DoDNet", interpolation="prefix", topology="2D"),
          _row(0.4, approach="DoDNet", interpolation="postfix", topology="2D")]
    t3 = [_row(0.5, approach="Tgnet", topology="3-to-2D"), _row(0.2, approach="Tgnet", topology="3D"),
          _row(0.1, approach="Tgnet", topology="2D"), _row(0.6, approach="RepMode", topology="2D"),
          _row(0.45, extra={"train.seed": 1}, approach="RepMode", topology="2D")]
    f4 = [_row(0.5 - 0.01 * r, r, approach="Tgnet", topology="3-to-2D") for r in (2, 4, 8)]
    f4 += [_row(0.5 - 0.03 * r, r, approach="Tgnet", topology="3D") for r in (2, 4, 8)]
    text = "\n".join(study.claims({"table1": t1, "table3": t3, "fig4": f4}))
    assert "Table 1): **partly agree**" in text and "prefix wins 1 of 2 pairs" in text
    assert "DoDNet 2D: prefix vs postfix: 0.1000 vs 0.4000 (no)" in text
    assert "Table 2): **not measured**" in text
    assert "Table 3): **agree**" in text and "the hybrid wins 2 of 2 pairs" in text
    assert "best cell of Table 3: **disagree**" in text and "Best: RepMode/2D/r4 (R2 0.6000)" in text
    assert "ranks 2 of 4" in text  # the seed-1 rerun is not a cell of its own
    assert "(Fig. 4): **agree**" in text and "3D -0.0300, 3-to-2D -0.0100" in text
    why = study.causes({"table1": t1, "table3": t3, "fig4": f4})
    assert [line.split(":")[0] for line in why] == ["- Claim 1", "- Claim 4"]
    seeds = "\n".join(study.seed_lines(t3))
    assert "RepMode 2D: seed 0 R2 0.6000, seed 1 R2 0.4500 (difference 0.1500)" in seeds
