"""Shipped configs and the config layer's import direction."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import load_script
from sparsessp import design
from sparsessp.cli.ablate import add_arguments
from sparsessp.config import load_config
from sparsessp.models.registry import BACKBONES, CONDITIONINGS

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / "configs").rglob("*.yaml"))


def test_registry_maps_exactly_the_names_the_design_space_lists() -> None:
    assert set(CONDITIONINGS) == set(design.CONDITIONINGS)
    assert set(BACKBONES) == set(design.BACKBONES)


def test_config_layer_imports_neither_models_nor_torch() -> None:
    code = (
        "import sys; import sparsessp.config as c; c.load_config(None);"
        "bad = sorted(m for m in sys.modules if m.startswith(('sparsessp.models', 'torch')));"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("path", SHIPPED, ids=[str(p.relative_to(ROOT / "configs")) for p in SHIPPED])
def test_every_shipped_config_loads(path: Path) -> None:
    load_config(path)


def test_shipped_configs_are_many() -> None:
    assert len(SHIPPED) > 80


def test_paper_and_cpu_configs_are_exactly_the_generators_output() -> None:
    files = load_script("scripts/gen_paper_configs.py").render()
    generated = {ROOT / "configs" / rel for rel in files}
    committed = set((ROOT / "configs" / "paper").rglob("*.yaml")) | set((ROOT / "configs" / "cpu").rglob("*.yaml"))
    assert committed == generated
    stale = [str(rel) for rel, text in files.items() if (ROOT / "configs" / rel).read_text() != text]
    assert not stale, f"rerun scripts/gen_paper_configs.py: {stale[:3]}"


def test_tsn_2d_rows_use_resnet18_as_table_5() -> None:
    for topology in ("2d", "2to3d"):
        cfg = load_config(ROOT / "configs" / "paper" / "methods" / f"tsn_{topology}.yaml")
        table5 = load_config(ROOT / "configs" / "paper" / "backbones" / f"resnet18_{topology}.yaml")
        assert cfg.model == table5.model and cfg.data == table5.data


def test_ablate_takes_a_shell_glob_of_configs_after_one_config_flag() -> None:
    """The README's `sparsessp ablate --config configs/cpu/design/*.yaml ...` gives one variant per file."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    files = sorted((ROOT / "configs" / "cpu" / "design").glob("*.yaml"))
    args = parser.parse_args(["--config", *map(str, files), "--out", "x", "--config", str(SHIPPED[0])])
    assert args.config == [*files, SHIPPED[0]]
