"""fp32 against the default on the CPU, side by side in one run: training and predict_volume.

The reference is the path before issue 12: fp32, contiguous weights (and 4 windows per model call for
prediction). The default is ``precision: auto`` (bf16 where the CPU runs it natively, else fp32) with
``memory_format: auto`` (channels-last weights on a CPU) and, for prediction, the automatic windows per call.
Training: the quickstart's widths (channels [16, 32, 64, 128], TSNs, r = 4, batch 8, patch 32 x 64 x 64)
for the 2d, 3to2d (embed 64) and 3d bodies, through the trainer's own Fabric (``make_fabric``: autocast,
input conversion, Adam), one fixed batch. Prediction: ``predict_volume`` of the quickstart model on a
16 x 512 x 512 TL stack (weights from ``--checkpoint``, else the fresh model). The two are timed in
alternating rounds (A B, then B A, ...) so that load from other processes hits both alike; medians are
reported. Quality beside the speed: relative L2 of the outputs against fp32 (same weights, same input),
and each training run's loss after the timed steps (both take the same steps from the same weights on the
same batch).

    PYTHONPATH=src .venv/bin/python benchmarks/cpu_bench.py --threads 2
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from pathlib import Path
from typing import Any

TARGETS = {"2d": 1.5, "3to2d": 1.8, "predict": 1.3}
"""Speed-ups the default must reach over fp32 (issue 12)."""

def quickstart_cfg(body: str, precision: str) -> Any:
    from sparsessp.cli.quickstart import quickstart_config

    overrides = [f"model.topology={body}", f"train.precision={precision}", "train.accelerator=cpu"]
    if body == "3to2d":
        overrides.append("model.embed_dim=64")
    return quickstart_config(overrides)


def relative_l2(a: Any, b: Any) -> float:
    import numpy as np

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


class TrainRun:
    """One precision and memory format's model + optimiser, set up as the trainer does, stepping on one batch."""

    def __init__(self, body: str, precision: str, layout: str, weights: dict, batch: dict) -> None:
        import torch

        from sparsessp import memory_format
        from sparsessp.engine.trainer import make_fabric
        from sparsessp.models.registry import build_model

        cfg = quickstart_cfg(body, precision)
        self.fabric = make_fabric(cfg)
        model = build_model(cfg)
        model.load_state_dict(weights)
        memory_format.for_device(model, layout, "cpu")
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.train.lr)
        self.model, self.optimizer = self.fabric.setup(model, optimizer)
        self.batch = batch
        self.loss = float("nan")

    def step(self) -> None:
        import torch.nn.functional as F

        pred = self.model(self.batch["signal"], self.batch["task_id"])
        loss = F.mse_loss(pred.float(), self.batch["target"])
        self.optimizer.zero_grad(set_to_none=True)
        self.fabric.backward(loss)
        self.optimizer.step()
        self.loss = float(loss.detach())

    def output(self) -> Any:
        """The model's prediction of the batch in eval mode (autograd off) under this precision."""
        import torch

        module = self.model.module
        module.eval()
        try:
            with torch.no_grad(), self.fabric.autocast():
                return module(self.batch["signal"], self.batch["task_id"]).float().numpy()
        finally:
            module.train()


def alternating(runs: dict[str, Any], rounds: int, timed: Any) -> dict[str, list[float]]:
    """``timed(run)`` for every run, ``rounds`` times, the order reversed every other round."""
    names = list(runs)
    results: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            results[name].append(timed(runs[name]))
    return results


