"""Data-parallel context: single process, or one rank of a `torchrun` launch (DDP)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @classmethod
    def from_env(cls, device: str) -> DistributedContext:
        """Joins the process group when torchrun set WORLD_SIZE > 1 (NCCL on CUDA, gloo else)."""
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size == 1:
            return cls()
        backend = "nccl" if device.startswith("cuda") else "gloo"
        dist.init_process_group(backend)
        return cls(dist.get_rank(), world_size, int(os.environ.get("LOCAL_RANK", "0")))

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """The element-wise mean of `values` over ranks."""
        if self.enabled:
            values = values.clone()
            dist.all_reduce(values)
            values /= self.world_size
        return values

    def gather(self, value: torch.Tensor) -> list[torch.Tensor]:
        """`value` (a CPU tensor, any shape as long as all ranks agree) of every rank, in rank
        order, on every rank."""
        if not self.enabled:
            return [value]
        gathered: list[torch.Tensor | None] = [None] * self.world_size
        dist.all_gather_object(gathered, value)
        return gathered

    def replicas_agree(self, parameters: list[torch.Tensor]) -> tuple[bool, float]:
        """Whether every rank holds the same weights -> (agree, largest fingerprint gap).

        Each rank's fingerprint is the float64 sum and sum of squares of every parameter; DDP
        ranks apply identical all-reduced updates, so these must match exactly.
        """
        if not self.enabled:
            return True, 0.0
        fingerprint = torch.stack(
            [
                torch.stack([p.detach().double().sum(), p.detach().double().square().sum()])
                for p in parameters
            ]
        )
        gathered = [torch.empty_like(fingerprint) for _ in range(self.world_size)]
        dist.all_gather(gathered, fingerprint)
        gap = max(float((g - gathered[0]).abs().max()) for g in gathered)
        return gap == 0.0, gap

    def close(self) -> None:
        if self.enabled:
            dist.destroy_process_group()
