"""The paper's tables as grids (`ablate --grid table1 ...`, `bench --grid table6`) and their report layout."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from conftest import tiny_train_config
from sparsessp.cli.main import main
from sparsessp.config import load_config
from sparsessp.errors import ConfigError
from sparsessp.grids import GRIDS, PAPER_GRIDS, cells, grid_configs, parse_ratios
from sparsessp.report import layout, paper

TABLES = Path(__file__).resolve().parents[1].parent / "shared" / "paper" / "tables"
needs_tables = pytest.mark.skipif(not TABLES.is_dir(), reason=f"the paper's tables are not at {TABLES}")


def _csv(name: str) -> list[dict[str, str]]:
    with open(TABLES / name, newline="") as fh:
        return list(csv.DictReader(fh))


@needs_tables
@pytest.mark.parametrize("name", ["table1", "table2", "table3", "table5", "table6"])
def test_each_paper_grid_has_exactly_the_papers_rows_in_its_order(name: str) -> None:
    grid = PAPER_GRIDS[name]
    expected = [tuple(row[c] for c in grid.columns) for row in _csv(grid.paper_csv)]
    assert [row.labels for row in grid.rows] == expected
    ratios = sorted({int(k.rpartition("_r")[2]) for k in _csv(grid.paper_csv)[0] if re.search(r"_r\d+$", k)})
    if ratios:
        assert list(grid.ratios) == ratios


def test_paper_cells_set_every_design_key_and_share_folders_across_tables() -> None:
    base = load_config(None, [])
    for name in ("table1", "table2", "table3", "table5", "table6", "table7"):
        for cfg_name, cfg in grid_configs(base, name):
            assert cfg.model.interpolation in ("prefix", "postfix", "none"), cfg_name
    table3 = {c.name: c for c in cells(GRIDS["table3"], [4])}
    table1 = {c.name: c for c in cells(GRIDS["table1"], [4])}
    table2 = {c.name: c for c in cells(GRIDS["table2"], [4])}
    same = table3["DoDNet/3-to-2D/r4"].folder
    assert same == table1["DoDNet/prefix/3-to-2D/r4"].folder == table2["DoDNet/3D/3-to-2D/r4"].folder
    assert table1["DoDNet/postfix/3-to-2D/r4"].folder != same != table2["DoDNet/2D/3-to-2D/r4"].folder
    tsn = dict(grid_configs(base, "table3", [2]))
    assert tsn["TSNs/2D/r2"].model.backbone == "resnet18" and tsn["TSNs/3D/r2"].model.backbone == "unet"
    seven = cells(GRIDS["table7"], [2, 8])
    assert [(c.name, c.ratio) for c in seven] == [("Multi-Net/r1", 1), ("Tgnet-3-to-2D/r2", 2), ("Tgnet-3-to-2D/r8", 8)]
    assert len({c.folder for grid in GRIDS.values() for c in cells(grid)}) > 100


def test_ratios_parse_and_refuse_bad_lists() -> None:
    assert parse_ratios("2,4,8") == (2, 4, 8)
    for bad in ("2,x", "0,2", "2,2", ""):
        with pytest.raises(ConfigError, match="--ratios"):
            parse_ratios(bad)


def _row(labels: dict[str, str], ratio: int, mse: float, mae: float, r2: float, **extra: object) -> dict:
    overall = {"MSE": mse, "MAE": mae, "R2": r2, "pearson": 0.5}
    return {"name": "/".join(labels.values()) + f"/r{ratio}", "labels": labels, "extra": {}, "ratio": ratio,
            "status": "trained", "steps": 1, "train_s": 1.0, "overall": overall, **extra}


def test_ratio_table_groups_by_ratio_bolds_the_best_and_puts_the_papers_numbers_beside() -> None:
    grid = GRIDS["table2"]
    a, b = {"approach": "DoDNet", "projection": "3D", "topology": "3-to-2D"}, \
        {"approach": "DoDNet", "projection": "2D", "topology": "3-to-2D"}
    rows = [_row(a, 2, 0.5, 0.4, 0.3), _row(b, 2, 0.6, 0.3, 0.2), _row(a, 4, 0.7, 0.5, 0.1),
            {**_row(b, 4, 0, 0, 0), "status": "failed: x", "overall": None}]
    theirs = {("DoDNet", "3D", "3-to-2D"): {2: {"MSE": 0.5128, "MAE": 0.4118, "R2": 0.4516}}}
    groups, headers, body = layout.ratio_table(rows, grid, theirs)
    assert groups == [("", 3), ("r = 2", 6), ("r = 4", 3)]
    assert headers[3:9] == ["MSE", "MAE", "R2", "paper MSE", "paper MAE", "paper R2"]
    assert body[0][3:9] == ["**0.5000**", "0.4000", "**0.3000**", "**0.5128**", "**0.4118**", "**0.4516**"]
    assert body[1][3:9] == ["0.6000", "**0.3000**", "0.2000", "—", "—", "—"]
    assert body[1][9:] == ["—", "—", "—"] and body[0][9:] == ["**0.7000**", "**0.5000**", "**0.1000**"]


@needs_tables
def test_table7_improvement_reproduces_the_papers_figures_from_its_own_numbers() -> None:
    theirs = paper.structure_table(TABLES)
    rows = []
    for (method, ratio), per in sorted(theirs.items(), key=lambda item: item[0][1]):
        if "dna" not in per:
            continue
        structures = {k: {**v, "pearson": None} for k, v in per.items() if k != "All"}
        rows.append({**_row({"method": method}, ratio, *(per["All"][m] for m in ("MSE", "MAE", "R2"))),
                     "per_structure": structures})
    groups, headers, body, note = layout.structure_table(rows, theirs)
    assert headers[1:7] == ["MSE", "MAE", "R2", "paper MSE", "paper MAE", "paper R2"]
    delta = body[-1]
    assert delta[0].startswith("Δ") and "Multi-Net" in note
    assert [g[0] for g in groups] == ["", "Multi-Net (r = 1)", "Tgnet-3-to-2D (r = 2)"]
    ours_r2 = delta[7:10]  # Tgnet r = 2, ours: MSE, MAE, R2
    assert ours_r2 == ["6.4782", "3.6543", "8.2084"] and delta[10:13] == ours_r2  # the paper's, same formula
    dna = next(line for line in body if line[0] == "dna")
    assert dna[7:10] == ["**0.4873**", "**0.4639**", "**0.4808**"] and dna[1] == "0.5806"


def test_ablate_table7_end_to_end_writes_the_paper_layout_as_markdown_and_self_contained_html(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], one_thread: None
) -> None:
    config = tiny_train_config(tmp_path, ["dna", "lamin_b1"], seed=1, samples_per_epoch=2)
    out = tmp_path / "t7"
    argv = ["ablate", "--grid", "table7", "--ratios", "2", "--config", str(config), "--out", str(out),
            "--steps", "1", "--no-report"]
    assert main(argv) == 0
    rows = json.loads((out / "results.json").read_text())
    assert [(r["name"], r["ratio"], r["status"]) for r in rows] == [
        ("Multi-Net/r1", 1, "trained"), ("Tgnet-3-to-2D/r2", 2, "trained")]
    assert set(rows[1]["per_structure"]) == {"dna", "lamin_b1"}
    md = (out / "results.md").read_text()
    assert "Δ over Multi-Net r = 1 (%)" in md and f"{rows[1]['per_structure']['dna']['MSE']:.4f}" in md
    html = (out / "results.html").read_text()
    assert "data:image/png;base64," in html and "<img src=\"r2" not in html and "colspan" in html
    if TABLES.is_dir():
        assert "paper MSE" in md and "0.5806" in md  # the paper's Multi-Net dna MSE beside ours
