"""What differs between the architectures' training, in one value per architecture.

The loop (loop.py) is the same for both: micro-steps, the optimizer step, evaluation, checkpoints. The
recipe says which model to build, which optimizer steps it and how the data is cut into rows:

- model:     model.GPT | model_2026.GPT (value embeddings, windows, smear, backout)
- optimizer: optim.ShardedOptimizer (AdamW + Muon, owner-sharded, clipped)
             | optim_2026.MuonAdamW (NorMuon, Polar Express, reduce-scatter; no clipping)
- data:      loader.windows (one BOS-separated stream cut into windows)
             | packing.packed_batches (best-fit BOS-aligned rows)

Whether matmuls run under autocast is not the recipe's to say: the plan's precision policy owns it
(chatplan.precision: CUDA autocast for late 2025 only).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from chatplan.errors import InvalidInput
from chatplan_train import loader, model, model_2026, optim, optim_2026, packing
from chatplan_train.config import TrainConfig


@dataclass(frozen=True)
class Recipe:
    arch: str
    build_model: Callable[..., torch.nn.Module]  # (shape, device=, precision=) -> model
    make_optimizer: Callable[[torch.nn.Module, TrainConfig, int, int, torch.dtype], Any]
    train_batches: Callable[..., Any]  # (tokenizer, paths, B, T, rank, W, start=, num_threads=) -> (x, y, pos)
    validation_batches: Callable[..., list]  # (tokenizer, path, B, T, rank, W, tokens, num_threads=)
    start: Any  # the data position of a fresh run
    position_from_dict: Callable[[dict], Any]  # a checkpoint's data position back


def _sharded(m: torch.nn.Module, cfg: TrainConfig, world: int, rank: int, ns: torch.dtype) -> optim.ShardedOptimizer:
    assert cfg.optim is not None
    return optim.ShardedOptimizer(m, cfg.optim, world, rank, ns_dtype=ns)


def _muon_adamw(m: torch.nn.Module, cfg: TrainConfig, world: int, rank: int, ns: torch.dtype) -> optim_2026.MuonAdamW:
    return optim_2026.MuonAdamW(m, cfg.doc.optimizer, world, rank, ns_dtype=ns)


RECIPES = {
    "nanochat-2025": Recipe("nanochat-2025", model.build_model, _sharded, loader.windows,
                            loader.validation_windows, loader.Position(), loader.Position.from_dict),
    "nanochat-2026": Recipe("nanochat-2026", model_2026.build_model, _muon_adamw, packing.packed_batches,
                            packing.packed_validation, packing.PackState(), packing.PackState.from_dict),
}


def recipe_for(arch: str) -> Recipe:
    if arch not in RECIPES:
        raise InvalidInput(f"this trainer builds {', '.join(RECIPES)} models; the plan is for {arch}")
    return RECIPES[arch]
