"""The one training loop of the package (pretraining and every fine-tuning method).

AdamW over the parameters that require grad, linear warmup then cosine decay to a floor,
gradient accumulation to an effective batch, clipping, mixed precision and devices through
``accelerate``. The data order is a function of (seed, step) only, and every RNG is saved in
checkpoints, so a resumed run reproduces an uninterrupted one exactly on CPU.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..config import ConfigError, TrainConfig, to_dict
from ..utils.io import atomic_write_json
from ..utils.memory import peak_rss_mb
from ..utils.repro import provenance, seed_everything
from . import deepspeed_state, fsdp_state
from .checkpoint import (
    CheckpointError,
    checkpoint_timing,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from .distributed import (
    ObjectiveModule,
    check_launch_mode,
    enable_gradient_checkpointing,
    replicated_modules,
    sync_replicated_gradients,
)
from .schedule import batch_indices, check_batch, lr_factor, make_optimizer, noise_seed
from .selection import Selector

Objective = Callable[[torch.nn.Module, dict[str, torch.Tensor], torch.Generator], tuple[torch.Tensor, dict[str, float]]]


class TrainingDiverged(RuntimeError):
    """The loss, the gradient or a trained parameter became NaN or infinite."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training: where it stopped and the checkpoint a resume starts from."""

    def __init__(self, step: int, checkpoint: Path | None, output_dir: Path, phase: str = "") -> None:
        super().__init__(f"interrupted at step {step}")
        self.step, self.checkpoint, self.output_dir, self.phase = step, checkpoint, output_dir, phase

    @classmethod
    def after_training(cls, step: int, output_dir: str | Path) -> TrainingInterrupted:
        """Ctrl-C after the last step (saving or evaluating): the final checkpoint resumes it."""
        last = list_checkpoints(Path(output_dir) / "checkpoints")
        return cls(step, last[-1] if last else None, Path(output_dir), "after training, while saving or evaluating")


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return peak_rss_mb()


def _allow_new_precision(mixed_precision: str) -> None:
    """accelerate keeps one process-wide state; several runs in one process (a study, tests)
    may use different precisions, so drop that state (the process group is kept)."""
    from accelerate.state import AcceleratorState

    if AcceleratorState._shared_state and AcceleratorState().mixed_precision != mixed_precision:
        AcceleratorState._reset_state(reset_partial_state=False)


