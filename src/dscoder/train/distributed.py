"""Processes, devices and sharding: one process per device, started by `torchrun`.

`torchrun` sets RANK, WORLD_SIZE and LOCAL_RANK; without them training runs in this one
process. With several, the model is sharded with FSDP2 (`fully_shard`): parameters, gradients
and optimizer state are split across processes and each decoder layer is gathered only while
it runs. On CPU the processes talk through gloo (tests, laptops), on GPUs through NCCL.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as torch_dist
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

from dscoder.errors import UserError

DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class Dist:
    """Where this process stands: its rank among world_size processes, and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def sharded(self) -> bool:
        return self.world_size > 1

    def all_gather_objects(self, obj: Any) -> list[Any]:
        """Every process's `obj`, in rank order (picklable objects)."""
        if not self.sharded:
            return [obj]
        out: list[Any] = [None] * self.world_size
        torch_dist.all_gather_object(out, obj)
        return out

    def all_reduce_sum(self, values: list[float]) -> list[float]:
        """Element-wise sums over processes, in one collective."""
        if not self.sharded:
            return list(values)
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        torch_dist.all_reduce(tensor)
        return tensor.tolist()

    def barrier(self) -> None:
        if self.sharded:
            torch_dist.barrier()


def init_distributed(device: str = "auto") -> Dist:
    """Join the process group `torchrun` describes (if any) and pick this process's device."""
    if device not in DEVICES:
        raise UserError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for, but torch sees no CUDA device")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    if world_size > 1 and not torch_dist.is_initialized():
        # gloo carries the CPU-side exchanges (data tokens, objects) even on GPUs.
        backend = "cpu:gloo,cuda:nccl" if use_cuda else "gloo"
        torch_dist.init_process_group(backend=backend, timeout=timedelta(minutes=30),
                                      device_id=dev if use_cuda else None)
    return Dist(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


def shutdown(dist: Dist) -> None:
    if dist.sharded and torch_dist.is_initialized():
        # Every rank leaves together: a rank that tears gloo down while another still has
        # collectives in flight aborts the other ("terminate called without an active exception").
        torch_dist.barrier()
        torch_dist.destroy_process_group()


def shard_model(module: torch.nn.Module, layers: list[torch.nn.Module], bf16: bool) -> None:
    """Apply FSDP2 to each decoder layer, then to the whole module (embedding, norm, output).

    With `bf16`, layers compute in bf16 while the sharded master weights, the gradient
    reduction and the optimizer stay in fp32. Gradients are averaged over processes.
    """
    policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16 if bf16 else None,
                                  reduce_dtype=torch.float32 if bf16 else None)
    for layer in layers:
        fully_shard(layer, mp_policy=policy)
    fully_shard(module, mp_policy=policy)
