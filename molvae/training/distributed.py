"""This process's place in a training job: one process, or one rank of a torchrun job.

Under ``torchrun --nproc_per_node=K`` each rank takes every K-th batch (so the global batch
is ``K * batch_size``) and only rank 0 evaluates, writes and logs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist

from molvae.devices import choose_device, cpu_threads

T = TypeVar("T")


@dataclass
class Distributed:
    """This process's place in a (possibly one-process) training job."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def gather(self, value: object) -> list:
        if self.world_size == 1:
            return [value]
        values: list = [None] * self.world_size
        dist.all_gather_object(values, value)
        return values

    def from_main(self, value: T | None) -> T:
        """Rank 0's ``value`` on every rank, so all act on one decision; the other ranks
        pass a placeholder (None), replaced by what rank 0 sent."""
        box = [value]
        if self.world_size > 1:
            dist.broadcast_object_list(box, src=0)
        sent = box[0]
        if sent is None:
            raise RuntimeError("rank 0 sent nothing: only the other ranks pass None")
        return sent


def setup_distributed(device_name: str, threads: int = 0) -> Distributed:
    """Choose the device once; join the process group when started by torchrun."""
    device = choose_device(device_name)
    if device.type == "cpu":
        torch.set_num_threads(cpu_threads(threads))
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Distributed(0, 1, device)
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Distributed(dist.get_rank(), world_size, device)
