"""The process's place in the run (Runtime, from torchrun's environment) and small JSON-able
collectives. torch's *_object collectives need numpy, which chatplan does not depend on; these send
UTF-8 JSON in byte tensors instead (for a few KB of metadata, not tensors)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from chatplan.errors import InvalidInput


@dataclass(frozen=True)
class Runtime:
    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def master(self) -> bool:
        return self.rank == 0


def init_runtime(device_type: str) -> Runtime:
    """torch.distributed from the environment torchrun sets (RANK, WORLD_SIZE, MASTER_ADDR, ...)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if device_type == "cuda":
        if not torch.cuda.is_available():
            raise InvalidInput("the plan is for CUDA but torch sees no GPU")
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo",
                                device_id=device if device_type == "cuda" else None)
    return Runtime(rank, local_rank, world, device)


def _device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else \
        torch.device("cpu")


def _encode(obj: Any) -> torch.Tensor:
    return torch.tensor(list(json.dumps(obj).encode()), dtype=torch.uint8, device=_device())


def _decode(t: torch.Tensor) -> Any:
    return json.loads(bytes(t.cpu().tolist()).decode())


def broadcast_json(obj: Any, src: int = 0) -> Any:
    """Rank src's obj on every rank."""
    data = _encode(obj) if dist.get_rank() == src else torch.empty(0, dtype=torch.uint8, device=_device())
    size = torch.tensor([data.numel()], dtype=torch.int64, device=_device())
    dist.broadcast(size, src)
    if dist.get_rank() != src:
        data = torch.empty(int(size.item()), dtype=torch.uint8, device=_device())
    dist.broadcast(data, src)
    return _decode(data)


def all_gather_json(obj: Any) -> list[Any]:
    """Every rank's obj, in rank order, on every rank (also a barrier)."""
    data = _encode(obj)
    sizes = [torch.zeros(1, dtype=torch.int64, device=_device()) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, torch.tensor([data.numel()], dtype=torch.int64, device=_device()))
    longest = max(int(s.item()) for s in sizes)
    padded = torch.zeros(longest, dtype=torch.uint8, device=_device())
    padded[:data.numel()] = data
    out = [torch.empty(longest, dtype=torch.uint8, device=_device()) for _ in sizes]
    dist.all_gather(out, padded)
    return [_decode(t[:int(s.item())]) for t, s in zip(out, sizes, strict=True)]
