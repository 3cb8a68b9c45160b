"""Small JSON-able collectives. torch's *_object collectives need numpy, which chatplan does not
depend on; these send UTF-8 JSON in byte tensors instead (for a few KB of metadata, not tensors)."""

from __future__ import annotations

import json
from typing import Any

import torch
import torch.distributed as dist


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
