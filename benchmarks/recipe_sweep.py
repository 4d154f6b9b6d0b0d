"""Train and evaluate many short recipes on SynthCell at a fixed step budget, several at a time, on one device.

Why: the quickstart must reach a useful test R2 in a few minutes on two CPU cores, and its budget is a
step count. What a recipe reaches after N steps does not depend on the device, so a GPU can try many
recipes (model, optimiser, data options) in the time the CPU needs for one; the CPU then only has to
time the winner. Each variant is ``{"name", "steps", "set": [overrides], "data": {synthcell options}}``;
``data`` may set ``size``, ``count``, ``photons``, ``contrasts`` (a scale for every structure's
contrast, or a table) and ``optics`` (fields of :class:`~sparsessp.data.synthcell.Optics`).

    python benchmarks/recipe_sweep.py VARIANTS.json --out DIR [--jobs 4] [--config configs/quickstart.yaml]

One JSON line per variant: mean test R2 over structures, how many structures have R2 > 0, per-structure
R2, train and evaluation seconds. Lines also go to ``DIR/sweep.jsonl``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
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


def run_variant(variant: dict[str, Any], root: str, out: str, config: str) -> dict[str, Any]:
    """Train one variant to its step budget, evaluate best.ckpt on the test split, return the summary."""
    import torch

    from sparsessp.config import load_config
    from sparsessp.engine.trainer import quiet_lightning, train
    from sparsessp.evaluation import evaluate_run

    torch.set_num_threads(2)
    quiet_lightning()
    overrides = [
        f"data.root={root}",
        "data.synthcell=null",
        f"train.max_steps={variant['steps']}",
        "train.max_minutes=null",
        *variant.get("set", []),
    ]
    cfg = load_config(config, overrides)
    run_dir = Path(out) / variant["name"]
    log = run_dir.with_suffix(".log")
    started = time.perf_counter()
    with open(log, "w") as fh:
        stderr, sys.stderr = sys.stderr, fh
        try:
            train(cfg, run_dir)
            trained = time.perf_counter()
            result = evaluate_run(run_dir, with_ssim=False, progress=lambda msg: None)
        finally:
            sys.stderr = stderr
    per = {k: round(float(v["R2"]), 3) for k, v in result.per_structure.items()}
    return {
        "name": variant["name"],
        "steps": variant["steps"],
        "R2": round(float(result.overall["R2"]), 4),
        "n_pos": sum(v > 0 for v in per.values()),
        "train_s": round(trained - started, 1),
        "eval_s": round(time.perf_counter() - trained, 1),
        "per": per,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", help="JSON file: a list of variants")
    parser.add_argument("--out", required=True, help="folder for data, runs and sweep.jsonl")
    parser.add_argument("--jobs", type=int, default=4, help="variants trained at the same time")
    parser.add_argument("--config", default="configs/quickstart.yaml", help="base config the overrides apply to")
    args = parser.parse_args(argv)
    variants = json.loads(Path(args.variants).read_text())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    roots = {}
    for v in variants:
        spec = v.get("data", {})
        root = data_root(out, spec)
        if root not in roots.values():
            t0 = time.perf_counter()
            make_data(root, spec, workers=8)
            print(json.dumps({"data": spec, "root": str(root), "seconds": round(time.perf_counter() - t0, 1)}),
                  flush=True)
        roots[v["name"]] = root
    with ProcessPoolExecutor(max_workers=args.jobs) as pool, open(out / "sweep.jsonl", "a") as sink:
        futures = {pool.submit(run_variant, v, str(roots[v["name"]]), str(out), args.config): v for v in variants}
        for future in as_completed(futures):
            try:
                line = future.result()
            except Exception as exc:  # one failed variant must not lose the others' results
                line = {"name": futures[future]["name"], "error": f"{type(exc).__name__}: {exc}"}
            text = json.dumps(line)
            print(text, flush=True)
            sink.write(text + "\n")
            sink.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