class Trainer:
    def __init__(
        self,
        model: torch.nn.Module,
        objective: Objective,
        train_data: torch.utils.data.Dataset,
        cfg: TrainConfig,
        output_dir: str | Path,
        *,
        collate: Callable[[list[Any]], dict[str, torch.Tensor]] | None = None,
        evaluate: Callable[[torch.nn.Module], dict[str, float]] | None = None,
        identity: dict[str, Any] | None = None,
        run_config: dict[str, Any] | None = None,
        progress: bool = True,
    ):
        from accelerate import Accelerator

        self.cfg = cfg
        self.output_dir = Path(output_dir)
        self.ckpt_root = self.output_dir / "checkpoints"
        self.objective = objective
        self.data = train_data
        self.collate = collate or torch.utils.data.default_collate
        self.evaluate = evaluate
        self.identity = identity or {}
        self.run_config = run_config or {}
        self.progress = progress
        check_batch(cfg, len(train_data))
        _allow_new_precision(cfg.mixed_precision)
        from accelerate.utils import DistributedDataParallelKwargs

        # find_unused_parameters: see ObjectiveModule (a phase bank may see no row of a micro-batch)
        self.accelerator = Accelerator(mixed_precision=cfg.mixed_precision, cpu=not torch.cuda.is_available(),
                                       kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])
        plugin = getattr(self.accelerator.state, "fsdp_plugin", None)
        check_launch_mode(str(self.accelerator.distributed_type), getattr(plugin, "fsdp_version", None),
                          deepspeed_state.configure(self.accelerator, cfg))
        if self.fsdp and evaluate is not None and cfg.eval_every:
            raise ConfigError("train.eval_every under FSDP: the validation callback would run on sharded parameters; "
                              "set train.eval_every=0 (and no train.select_metric) and evaluate the saved adapter "
                              "after training", field="train.eval_every")
        world = self.accelerator.num_processes
        if cfg.batch_size % (cfg.micro_batch_size * world):
            raise ValueError(
                f"train.batch_size {cfg.batch_size} is not divisible by micro_batch_size "
                f"{cfg.micro_batch_size} x {world} processes"
            )
        self.accum = cfg.batch_size // (cfg.micro_batch_size * world)
        seed_everything(cfg.seed)
        self._trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        params = [p for _, p in self._trainable]
        if not params:
            raise ValueError("the model has no trainable parameters")
        self.num_trainable = sum(p.numel() for p in params)
        sharded = self.fsdp or deepspeed_state.is_deepspeed(self.accelerator)
        optimizer = make_optimizer(params, cfg.lr, cfg.weight_decay, sharded)
        warmup = cfg.effective_warmup()
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: lr_factor(s, warmup, cfg.max_steps, cfg.min_lr_ratio)
        )
        if cfg.gradient_checkpointing:
            enable_gradient_checkpointing(model)
        self._replicated: list[torch.nn.Parameter] = []
        if self.fsdp:  # trained modules stay whole on every rank, synchronised as under DDP
            modules = replicated_modules(model)
            for module in modules:
                module.to(self.accelerator.device)
            plugin.ignored_modules = modules
            self._replicated = [p for m in modules for p in m.parameters() if p.requires_grad]
        self.model, self.optimizer = self.accelerator.prepare(ObjectiveModule(model, objective), optimizer)
        self._zero = deepspeed_state.Zero2.of(self.accelerator, self.model, self._inner_optimizer, self._trainable)
        self._backward = self._zero.backward if self._zero else lambda loss, last: self.accelerator.backward(loss)
        self.history: list[dict[str, Any]] = []
        self.step = 0
        # training time of the segments before this one (a resumed run), and of this one so far
        self._timing_before: dict[str, Any] = {}
        self._segment_start, self._segment_times = time.perf_counter(), []
        self.selector = (Selector(self.output_dir, cfg.select_metric, cfg.early_stopping_patience, cfg.min_delta,
                                  cfg.min_steps)
                         if cfg.select_metric and evaluate else None)
        self.tb = self._tensorboard() if cfg.tensorboard and self.accelerator.is_main_process else None

    # ------------------------------------------------------------------------------ state
    @property
    def unwrapped(self) -> torch.nn.Module:
        """The method model (without the objective wrapper and the DDP / FSDP wrapper). Under FSDP
        its parameters are shards until ``fit`` returns (it unshards the model at the end)."""
        return self.accelerator.unwrap_model(self.model).model

    @property
    def fsdp(self) -> bool:
        """Parameters and optimiser state are sharded over the processes (FSDP launch)."""
        return str(self.accelerator.distributed_type).rsplit(".", 1)[-1] == "FSDP"

    @property
    def _inner_optimizer(self) -> torch.optim.Optimizer:
        return self.optimizer.optimizer if hasattr(self.optimizer, "optimizer") else self.optimizer

    def _gather(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        return self._zero.gather() if self._zero else fsdp_state.gather(
            self.model, self._inner_optimizer, [n for n, _ in self._trainable], self.accelerator.device)

    def _scatter(self, weights: dict[str, torch.Tensor], optim: dict[str, Any]) -> None:
        (self._zero.scatter(weights, optim) if self._zero else fsdp_state.scatter(
            self.model, self._inner_optimizer, [n for n, _ in self._trainable], weights, optim))

    def _save(self) -> Path | None:
        gathered = self._gather() if self.fsdp or self._zero else None  # every rank takes part
        if not self.accelerator.is_main_process:
            return None
        return save_checkpoint(
            self.ckpt_root, self.step, self.unwrapped, self._inner_optimizer,
            self.scheduler, self.identity, self.cfg.keep_checkpoints, self.run_config, gathered=gathered,
            timing=self._timing(),
        )

    def _timing(self) -> dict[str, Any]:
        """Training time over every segment of the run up to now: wall seconds, and the step times
        that enter the mean and the median (each segment's first step is left out as warm-up)."""
        before, warm = self._timing_before, self._segment_times[1:]
        return {"wall_s": before.get("wall_s", 0.0) + time.perf_counter() - self._segment_start,
                "step_time_sum_s": before.get("step_time_sum_s", 0.0) + sum(warm),
                "timed_steps": before.get("timed_steps", 0) + len(warm),
                "step_times_s": [*before.get("step_times_s", []), *(round(t, 6) for t in warm)]}

    def restore(self) -> bool:
        """Load the newest checkpoint (weights, optimiser, scheduler, RNGs, history), if any."""
        self._restored = True
        found = list_checkpoints(self.ckpt_root)
        if not found:
            return False
        self.step = load_checkpoint(found[-1], self.unwrapped, self._inner_optimizer, self.scheduler, self.identity,
                                    load_state=self._scatter if self.fsdp or self._zero else None)
        self._timing_before = checkpoint_timing(found[-1])
        hist_path = self.output_dir / "training_history.json"
        if hist_path.is_file():
            import json

            self.history = [h for h in json.loads(hist_path.read_text()) if h["step"] <= self.step]
        if self.selector is not None:
            self.selector.restore(self.step)
        return True

    # ------------------------------------------------------------------------------- loop
    def _micro_batches(self) -> list[tuple[dict[str, torch.Tensor], torch.Generator]]:
        """This process's micro-batches of the global batch, each with the generator of its
        noise (timesteps, masks). The generator is seeded by (seed, step, the micro-batch's
        offset in the global batch), so the noise of a row does not depend on the number of
        processes, and a resumed run draws exactly what an uninterrupted one would."""
        acc = self.accelerator
        idx = batch_indices(self.step, self.cfg.batch_size, len(self.data), self.cfg.seed)
        per_process = self.cfg.batch_size // acc.num_processes
        local = idx.view(acc.num_processes, -1)[acc.process_index]
        out = []
        for j, chunk in enumerate(local.view(self.accum, -1)):
            offset = acc.process_index * per_process + j * chunk.numel()
            gen = torch.Generator().manual_seed(noise_seed(self.cfg.seed, self.step, offset))
            batch = self.collate([self.data[int(i)] for i in chunk])
            out.append(({k: v.to(acc.device) if torch.is_tensor(v) else v for k, v in batch.items()}, gen))
        return out

    def _train_step(self) -> dict[str, float]:
        self.model.train()
        logs: dict[str, float] = {}
        batches = self._micro_batches()
        for i, (batch, gen) in enumerate(batches):
            last = i == len(batches) - 1
            with contextlib.nullcontext() if last else self.accelerator.no_sync(self.model):
                with self.accelerator.autocast():
                    loss, extra = self.model(batch, gen)
                if not torch.isfinite(loss):
                    self._diverged(f"non-finite loss ({loss.item()})")
                self._backward(loss / len(batches), last)
            logs["loss"] = logs.get("loss", 0.0) + loss.item() / len(batches)
            for k, v in extra.items():
                logs[k] = logs.get(k, 0.0) + (v if k == "tokens" else v / len(batches))
        if self._replicated:
            sync_replicated_gradients(self._replicated, self.accelerator.device)
        logs = self._reduce(logs)
        # FSDP: all the parameters, so that accelerate clips with the norm over every shard
        grad_norm = self.accelerator.clip_grad_norm_(
            [p for p in self.model.parameters() if p.requires_grad or self.fsdp], self.cfg.max_grad_norm
        )
        if self.cfg.mixed_precision != "fp16" and not math.isfinite(float(grad_norm)):  # fp16: the scaler skips
            self._diverged(f"non-finite gradient norm ({float(grad_norm)})")
        logs["lr"] = self.scheduler.get_last_lr()[0]
        self.optimizer.step()
        after = getattr(self.unwrapped, "after_optimizer_step", None)
        if after is not None:  # e.g. the trajectory method's proximal rank step (whole factors on every rank)
            after(logs["lr"])
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self._check_parameters()
        logs["grad_norm"] = float(grad_norm)
        return logs

    def _check_parameters(self) -> None:
        """Stop before a non-finite weight can be saved (one device sync per step)."""
        if bool(torch.stack([torch.isfinite(p).all() for _, p in self._trainable]).all()):
            return
        bad = [n for n, p in self._trainable if not bool(torch.isfinite(p).all())]
        self._diverged(f"non-finite values in {len(bad)} trained parameter tensor(s) after the update "
                       f"(e.g. {bad[0]}; is train.lr = {self.cfg.lr:g} too large?)")

    def _diverged(self, what: str) -> None:
        last = list_checkpoints(self.ckpt_root)
        raise TrainingDiverged(f"{what} at step {self.step + 1}; stopped before saving anything of this step. "
                               f"Last good checkpoint: {last[-1] if last else 'none yet'}")

    def _reduce(self, logs: dict[str, float]) -> dict[str, float]:
        """Average the logged values over processes (token counts are summed)."""
        acc = self.accelerator
        if acc.num_processes == 1:
            return logs
        keys = sorted(logs)
        values = acc.reduce(torch.tensor([logs[k] for k in keys], device=acc.device), reduction="mean")
        out = dict(zip(keys, values.tolist()))
        if "tokens" in out:
            out["tokens"] *= acc.num_processes
        return out

    def fit(self, resume: bool = False) -> dict[str, Any]:
        """Train to ``max_steps`` (continuing from the newest checkpoint with ``resume``)."""
        if resume and not getattr(self, "_restored", False) and not self.restore():
            raise CheckpointError(f"nothing to resume: no checkpoint in {self.ckpt_root}")
        cfg = self.cfg
        start_step, times = self.step, []
        self._segment_start, self._segment_times = time.perf_counter(), times
        bar = tqdm(total=cfg.max_steps, initial=self.step, disable=not self.progress or
                   not self.accelerator.is_main_process or not sys.stderr.isatty(), desc="train", dynamic_ncols=True)
        try:
            self._loop(bar, times)
        except KeyboardInterrupt:
            bar.close()
            last = list_checkpoints(self.ckpt_root)
            raise TrainingInterrupted(self.step, last[-1] if last else None, self.output_dir) from None
        bar.close()
        if cfg.save_every and self.step % cfg.save_every:
            self._save()  # the final state, so that --resume of a finished run is a no-op
        if self.selector is not None:  # the selected step's state is what the run hands on
            self.selector.load_best(self.unwrapped)
        if self.fsdp:
            self.model = fsdp_state.unshard(self.model, self.accelerator)
        return self._summary(start_step, times, time.perf_counter() - self._segment_start)

    def _loop(self, bar, times: list[float]) -> None:
        cfg = self.cfg
        while self.step < cfg.max_steps and not (self.selector and self.selector.stopped):
            t0 = time.perf_counter()
            logs = self._train_step()
            dt = time.perf_counter() - t0
            times.append(dt)
            self.step += 1
            bar.update(1)
            tok_s = logs.get("tokens", 0.0) / dt
            bar.set_postfix(loss=f"{logs['loss']:.4f}", tok_s=f"{tok_s:.0f}")
            if cfg.log_every and (self.step % cfg.log_every == 0 or self.step == cfg.max_steps):
                self.log({**logs, "step": self.step, "time_per_step": dt, "tokens_per_s": tok_s})
            stop = False
            if self.evaluate and cfg.eval_every and self.step % cfg.eval_every == 0:
                scores = self.evaluate(self.unwrapped)
                self.log({"step": self.step, **{f"eval/{k}": v for k, v in scores.items()}})
                if self.selector is not None:
                    stop = self.selector.update(self.step, scores, self.unwrapped,
                                                write=self.accelerator.is_main_process)
            if cfg.save_every and (self.step % cfg.save_every == 0 or stop):
                self._save()

    def _tensorboard(self):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ImportError("train.tensorboard needs the tensorboard package: "
                              "pip install 'lora-diffusion[tensorboard]'") from None
        return SummaryWriter(str(self.output_dir / "tensorboard"))

    def log(self, entry: dict[str, Any]) -> None:
        self.history.append(entry)
        if self.tb is not None:
            for key, value in entry.items():
                if key != "step" and isinstance(value, (int, float)):
                    self.tb.add_scalar(key, value, entry["step"])
            self.tb.flush()
        if self.accelerator.is_main_process:
            atomic_write_json(self.output_dir / "training_history.json", self.history)

    def _summary(self, start_step: int, times: list[float], wall: float) -> dict[str, Any]:
        """``wall_time_s`` and ``mean_time_per_step_s`` cover every segment of a resumed run (the
        steps redone after an interruption count once, in the segment that kept them);
        ``*_this_run`` only this call of ``fit``. The median step time is the robust figure: a
        process paused mid-step (a suspended machine) makes one step hours long and the mean with it.
        (The median covers the steps of segments saved by this version.)"""
        total = self._timing()
        if not total["timed_steps"] and times:  # a one-step run: its only step
            total = {**total, "step_time_sum_s": sum(times), "timed_steps": len(times), "step_times_s": times}
        summary = {
            "steps": self.step,
            "steps_this_run": self.step - start_step,
            "wall_time_s": total["wall_s"],
            "wall_time_this_run_s": wall,
            "mean_time_per_step_s": total["step_time_sum_s"] / total["timed_steps"] if total["timed_steps"] else None,
            "median_time_per_step_s": statistics.median(total["step_times_s"]) if total["step_times_s"] else None,
            "peak_memory_mb": peak_memory_mb(self.accelerator.device),
            "trainable_parameters": self.num_trainable,
            "effective_batch": self.cfg.batch_size,
            "accumulation_steps": self.accum,
            "processes": self.accelerator.num_processes,
            "device": str(self.accelerator.device),
            "train_config": to_dict(self.cfg),
            **({"selection": self.selector.summary()} if self.selector is not None else {}),
            "config": self.run_config,
            **provenance(self.cfg.seed),
        }
        if self.accelerator.is_main_process:
            atomic_write_json(self.output_dir / "training_summary.json", summary)
        return summary
