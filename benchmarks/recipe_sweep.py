"""Train and evaluate many short recipes on SynthCell at a fixed step budget, several at a time, on one device.

Why: the quickstart must reach a useful test R2 in a few minutes on two CPU cores, and its budget is a
step count. What a recipe reaches after N steps does not depend on the device, so a GPU can try many
recipes (model, optimiser, data options) in the time the CPU needs for one; the CPU then only has to
time the winner. Each variant is ``{"name", "steps", "set": [overrides], "data": {synthcell options}}``;
``data`` may set ``size``, ``count``, ``photons``, ``contrasts`` (a scale for every structure's
contrast, or a table) and ``optics`` (fields of :class:`~sparsessp.data.synthcell.Optics`).

    python benchmarks/recipe_sweep.py VARIANTS.json --out DIR [--jobs 4] [--config configs/quickstart.yaml]

The variants run through :func:`sparsessp.ablation.run_ablation` (``DIR/runs/``, ``DIR/results.json`` / ``.md``:
mean test R2 over structures, how many structures have R2 > 0, per-structure R2, steps, training seconds).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any


def data_root(base: Path, spec: dict[str, Any]) -> Path:
    """A folder per distinct data specification, so variants that share data share one copy."""
    key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:10]
    return base / f"data-{key}"


def make_data(root: Path, spec: dict[str, Any], workers: int) -> None:
    """Generate the SynthCell set ``spec`` describes under ``root`` unless it is already there."""
    from sparsessp.data.synthcell import CONTRASTS, Optics, dataset_matches, generate

    contrasts = spec.get("contrasts")
    if isinstance(contrasts, (int, float)):
        scale = float(contrasts)
        contrasts = {k: v * scale for k, v in CONTRASTS.items() if k not in ("cytoplasm", "lipid_droplets", "vesicles")}
    optics = Optics(**spec["optics"]) if spec.get("optics") else None
    kwargs = {
        "size": tuple(spec.get("size", (32, 128, 128))),
        "count": int(spec.get("count", 4)),
        "seed": int(spec.get("seed", 0)),
        "photons": float(spec.get("photons", 200.0)),
        "contrasts": contrasts,
        "optics": optics,
    }
    if not dataset_matches(root, **kwargs):
        generate(root, workers=workers, **kwargs)


def main(argv: list[str] | None = None) -> int:
    from sparsessp.ablation import Variant, print_table, run_ablation
    from sparsessp.config import load_config

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", help="JSON file: a list of variants")
    parser.add_argument("--out", required=True, help="folder for data, runs/ and the results files")
    parser.add_argument("--jobs", type=int, default=4, help="variants trained at the same time")
    parser.add_argument("--config", default="configs/quickstart.yaml", help="base config the overrides apply to")
    args = parser.parse_args(argv)
    out = Path(args.out)
    variants = []
    made: set[Path] = set()
    for v in json.loads(Path(args.variants).read_text()):
        spec = v.get("data", {})
        root = data_root(out, spec)
        if root not in made:
            started = time.perf_counter()
            make_data(root, spec, workers=8)
            made.add(root)
            print(json.dumps({"data": spec, "root": str(root), "seconds": round(time.perf_counter() - started, 1)}))
        overrides = [f"data.root={root}", "data.synthcell=null", f"train.max_steps={v['steps']}",
                     "train.max_minutes=null", *v.get("set", [])]
        changes = {"steps": v["steps"], "set": v.get("set", []), "data": spec}
        variants.append(Variant(v["name"], load_config(args.config, overrides), changes))
    rows = run_ablation(variants, out, jobs=args.jobs, report=False)
    print_table(rows)
    print(f"results: {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
