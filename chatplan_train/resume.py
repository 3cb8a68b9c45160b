"""Checkpoints in the loop: which one to resume from (rank 0 verifies, the others take its word),
restoring it (same world size, or re-sharded onto a new one), and saving one."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from chatplan.errors import InvalidInput
from chatplan_train import checkpoint as ckpt
from chatplan_train.comm import Runtime, broadcast_json
from chatplan_train.config import TrainConfig
from chatplan_train.recipe import recipe_for


def choose_checkpoint(rt: Runtime, out_dir: Path, metrics: Callable[[str], None]) -> Path | None:
    """Rank 0 verifies (SHA-256 of every file) and picks; the others take its word."""
    choice = None
    if rt.master:
        d, skipped = ckpt.latest_complete(out_dir)
        for why in skipped:
            metrics(f"skipping checkpoint {why}")
        choice = str(d) if d else None
    if rt.world_size > 1:
        choice = broadcast_json(choice)
    return Path(choice) if choice else None


def restore(cfg: TrainConfig, rt: Runtime, d: Path, model: torch.nn.Module, opt: Any,
            say: Callable[[str], None]) -> tuple[int, Any, dict]:
    """Load a checkpoint into the model and optimizer; returns (step, data position, loop state). The
    position is the architecture's (loader.Position, or packing.PackState with its document buffer)."""
    position_from_dict = recipe_for(cfg.doc.arch.name).position_from_dict
    manifest = ckpt.read_manifest(d)
    meta = ckpt.load_meta(d)
    if meta.get("shape") != cfg.shape.to_dict():
        raise InvalidInput(f"checkpoint {d} is for a different model than this plan")
    model.load_state_dict(ckpt.load_model_state(d))  # copies into the flat buffers in place
    old_world = manifest["world_size"]
    if old_world == rt.world_size:
        mine = torch.load(d / ckpt.rank_file(rt.rank), map_location="cpu", weights_only=True)
        opt.load_state_shards(mine["optimizer"])
        position = position_from_dict(mine["data"])
        torch.set_rng_state(mine["rng"]["torch"])
        if rt.device.type == "cuda" and "cuda" in mine["rng"]:
            torch.cuda.set_rng_state(mine["rng"]["cuda"])
    else:  # re-shard: the owners under the new world size take their state from the union of old shards
        states = ckpt.load_rank_states(d, manifest)
        union = {k: v for s in states for k, v in s["optimizer"].items()}
        opt.load_state_shards(union)
        furthest = max((position_from_dict(s["data"]) for s in states), key=lambda p: (p.epoch, p.shard))
        position = type(furthest)(furthest.epoch, furthest.shard + 1)  # a fresh start there (empty buffer)
        say(f"resuming a {old_world}-rank checkpoint on {rt.world_size} ranks: optimizer state re-sharded; "
            f"data continues at training shard {position.shard} (the rest of partly read shards is skipped)")
    return manifest["step"], position, meta.get("loop", {})


def save(cfg: TrainConfig, rt: Runtime, out_dir: Path, step: int, model: torch.nn.Module, opt: Any,
         position: Any, loop_state: dict) -> None:
    rng = {"torch": torch.get_rng_state()}
    if rt.device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(rt.device)
    rank_state = {"step": step, "optimizer": opt.state_shard(), "data": position.to_dict(), "rng": rng}
    meta = {"step": step, "world_size": rt.world_size, "plan": cfg.doc.raw, "shape": cfg.shape.to_dict(),
            "loop": loop_state,
            "owners": opt.owners} if rt.master else None
    ckpt.save_checkpoint(out_dir, step, rt.rank, rt.world_size, rank_state,
                         model_state=model.state_dict() if rt.master else None, meta=meta)
