"""Muon, the LR and momentum schedules, and the sharded optimizer's bookkeeping."""

from __future__ import annotations

import math

import pytest
import torch

from chatplan_train.model import build_model
from chatplan_train.optim import (
    Muon,
    ShardedOptimizer,
    lr_multiplier,
    muon_momentum,
    zeropower_via_newtonschulz,
)
from tests.helpers import model_shape, optim_2025

NS = (3.4445, -4.7750, 2.0315)


def test_bf16_muon_matches_torch_optim_muon() -> None:
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(64, 256, generator=g) * 0.02
    grad = torch.randn(64, 256, generator=g)
    ref_p, our_p = torch.nn.Parameter(weight.clone()), torch.nn.Parameter(weight.clone())
    ref_p.grad, our_p.grad = grad.clone(), grad.clone()
    torch.optim.Muon([ref_p], lr=0.02, weight_decay=0, adjust_lr_fn="original").step()
    Muon([our_p], lr=0.02, momentum=0.95, ns_dtype=torch.bfloat16).step()
    assert (ref_p - our_p).abs().max() <= 1e-3
    assert (ref_p - weight).abs().max() > 1e-3  # it did move


@pytest.mark.parametrize("shape", [(64, 256), (256, 64), (128, 128), (3, 64, 256)])
def test_fp32_and_bf16_newton_schulz_agree_to_bf16_tolerance(shape: tuple[int, ...]) -> None:
    G = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    a = zeropower_via_newtonschulz(G, NS, 5, torch.float32)
    b = zeropower_via_newtonschulz(G, NS, 5, torch.bfloat16).float()
    assert b.shape == a.shape
    assert (a - b).norm() <= 3e-2 * a.norm()
    assert (a - b).abs().max() <= 5e-2 * a.abs().max()


def test_newton_schulz_orthogonalises() -> None:
    G = torch.randn(64, 256, generator=torch.Generator().manual_seed(2))
    ortho = zeropower_via_newtonschulz(G, NS, 5, torch.float32)
    s = torch.linalg.svdvals(ortho)
    assert s.min() > 0.5 and s.max() < 1.5  # the quintic's "roughly 1" band


def test_batched_muon_equals_one_matrix_at_a_time() -> None:
    g = torch.Generator().manual_seed(3)
    ws = [torch.randn(32, 96, generator=g) for _ in range(3)]
    gs = [torch.randn(32, 96, generator=g) for _ in range(3)]
    together = [torch.nn.Parameter(w.clone()) for w in ws]
    alone = [torch.nn.Parameter(w.clone()) for w in ws]
    for p, q, gr in zip(together, alone, gs, strict=True):
        p.grad, q.grad = gr.clone(), gr.clone()
    Muon(together, lr=0.02, momentum=0.85).step()
    for q in alone:
        Muon([q], lr=0.02, momentum=0.85).step()
    for p, q in zip(together, alone, strict=True):
        assert torch.allclose(p, q, atol=1e-6)


def test_muon_scales_tall_matrices() -> None:
    """Update scaled by sqrt(max(1, rows/cols)): 2x for a 4:1 tall matrix, 1x for a wide one."""
    tall = torch.nn.Parameter(torch.zeros(256, 64))
    wide = torch.nn.Parameter(torch.zeros(64, 256))
    G = torch.randn(256, 64, generator=torch.Generator().manual_seed(4))
    tall.grad, wide.grad = G.clone(), G.T.clone()
    Muon([tall], lr=0.02).step()
    Muon([wide], lr=0.02).step()
    assert torch.allclose(tall.detach(), 2 * wide.detach().T, atol=1e-6)


def test_lr_schedule_constant_then_linear_warmdown_to_zero() -> None:
    steps = 100
    mults = [lr_multiplier(s, steps, 0.2, 0.0) for s in range(steps + 1)]
    assert mults[0] == 1.0 and mults[80] == 1.0
    assert mults[81] == pytest.approx(19 / 20) and mults[90] == pytest.approx(0.5)
    assert mults[100] == 0.0
    assert all(a >= b for a, b in zip(mults, mults[1:], strict=False))


def test_momentum_ramps_over_300_steps() -> None:
    cfg = optim_2025()
    assert muon_momentum(0, cfg) == 0.85
    assert muon_momentum(150, cfg) == pytest.approx(0.90)
    assert muon_momentum(300, cfg) == pytest.approx(0.95) and muon_momentum(5000, cfg) == pytest.approx(0.95)


def test_state_lives_only_on_owners_and_round_trips() -> None:
    cfg = model_shape(2, vocab_size=512, seq_len=32)
    shards = []
    for rank in range(2):
        torch.manual_seed(0)
        model = build_model(cfg)
        opt = ShardedOptimizer(model, optim_2025(), world_size=2, rank=rank)
        model(torch.randint(0, 512, (2, 32)), torch.randint(0, 512, (2, 32))).backward()
        for o in opt.optimizers:  # step without communication: just to create the state
            o.step()
        shard = opt.state_shard()
        assert set(shard) == {n for n, r in opt.owners.items() if r == rank}
        shards.append(shard)
    assert set(shards[0]).isdisjoint(shards[1])
    # a one-rank optimizer takes the union: every parameter's state, from either old shard
    torch.manual_seed(0)
    model = build_model(cfg)
    single = ShardedOptimizer(model, optim_2025())
    single.load_state_shards({**shards[0], **shards[1]})
    loaded = single.state_shard()
    assert set(loaded) == set(single.owners)
    for name, state in loaded.items():
        old = shards[0].get(name) or shards[1][name]
        for key, value in state.items():
            assert torch.equal(value, old[key]), (name, key)


def test_params_and_grads_live_in_flat_buffers() -> None:
    torch.manual_seed(0)
    model = build_model(model_shape(1, vocab_size=256, seq_len=16))
    opt = ShardedOptimizer(model, optim_2025())
    ptrs = {n: p.grad.data_ptr() for n, p in model.named_parameters()}
    for _ in range(2):  # two micro-steps accumulate in place
        model(torch.randint(0, 256, (1, 16)), torch.randint(0, 256, (1, 16))).backward()
    assert all(p.grad.data_ptr() == ptrs[n] for n, p in model.named_parameters())
    norm, _ = opt.step(0, 10)
    assert math.isfinite(norm.item())
    opt.zero_grad()
    assert all(p.grad.abs().max() == 0 for p in model.parameters())
