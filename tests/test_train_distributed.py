"""Two gloo ranks with accumulation 1 == one process with accumulation 2 (same batches).

Micro-batch i of the single process is rank i's batch, so both compute the same averaged gradient:
the same clipped global norm, the same owner-sharded AdamW/Muon updates, the same weights.
"""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from chatplan_train.loop import sync_stats, train_step
from chatplan_train.model import build_model
from chatplan_train.optim import ShardedOptimizer
from tests.helpers import model_shape, optim_2025

STEPS = 6
B, T, V = 2, 64, 512
# High learning rates: the loss moves fast and the gradient norm crosses the 1.0 clip.
OPTIM = optim_2025(matrix_lr=0.08, embedding_lr=1.0, unembedding_lr=0.05, muon_momentum_ramp_steps=3)


def batches() -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
    """STEPS steps x 2 micro-batches of (inputs, targets)."""
    g = torch.Generator().manual_seed(7)
    out = []
    for _ in range(STEPS):
        step = []
        for _ in range(2):
            w = torch.randint(0, V // 4, (B * T + 1,), generator=g) * 4 % V  # learnable-ish: a subset of ids
            step.append((w[:-1].view(B, T), w[1:].view(B, T)))
        out.append(step)
    return out


def train(rank: int, world: int, accum: int) -> tuple[list[float], list[float], dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    model = build_model(model_shape(2, vocab_size=V, seq_len=T))
    opt = ShardedOptimizer(model, OPTIM, world_size=world, rank=rank)
    losses, norms = [], []
    for step, micro in enumerate(batches()):
        mine = iter(micro if world == 1 else [micro[rank]])
        result = train_step(model, opt, mine, accum, step, STEPS)
        loss, _ = sync_stats(result.loss, False, world)
        losses.append(loss)
        norms.append(result.grad_norm.item())
    return losses, norms, {n: p.detach().clone() for n, p in model.state_dict().items()}


def _worker(rank: int, world: int, port: int, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        losses, norms, weights = train(rank, world, accum=1)
        torch.save({"losses": losses, "norms": norms, "weights": weights},
                   os.path.join(out, f"rank{rank}.pt"))
        dist.barrier()  # nobody tears gloo down while its peer may still be in a collective
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_gloo_ranks_equal_one_process_with_accumulation() -> None:
    torch.set_num_threads(1)
    ref_losses, ref_norms, ref_weights = train(0, 1, accum=2)
    assert max(ref_norms) > OPTIM.grad_clip, "clipping must fire at least once for this test to bite"
    assert ref_losses[-1] < ref_losses[0]

    with tempfile.TemporaryDirectory() as out:
        mp.spawn(_worker, args=(2, free_port(), out), nprocs=2, join=True)
        ranks = [torch.load(Path(out) / f"rank{r}.pt", weights_only=True) for r in range(2)]
    for r in ranks:
        assert r["losses"] == pytest.approx(ref_losses, rel=1e-5)
        assert r["norms"] == pytest.approx(ref_norms, rel=1e-5)
        for name, w in ref_weights.items():
            assert (r["weights"][name] - w).abs().max() <= 1e-5 * w.abs().max(), name
    assert torch.equal(ranks[0]["weights"]["lm_head.weight"], ranks[1]["weights"]["lm_head.weight"])