def bench_training(body: str, variants: dict[str, tuple[str, str]], steps: int, rounds: int) -> dict[str, Any]:
    """Training it/s of each variant (name -> precision, memory format); the first is the reference."""
    import torch

    from sparsessp.models.registry import build_model

    torch.manual_seed(0)
    cfg = quickstart_cfg(body, "fp32")
    weights = copy.deepcopy(build_model(cfg).state_dict())
    depth, height, width = cfg.data.patch
    b = cfg.train.batch_size
    gen = torch.Generator().manual_seed(1)
    batch = {
        "signal": torch.randn(b, 1, depth // cfg.data.sparse_ratio, height, width, generator=gen),
        "target": torch.randn(b, 1, depth, height, width, generator=gen),
        "task_id": torch.arange(b) % cfg.num_tasks,
    }
    runs = {name: TrainRun(body, *variant, weights, batch) for name, variant in variants.items()}
    outputs = {name: run.output() for name, run in runs.items()}
    for run in runs.values():  # warm-up: oneDNN builds its kernels on the first call
        run.step()

    def timed(run: TrainRun) -> float:
        start = time.perf_counter()
        for _ in range(steps):
            run.step()
        return steps / (time.perf_counter() - start)

    speeds = alternating(runs, rounds, timed)
    reference = outputs[next(iter(variants))]
    return {
        "it_s": {name: statistics.median(v) for name, v in speeds.items()},
        "rounds": speeds,
        "rel_l2": {name: relative_l2(out, reference) for name, out in outputs.items()},
        "loss": {name: run.loss for name, run in runs.items()},
        "steps_each": 1 + steps * rounds,
    }


PREVIOUS_WINDOW_BATCH = 4
"""Windows per model call of ``predict_volume`` before issue 12 (now chosen by window size: 16 here)."""


def _predict(model: Any, tl: Any, precision: str, layout: str, window_batch: int | None) -> Any:
    from sparsessp import memory_format
    from sparsessp.inference import predict_volume

    memory_format.for_device(model, layout, "cpu")
    return predict_volume(model, tl, model.structures[0], precision=precision, window_batch=window_batch)


def bench_predict(
    variants: dict[str, tuple[str, str, int | None]], rounds: int, checkpoint: Path | None, shape: tuple[int, int, int]
) -> dict:
    """Seconds per ``predict_volume`` of each variant (name -> precision, memory format, windows per call)."""
    import numpy as np
    import torch
    from scipy.ndimage import gaussian_filter

    from sparsessp.models.registry import build_model

    if checkpoint is not None:
        from sparsessp.engine.checkpoint import load_model

        model = load_model(checkpoint)
    else:
        torch.manual_seed(0)
        model = build_model(quickstart_cfg("2d", "fp32"))
    model.eval()
    rng = np.random.default_rng(0)
    tl = gaussian_filter(rng.standard_normal(shape).astype(np.float32), (1.0, 3.0, 3.0))
    outputs = {name: _predict(model, tl, *v) for name, v in variants.items()}  # also the warm-up

    def timed(variant: tuple[str, str, int | None]) -> float:
        start = time.perf_counter()
        _predict(model, tl, *variant)
        return time.perf_counter() - start

    seconds = alternating(variants, rounds, timed)
    reference = outputs[next(iter(variants))]
    return {
        "seconds": {name: statistics.median(v) for name, v in seconds.items()},
        "rounds": seconds,
        "rel_l2": {name: relative_l2(out, reference) for name, out in outputs.items()},
        "output_shape": list(reference.shape),
    }


def report(train: dict[str, dict], predict: dict | None, label: str) -> str:
    """The side-by-side table (markdown): variant ``fp32`` (the reference) against ``default`` (``label``)."""
    lines = [
        f"| job | fp32 | {label} | speed-up | target | rel. L2 vs fp32 | loss fp32 / default |",
        "|---|---|---|---|---|---|---|",
    ]
    for body, res in train.items():
        a, b = res["it_s"]["fp32"], res["it_s"]["default"]
        target = TARGETS.get(body)
        lines.append(
            f"| train {body} (it/s) | {a:.3g} | {b:.3g} | {b / a:.2f}x | {f'{target}x' if target else '-'} | "
            f"{res['rel_l2']['default']:.1e} | {res['loss']['fp32']:.4f} / {res['loss']['default']:.4f} |"
        )
    if predict is not None:
        a, b = predict["seconds"]["fp32"], predict["seconds"]["default"]
        lines.append(
            f"| predict_volume (s) | {a:.3g} | {b:.3g} | {a / b:.2f}x | {TARGETS['predict']}x | "
            f"{predict['rel_l2']['default']:.1e} | - |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--bodies", nargs="*", default=["2d", "3to2d", "3d"], choices=["2d", "3to2d", "3d", "2to3d"],
                        help="training bodies to time (none: prediction only)")
    parser.add_argument("--steps", type=int, default=0, help="steps per timed round (default: 5 for 2d, else 1)")
    parser.add_argument("--rounds", type=int, default=4, help="alternating timed rounds per precision")
    parser.add_argument("--predict-shape", type=int, nargs=3, default=[16, 512, 512], metavar=("Z", "Y", "X"))
    parser.add_argument("--no-predict", action="store_true")
    parser.add_argument("--checkpoint", type=Path, default=None, help="quickstart checkpoint for predict_volume")
    args = parser.parse_args(argv)

    import torch

    from sparsessp.engine.trainer import quiet_lightning
    from sparsessp.precision import best

    torch.set_num_threads(args.threads)
    quiet_lightning()
    default = best("cpu")
    label = f"default ({default}, channels-last)"
    if default == "fp32":
        print("this CPU has no native bf16 (AVX512-BF16 / AMX): the default is fp32 with channels-last weights")
    print(f"threads {args.threads}, default precision on this CPU: {default}", flush=True)
    train: dict[str, dict] = {}
    for body in args.bodies:
        steps = args.steps or (5 if body == "2d" else 1)
        variants = {"fp32": ("fp32", "contiguous"), "default": (default, "auto")}
        train[body] = bench_training(body, variants, steps, args.rounds)
        print(f"train {body}: {train[body]['rounds']}", flush=True)
    predict = None
    if not args.no_predict:
        variants = {"fp32": ("fp32", "contiguous", PREVIOUS_WINDOW_BATCH), "default": (default, "auto", None)}
        predict = bench_predict(variants, args.rounds, args.checkpoint, tuple(args.predict_shape))
        print(f"predict_volume {args.predict_shape}: {predict['rounds']}", flush=True)
    print(report(train, predict, label))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
