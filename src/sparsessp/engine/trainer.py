"""The training engine: Lightning Fabric, Adam + MSE, budgets, validation, checkpoints and exact resume.

One code path for one CPU, one GPU and DDP over N devices / M nodes (Fabric launches the processes;
with ``strategy="ddp"`` it re-runs the command line, with ``"ddp_spawn"`` it spawns :func:`train`'s
worker, which also works from Python). Each rank reads its shard of every epoch's shuffled order
(mixed batches) or its slice of the step's one-structure batch (``train.batches: per_task``, Multi-Net's
default: :class:`~sparsessp.engine.sampler.TaskBatchSampler`); rank 0 alone validates, writes checkpoints
and logs. ``train.init_from`` starts a fresh run from a sparsessp checkpoint's or a released file's weights
(:func:`sparsessp.models.compat.initial_state_dict`); a resumed run takes ``last.ckpt``'s instead.

Exact resume: ``last.ckpt`` holds the weights, optimiser, grad scaler, epoch, step, each rank's RNG
states, the data position (epoch, batches done in it, number of ranks) and the epoch's running loss.
Patch ``i`` of epoch ``e`` depends only on (seed, e, i) and the order of an epoch only on (seed, e), so
a run resumed from any ``last.ckpt`` sees the same batches in the same RNG state as an uninterrupted
run. Validation runs with the RNG states saved and put back, so whether it ran does not matter.
SIGINT / SIGTERM stop after the current step, save ``last.ckpt`` and exit with 130 / 143.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sparsessp.engine.runfolder import Progress, RunFolder
from sparsessp.errors import ConfigError, UserError

if TYPE_CHECKING:
    import torch
    from lightning.fabric import Fabric

    from sparsessp.config import Config
    from sparsessp.data.dataset import VolumeRecord

log = logging.getLogger(__name__)

_SIGNAL_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}
_SKIPS_PARAMETERS = frozenset({"multinet"})
"""Conditionings whose networks leave parameters unused in a step (Multi-Net runs only the batch's tasks):
DDP must look for unused parameters with them, and only with them (the search costs a graph walk per step)."""


class Interrupted(UserError):
    """Training stopped by SIGINT / SIGTERM after saving ``last.ckpt``; ``exit_code`` is 130 / 143."""

    def __init__(self, message: str, exit_code: int, rank: int = 0) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.rank = rank


class _StopFlag:
    """SIGINT / SIGTERM only set a flag that the loop reads between steps; a second SIGINT aborts at once."""

    def __init__(self) -> None:
        self.signum = 0
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in _SIGNAL_EXIT:
            self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


def _ignore_stop_signals(worker_id: int) -> None:
    """DataLoader worker init: leave SIGINT / SIGTERM to the main process, which saves before it stops."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def quiet_lightning() -> None:
    """Keep Lightning's info lines (process registration, precision notes) off the console; warnings stay."""
    import lightning.fabric  # noqa: F401  (importing it sets the levels that are raised here)

    for name in ("lightning.fabric", "lightning.pytorch"):  # the latter owns Lightning's rank-zero messages
        logging.getLogger(name).setLevel(logging.WARNING)


def with_launch_options(
    cfg: Config,
    devices: int | None = None,
    accelerator: str | None = None,
    num_nodes: int | None = None,
    strategy: str | None = None,
) -> Config:
    """``cfg`` with the given ``train.*`` launch options replaced (validated), so config.yaml records them."""
    from sparsessp.config import config_from_dict

    options = {"devices": devices, "accelerator": accelerator, "num_nodes": num_nodes, "strategy": strategy}
    overrides = [f"train.{key}={value}" for key, value in options.items() if value is not None]
    return config_from_dict(cfg.model_dump(mode="json"), overrides) if overrides else cfg


def make_fabric(cfg: Config) -> Fabric:
    """A Fabric for ``cfg.train`` (accelerator, devices, nodes, strategy, precision); errors are one line."""
    from lightning.fabric import Fabric
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    from sparsessp.precision import fabric_precision

    t = cfg.train
    precision = fabric_precision(t.precision, t.accelerator)
    strategy: Any = "ddp" if t.strategy == "auto" and t.devices * t.num_nodes > 1 else t.strategy
    name = strategy
    if strategy in ("ddp", "ddp_spawn") and cfg.model.conditioning in _SKIPS_PARAMETERS:
        from lightning.fabric.strategies import DDPStrategy

        start = "spawn" if strategy == "ddp_spawn" else "popen"
        strategy = DDPStrategy(start_method=start, find_unused_parameters=True)
    try:
        return Fabric(
            accelerator=t.accelerator,
            devices=t.devices,
            num_nodes=t.num_nodes,
            strategy=strategy,
            precision=precision,  # type: ignore[arg-type]
        )
    except (MisconfigurationException, ValueError, RuntimeError) as exc:
        reason = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
        raise ConfigError(
            f"train: cannot run on accelerator={t.accelerator} devices={t.devices} num_nodes={t.num_nodes} "
            f"strategy={name}: {reason}"
        ) from None


def _compiled(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``torch.compile(model)`` (``train.compile``); on a CPU inductor builds C++ kernels, so a compiler must exist."""
    import torch

    if device.type == "cpu" and not any(shutil.which(c) for c in (os.environ.get("CXX", "g++"), "c++", "clang++")):
        raise UserError("train.compile on a CPU needs a C++ compiler (g++ or clang++) on PATH; "
                        "install one or set train.compile=false")
    return torch.compile(model)


def train(
    cfg: Config,
    out_dir: str | Path,
    resume: bool = False,
    devices: int | None = None,
    accelerator: str | None = None,
    num_nodes: int | None = None,
    strategy: str | None = None,
) -> Path:
    """Train the model ``cfg`` describes into the run folder ``out_dir`` (resuming from its last.ckpt); returns it.

    Launch options given here replace ``cfg.train``'s. Raises :class:`Interrupted` after SIGINT / SIGTERM
    (``last.ckpt`` saved), a :class:`~sparsessp.errors.UserError` for a folder that already holds a run
    (without ``resume``) or holds none (with it).
    """
    cfg = with_launch_options(cfg, devices, accelerator, num_nodes, strategy)
    out = Path(out_dir)
    RunFolder(out).check(resume)
    fabric = make_fabric(cfg)
    return fabric.launch(_run, cfg, out, resume)


def _run(fabric: Fabric, cfg: Config, out: Path, resume: bool) -> Path:
    """The work of one rank (Fabric calls it in every process)."""
    import torch

    from sparsessp.engine.seeding import set_deterministic

    previous = set_deterministic(cfg.train.deterministic, fabric.device)
    stop = _StopFlag()
    try:
        return _Trainer(fabric, cfg, RunFolder(out, active=fabric.global_rank == 0), stop).fit(resume)
    finally:
        stop.restore()
        torch.use_deterministic_algorithms(previous)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


@dataclass
class _Position:
    """Where training stands: ``epoch`` = epochs completed, ``batch`` = batches done in the current one."""

    epoch: int = 0
    batch: int = 0
    step: int = 0
    loss_sum: float = 0.0
    loss_count: int = 0
    best_val: float | None = None
    elapsed: float = 0.0


class _Trainer:
    """One rank's training loop; see the module docstring for what is exact and why."""

    def __init__(self, fabric: Fabric, cfg: Config, run: RunFolder, stop: _StopFlag) -> None:
        self.fabric = fabric
        self.cfg = cfg
        self.run = run
        self.stop = stop
        self.rank = fabric.global_rank
        self.world = fabric.world_size
        self.rank0 = self.rank == 0
        self.pos = _Position()
        self.progress: Progress | None = None

    # ------------------------------------------------------------------ setup

    def fit(self, resume: bool) -> Path:
        import torch

        from sparsessp import memory_format
        from sparsessp.data.dataset import PatchDataset, load_split
        from sparsessp.engine.checkpoint import check_same_model, load_checkpoint, load_weights
        from sparsessp.engine.sampler import ResumableSampler, TaskBatchSampler
        from sparsessp.engine.seeding import derive_seed, restore_rng_state, seed_everything
        from sparsessp.models.registry import build_model
        from sparsessp.precision import fabric_precision

        cfg, fabric = self.cfg, self.fabric
        ckpt = load_checkpoint(self.run.last) if resume else None
        if ckpt is not None:
            check_same_model(cfg, ckpt, self.run.last)

        seed_everything(cfg.train.seed)
        model = build_model(cfg)
        if ckpt is not None:
            load_weights(model, ckpt["model"], self.run.last)
        elif cfg.train.init_from is not None:
            from sparsessp.models.compat import initial_state_dict

            load_weights(model, initial_state_dict(cfg.train.init_from, model), cfg.train.init_from)
        memory_format.for_device(model, cfg.train.memory_format, fabric.device)
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.train.lr)
        # Fabric keeps the uncompiled module as ``self.model.module``: checkpoints and validation use it as is
        self.model, self.optimizer = fabric.setup(_compiled(model, fabric.device) if cfg.train.compile else model,
                                                  optimizer)
        if ckpt is not None:
            self.optimizer.load_state_dict(ckpt["optimizer"])
            for group in self.optimizer.param_groups:
                group["lr"] = cfg.train.lr
            if ckpt.get("scaler"):
                fabric.strategy.precision.load_state_dict(ckpt["scaler"])

        with fabric.rank_zero_first():  # rank 0 prepares the cache, the others then read it
            self.train_records = load_split(cfg, "train")
            self.val_records = _cap_per_structure(load_split(cfg, "val"), cfg.train.val_volumes) if self.rank0 else []
        self.dataset = PatchDataset(
            self.train_records,
            cfg.data.patch,
            cfg.data.sparse_ratio,
            cfg.data.flip,
            cfg.data.samples_per_epoch,
            cfg.train.seed,
        )
        self.sampler: ResumableSampler | TaskBatchSampler
        if cfg.per_task_batches:
            self.sampler = TaskBatchSampler(self.dataset, cfg.train.batch_size, self.world, self.rank, cfg.train.seed)
        else:
            self.sampler = ResumableSampler(len(self.dataset), self.world, self.rank, cfg.train.seed)
        self.steps_per_epoch = math.ceil(self.sampler.num_samples / cfg.train.batch_size)

        self.run.open(cfg, int(ckpt.get("epoch", 0)) if ckpt is not None else None)
        seed_everything(derive_seed(cfg.train.seed, self.rank + 1))
        if ckpt is not None:
            self._restore_position(ckpt)
            rng = ckpt.get("rng") or []
            if len(rng) == self.world:
                restore_rng_state(rng[self.rank], fabric.device)
        params = sum(p.numel() for p in model.parameters())
        self._log(
            f"{'resumed' if ckpt else 'started'}: {params:,} parameters, {len(self.train_records)} train / "
            f"{len(self.val_records)} val volumes, {self.steps_per_epoch} steps per epoch on {self.world} "
            f"process(es) ({fabric.device.type}, precision {fabric_precision(cfg.train.precision, fabric.device.type)})"
            + (f", from epoch {self.pos.epoch} step {self.pos.step}" if ckpt else "")
        )
        return self._loop()

    def _restore_position(self, ckpt: dict[str, Any]) -> None:
        data = ckpt.get("data") or {}
        batch = int(data.get("batch", 0))
        saved_world = int(data.get("world_size", self.world))
        if saved_world != self.world:
            batch = batch * saved_world // self.world
            self._log(
                f"warning: resuming with {self.world} process(es) instead of {saved_world}: the data order and "
                "random states differ from an uninterrupted run"
            )
        self.pos = _Position(
            epoch=int(ckpt.get("epoch", 0)),
            batch=batch,
            step=int(ckpt.get("step", 0)),
            loss_sum=float(data.get("loss_sum", 0.0)),
            loss_count=int(data.get("loss_count", 0)),
            best_val=ckpt.get("best_val"),
            elapsed=float(ckpt.get("elapsed", 0.0)),
        )

    # ------------------------------------------------------------------ loop

    def _loop(self) -> Path:
        import torch

        cfg, pos = self.cfg, self.pos
        t = cfg.train
        max_steps = t.max_steps or math.inf
        budget_s = t.max_minutes * 60 if t.max_minutes else math.inf
        if pos.epoch >= t.epochs or pos.step >= max_steps or pos.elapsed >= budget_s:
            self._log(f"nothing to do: the run is complete at epoch {pos.epoch} step {pos.step}")
            self._finish()
            return self.run.root
        total = int(min(t.epochs * self.steps_per_epoch, max_steps))
        self.progress = Progress(self.rank0, total, pos.step)
        self._t0 = time.monotonic()
        self._elapsed0 = pos.elapsed
        device = self.fabric.device
        self.stop.install()  # from here on a signal saves before it stops; before, nothing is lost by stopping
        try:
            final = False
            while not final:
                loss_sum = torch.tensor(pos.loss_sum, dtype=torch.float64, device=device)
                for batch in self._loader():
                    loss = self._step(batch)
                    loss_sum += loss.detach().double()
                    pos.step += 1
                    pos.batch += 1
                    pos.loss_count += 1
                    if self.progress.due():
                        self.progress.update(pos.step, pos.epoch + 1, float(loss.detach()))
                    interrupted, time_up = self._sync_flags(self.stop.signum != 0, self._elapsed() >= budget_s)
                    if interrupted:
                        pos.loss_sum = float(loss_sum)
                        self._interrupt()
                    if pos.step >= max_steps or time_up:
                        final = True
                        break
                    if t.checkpoint_every and pos.step % t.checkpoint_every == 0 and pos.batch < self.steps_per_epoch:
                        pos.loss_sum = float(loss_sum)
                        self._save_last()
                pos.loss_sum = float(loss_sum)
                final = self._end_of_epoch(final)
        finally:
            self.progress.close()
        self._finish()
        return self.run.root

    def _loader(self) -> Any:
        """This epoch's DataLoader from the current position (a fresh one per epoch: the dataset's epoch changes)."""
        import torch
        from torch.utils.data import DataLoader

        from sparsessp.engine.sampler import CycledItems, TaskBatchSampler
        from sparsessp.engine.seeding import derive_seed

        cfg = self.cfg
        self.dataset.set_epoch(self.pos.epoch)
        batching: dict[str, Any]
        if isinstance(self.sampler, TaskBatchSampler):  # one structure's full batch per step
            self.sampler.set_position(self.pos.epoch, self.pos.batch)
            batching = {"dataset": CycledItems(self.dataset), "batch_sampler": self.sampler}
        else:
            self.sampler.set_position(self.pos.epoch, self.pos.batch * cfg.train.batch_size)
            batching = {"dataset": self.dataset, "batch_size": cfg.train.batch_size, "sampler": self.sampler}
        workers = cfg.data.num_workers
        loader = DataLoader(
            **batching,
            num_workers=workers,
            pin_memory=self.fabric.device.type == "cuda",
            worker_init_fn=_ignore_stop_signals if workers else None,
            generator=torch.Generator().manual_seed(derive_seed(cfg.train.seed, self.pos.epoch, self.rank)),
        )
        for batch in loader:
            yield self.fabric.to_device(batch)

    def _step(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        import torch
        import torch.nn.functional as F

        pred = self.model(batch["signal"], batch["task_id"])
        dtype = torch.promote_types(pred.dtype, torch.float32)
        loss = F.mse_loss(pred.to(dtype), batch["target"].to(dtype))
        self.optimizer.zero_grad(set_to_none=True)
        self.fabric.backward(loss)
        for group in self.optimizer.param_groups:
            group["lr"] = self._lr_at(self.pos.step)
        self.optimizer.step()
        return loss

    def _lr_at(self, step: int) -> float:
        """Learning rate of the update made at ``step`` (0-based): a pure function of the step, so resuming is exact."""
        t = self.cfg.train
        if step < t.warmup_steps:
            return t.lr * (step + 1) / t.warmup_steps
        if t.lr_schedule == "constant":
            return t.lr
        total = min(t.epochs * self.steps_per_epoch, t.max_steps or math.inf)
        progress = min(1.0, (step - t.warmup_steps) / max(1.0, total - t.warmup_steps))
        return 0.5 * t.lr * (1.0 + math.cos(math.pi * progress))

    def _elapsed(self) -> float:
        return self._elapsed0 + time.monotonic() - self._t0

    def _sync_flags(self, interrupted: bool, time_up: bool) -> tuple[bool, bool]:
        """Agree across ranks on stopping (any rank's signal or clock stops all, at the same step)."""
        if self.world == 1:
            return interrupted, time_up
        import torch

        flags = torch.tensor([float(interrupted), float(time_up)], device=self.fabric.device)
        flags = self.fabric.all_reduce(flags, reduce_op="sum")
        return bool(flags[0] > 0), bool(flags[1] > 0)

    def _end_of_epoch(self, final: bool) -> bool:
        """Validate when due, write the epoch's metrics row and last.ckpt; returns whether training is over."""
        t, pos = self.cfg.train, self.pos
        complete = pos.batch >= self.steps_per_epoch
        number = pos.epoch + 1
        if complete:
            pos.epoch += 1
            pos.batch = 0
        final = final or pos.epoch >= t.epochs
        train_loss = self._mean_loss()
        if self.progress is not None:
            self.progress.update(pos.step, number, train_loss)
        val = None
        if (complete and pos.epoch % t.val_every == 0) or final:
            val = self._validate()
        improved = val is not None and (pos.best_val is None or val < pos.best_val)
        if improved:
            pos.best_val = val
            self._save_best()
        lr = self.optimizer.param_groups[0]["lr"]
        seconds = self._elapsed()
        self.run.add_metrics(
            {
                "epoch": number,
                "step": pos.step,
                "train_loss": train_loss,
                "val_mse": val,
                "lr": lr,
                "seconds": round(seconds, 3),
            }
        )
        val_text = "" if val is None else f" val_mse {val:.5g}{' (best)' if improved else ''}"
        partial = "" if complete else f" (stopped after {self.pos.batch} of {self.steps_per_epoch} steps)"
        self._log(
            f"epoch {number}/{t.epochs} step {pos.step} train_loss {train_loss:.5g}{val_text} "
            f"lr {lr:.3g} {seconds:.1f}s{partial}"
        )
        if complete:
            pos.loss_sum, pos.loss_count = 0.0, 0
        self._save_last()
        return final

    def _mean_loss(self) -> float:
        """The epoch's mean training loss over every rank's batches."""
        if self.world == 1:
            return self.pos.loss_sum / max(self.pos.loss_count, 1)
        import torch

        totals = torch.tensor(
            [self.pos.loss_sum, float(self.pos.loss_count)], dtype=torch.float64, device=self.fabric.device
        )
        totals = self.fabric.all_reduce(totals, reduce_op="sum")
        return float(totals[0]) / max(float(totals[1]), 1.0)

    # ------------------------------------------------------------------ validation

    def _validate(self) -> float | None:
        """Validation MSE on whole val volumes (sliding window), mean over structures; rank 0 only."""
        value = self._validate_volumes(self.val_records) if self.rank0 else None
        self.fabric.barrier()
        return value

    def _validate_volumes(self, records: list[VolumeRecord]) -> float | None:
        import numpy as np
        import torch

        from sparsessp.engine.seeding import preserved_rng
        from sparsessp.inference import sliding_window
        from sparsessp.metrics import mse

        if not records:
            return None
        cfg, fabric = self.cfg, self.fabric
        model = self.model.module
        r = cfg.data.sparse_ratio
        dtype = next(p.dtype for p in model.parameters() if p.is_floating_point())

        def predict(x: torch.Tensor, task_ids: torch.Tensor) -> torch.Tensor:
            with fabric.autocast():
                return model(x.to(dtype), task_ids)

        per_structure: dict[str, list[float]] = {}
        was_training = model.training
        model.eval()
        try:
            with preserved_rng(fabric.device), torch.no_grad():
                for rec in records:
                    sparse = torch.from_numpy(np.array(rec.signal[::r], dtype=np.float32))[None, None]
                    pred = sliding_window(
                        predict,
                        sparse,
                        rec.task_id,
                        cfg.data.patch,
                        r,
                        overlap=cfg.inference.overlap,
                        blend=cfg.inference.blend,
                        batch_size=cfg.inference.window_batch,
                        sigma_scale=cfg.inference.sigma_scale,
                        device=fabric.device,
                    )[0, 0].numpy()
                    depth = min(pred.shape[0], rec.target.shape[0])
                    per_structure.setdefault(rec.structure, []).append(mse(pred[:depth], rec.target[:depth]))
        finally:
            model.train(was_training)
        return float(np.mean([np.mean(v) for v in per_structure.values()]))

    # ------------------------------------------------------------------ checkpoints

    def _gather(self, obj: Any) -> list[Any]:
        if self.world == 1:
            return [obj]
        import torch

        out: list[Any] = [None] * self.world
        torch.distributed.all_gather_object(out, obj)
        return out

    def _base(self) -> dict[str, Any]:
        from sparsessp.engine.checkpoint import base_state

        state = base_state(self.cfg, self.model.module.state_dict())
        state.update(epoch=self.pos.epoch, step=self.pos.step, best_val=self.pos.best_val)
        return state

    def _save_last(self) -> None:
        """Write last.ckpt (rank 0) with every rank's RNG states; all ranks take part."""
        from sparsessp.engine.checkpoint import save_checkpoint
        from sparsessp.engine.seeding import capture_rng_state

        rng = self._gather(capture_rng_state(self.fabric.device))
        if self.rank0:
            pos = self.pos
            state = self._base()
            state.update(
                optimizer=self.optimizer.state_dict(),
                scaler=self.fabric.strategy.precision.state_dict(),
                rng=rng,
                data={
                    "seed": self.cfg.train.seed,
                    "epoch": pos.epoch,
                    "batch": pos.batch,
                    "batch_size": self.cfg.train.batch_size,
                    "world_size": self.world,
                    "loss_sum": pos.loss_sum,
                    "loss_count": pos.loss_count,
                },
                elapsed=self._elapsed(),
            )
            save_checkpoint(self.run.last, state)
        self.fabric.barrier()

    def _save_best(self) -> None:
        from sparsessp.engine.checkpoint import save_checkpoint

        if self.rank0:
            save_checkpoint(self.run.best, self._base())

    def _interrupt(self) -> None:
        name = signal.Signals(self.stop.signum).name if self.stop.signum else "another rank's signal"
        self._save_last()
        message = (
            f"training stopped by {name}: saved {self.run.last} at epoch {self.pos.epoch} step {self.pos.step}; "
            "continue with --resume"
        )
        self.run.log_line(message)
        raise Interrupted(message, _SIGNAL_EXIT.get(self.stop.signum, 130), self.rank)

    # ------------------------------------------------------------------ end

    def _finish(self) -> None:
        """Check that DDP ranks agree, make sure best.ckpt exists, and wait for every rank."""
        if self.world > 1:
            digests = self._gather(_parameter_digest(self.model.module))
            same = len(set(digests)) == 1
            self._log(f"ddp: parameters {'identical' if same else 'DIFFER'} on {self.world} ranks")
        if self.rank0 and not self.run.best.is_file():
            self._save_best()
            self._log("no validation volumes: best.ckpt is the final model")
        self._log(f"done: {self.run.root} (epoch {self.pos.epoch}, step {self.pos.step})")
        self.fabric.barrier()

    def _log(self, message: str) -> None:
        if not self.rank0:
            return
        self.run.log_line(message)
        if self.progress is not None:
            self.progress.message(message)
        else:
            print(message, file=sys.stderr, flush=True)


def _parameter_digest(model: torch.nn.Module) -> str:
    """SHA-256 of every parameter's bytes: equal digests mean bit-identical weights."""
    import torch

    digest = hashlib.sha256()
    for name, param in model.named_parameters():
        digest.update(name.encode())
        digest.update(param.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _cap_per_structure(records: list[VolumeRecord], cap: int | None) -> list[VolumeRecord]:
    """At most ``cap`` validation volumes per structure (``train.val_volumes``), in manifest order."""
    if cap is None:
        return records
    kept: list[VolumeRecord] = []
    counts: dict[str, int] = {}
    for rec in records:
        if counts.get(rec.structure, 0) < cap:
            kept.append(rec)
            counts[rec.structure] = counts.get(rec.structure, 0) + 1
    return kept
