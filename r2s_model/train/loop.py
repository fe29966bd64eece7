"""The optimisation loop shared by every training task: AdamW, warmup + cosine, clipping,
accumulation, AMP on CUDA, resumable state, periodic validation, a JSONL log and, at the end,
the task's export and the curves.

A task (r2s_model/train/tasks.py) says what is trained: it builds the module (whose forward
takes a batch and returns its losses, "total" among them), makes batches as a pure function
of (step, rank), validates and exports. Files under `config.out`:
    log.jsonl       one line per logged step ({"step", "lr", "loss": {...}, "samples_per_s"})
                    and per validation ({"step", "val": {...}})
    resume.pt       everything needed to continue bit-for-bit (weights, optimiser, every rank's
                    RNG, step)
    model/          the task's export
    metrics.json    the final validation summary
    curves.png      losses and validation metrics
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from r2s_model.device import resolve_device
from r2s_model.train.config import RunConfig
from r2s_model.train.distributed import DistributedContext
from r2s_model.train.plot import plot_curves
from r2s_model.train.schedule import warmup_cosine

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class Batch(Protocol):
    def to(self, device: torch.device) -> Batch: ...


class TrainingTask(Protocol):
    """What a training run trains; see the module docstring."""

    val_keys: tuple[str, ...]  # summary keys logged at each validation and plotted
    data_info: dict[str, Any]  # the training data's description, recorded with the export

    def build(self) -> nn.Module: ...

    def trainable_state(self, module: nn.Module) -> dict[str, Tensor]: ...

    def load_trainable_state(self, module: nn.Module, state: dict[str, Tensor]) -> None: ...

    def batch(self, index: int, rank: int, world_size: int) -> tuple[Batch, int]:
        """The micro-batch `index` of a rank and how many samples it holds."""
        ...

    def validate(self, module: nn.Module, limit: int | None) -> dict[str, Any]: ...

    def export(self, module: nn.Module, out: Path, metadata: dict[str, Any]) -> None: ...


class Trainer:
    """Trains `task` as `config` says; `run()` returns the final validation summary."""

    def __init__(self, config: RunConfig, task: TrainingTask, command: list[str]) -> None:
        self.config = config
        self.task = task
        self.command = command
        device = resolve_device(config.device)
        self.dist = DistributedContext.from_env(device)
        if device == "cuda":
            device = f"cuda:{self.dist.local_rank}"
        self.device = torch.device(device)
        if config.threads:
            torch.set_num_threads(config.threads)
        self.precision = config.precision
        if self.precision == "auto":
            self.precision = "bf16" if self.device.type == "cuda" else "fp32"
        if self.precision != "fp32" and self.device.type != "cuda":
            raise ValueError(f"precision {self.precision} needs CUDA; use fp32 on {self.device}")
        self.out = Path(config.out)
        torch.manual_seed(config.seed)  # identical initial weights on every rank
        self.model = task.build().to(self.device)
        # Augmentation draws differ per rank, like their data.
        torch.manual_seed(config.seed + 1_000_003 * self.dist.rank)
        self.parameters = [p for p in self.model.parameters() if p.requires_grad]
        decay = [p for p in self.parameters if p.ndim >= 2]
        no_decay = [p for p in self.parameters if p.ndim < 2]
        self.optimizer = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": config.optim.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=config.optim.lr,
        )
        optim = config.optim
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda step: warmup_cosine(
                step, warmup=optim.warmup_steps, total=optim.steps, min_ratio=optim.min_lr_ratio
            ),
        )
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.precision == "fp16")
        self.step = 0
        if (self.out / "resume.pt").is_file():
            self._load_resume()
        self.network: nn.Module = self.model
        if self.dist.enabled:
            self.network = DistributedDataParallel(
                self.model,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True,  # e.g. single-stage R2S leaves the prior projector out
            )

    # ---- the loop ------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        config = self.config
        if self.dist.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "train_config.json").write_text(json.dumps(config.to_dict(), indent=2))
        progress = tqdm(
            total=config.optim.steps,
            initial=self.step,
            desc="training",
            unit="step",
            disable=not self.dist.is_main,
        )
        first = self.step
        while self.step < config.optim.steps:
            if config.stop_after is not None and self.step - first >= config.stop_after:
                self._save_resume()
                progress.close()
                self.dist.close()
                return {}
            start = time.perf_counter()
            losses, samples = self.optimiser_step()
            self.step += 1
            rate = samples * self.dist.world_size / (time.perf_counter() - start)
            progress.update()
            progress.set_postfix(loss=f"{losses['total']:.3f}", samples_s=f"{rate:.2f}")
            if self.step % config.log_every == 0 or self.step == config.optim.steps:
                lr = self.scheduler.get_last_lr()[0]
                self._log({"step": self.step, "lr": lr, "loss": losses, "samples_per_s": rate})
            if self.step % config.save_every == 0:
                self._save_resume()
            if config.eval.every and self.step % config.eval.every == 0:
                self._validate(config.eval.limit)
        progress.close()
        self._check_replicas()
        summary = self._validate(config.eval.final_limit)
        if self.dist.is_main:
            self._export(summary)
        self.dist.barrier()
        self.dist.close()
        return summary

    def optimiser_step(self) -> tuple[dict[str, float], int]:
        """One optimiser step (all its micro-batches) -> (mean losses over ranks, samples)."""
        self.model.train()
        accumulation = self.config.optim.accumulation
        totals: dict[str, torch.Tensor] = {}
        samples = 0
        for micro in range(accumulation):
            index = self.step * accumulation + micro
            batch, size = self.task.batch(index, self.dist.rank, self.dist.world_size)
            samples += size
            last = micro == accumulation - 1
            with self._sync(last), self._autocast():
                losses = self.network(batch.to(self.device))
            self.scaler.scale(losses["total"] / accumulation).backward()
            for name, value in losses.items():
                totals[name] = totals.get(name, 0.0) + value.detach().float() / accumulation
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.parameters, self.config.optim.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        names = sorted(totals)
        means = self.dist.mean(torch.stack([totals[n] for n in names]).cpu())
        return dict(zip(names, means.tolist(), strict=True)), samples

    def _sync(self, last: bool) -> contextlib.AbstractContextManager:
        """DDP all-reduces gradients only on the last micro-batch of an accumulation."""
        if self.dist.enabled and not last:
            return self.network.no_sync()
        return contextlib.nullcontext()

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=AMP_DTYPES[self.precision])

    def _check_replicas(self) -> None:
        """Data-parallel runs end by proving that every rank holds the same weights."""
        if not self.dist.enabled:
            return
        agree, gap = self.dist.replicas_agree(self.parameters)
        replicas = {"world_size": self.dist.world_size, "agree": agree, "max_gap": gap}
        self._log({"step": self.step, "replicas": replicas})
        if not agree:
            raise RuntimeError(f"data-parallel ranks diverged: weight fingerprints differ by {gap}")

    # ---- validation, logs, state ---------------------------------------------------------

    def _validate(self, limit: int | None) -> dict[str, Any]:
        """Validates on rank 0 (the others wait)."""
        summary: dict[str, Any] = {}
        if self.dist.is_main:
            self.model.eval()
            summary = self.task.validate(self.model, limit)
            self._log({"step": self.step, "val": {k: summary.get(k) for k in self.task.val_keys}})
        self.dist.barrier()
        return summary

    def _log(self, entry: dict[str, Any]) -> None:
        if self.dist.is_main:
            with open(self.out / "log.jsonl", "a") as log:
                log.write(json.dumps(entry) + "\n")

    def _save_resume(self) -> None:
        # Every rank's augmentation RNG, so that each continues where it stopped.
        rng_states = self.dist.gather(torch.get_rng_state())
        if not self.dist.is_main:
            return
        state = {
            "step": self.step,
            "world_size": self.dist.world_size,
            "model": self.task.trainable_state(self.model),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "torch_rng": rng_states,
        }
        temporary = self.out / "resume.pt.tmp"
        torch.save(state, temporary)
        temporary.replace(self.out / "resume.pt")

    def _load_resume(self) -> None:
        state = torch.load(self.out / "resume.pt", map_location=self.device, weights_only=True)
        self.task.load_trainable_state(self.model, state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        if state["world_size"] != self.dist.world_size:
            raise ValueError(
                f"{self.out / 'resume.pt'} was written by {state['world_size']} ranks; "
                f"resume it with {state['world_size']}, not {self.dist.world_size}"
            )
        torch.set_rng_state(state["torch_rng"][self.dist.rank].cpu())
        self.step = state["step"]
        if self.dist.is_main:
            # Lines logged after the saved step belong to the interrupted run's lost steps.
            log = self.out / "log.jsonl"
            if log.is_file():
                kept = [
                    line
                    for line in log.read_text().splitlines()
                    if line.strip() and json.loads(line)["step"] <= self.step
                ]
                log.write_text("".join(line + "\n" for line in kept))

    def _export(self, summary: dict[str, Any]) -> None:
        metrics = {k: summary.get(k) for k in self.task.val_keys}
        metrics["per_category"] = summary.get("per_category", {})
        metadata = {
            "command": self.command,
            "train_config": self.config.to_dict(),
            "data": self.task.data_info,
            "steps": self.step,
            "git_commit": _source_revision(),
            "world_size": self.dist.world_size,
            "device": str(self.device),
            "precision": self.precision,
            "val_metrics": metrics,
        }
        self.task.export(self.model, self.out / "model", metadata)
        (self.out / "metrics.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
        plot_curves(
            self.out / "log.jsonl", self.out / "curves.png", self.task.val_keys, title=str(self.out)
        )


def _source_revision() -> str | None:
    """The git commit of the training code, when it runs from a checkout."""
    try:
        found = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return found.stdout.strip()
