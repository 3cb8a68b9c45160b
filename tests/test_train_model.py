"""The trainer's GPT against the planner (parameter parity) and against nanochat (reference step)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from chatplan_train.model import build_model
from chatplan_train.optim import ShardedOptimizer
from tests.helpers import flops_per_token, is_valid_depth, model_shape, optim_2025, param_counts, param_shapes

FIXTURE = Path(__file__).parent / "fixtures" / "nanochat_d2_step.pt"
GROUPS = {"attn.c_q": "attn_q", "attn.c_k": "attn_k", "attn.c_v": "attn_v", "attn.c_proj": "attn_out",
          "mlp.c_fc": "mlp_in", "mlp.c_proj": "mlp_out"}
DEPTHS = [d for d in range(1, 13) if is_valid_depth(d)] + [20, 26, 32]


def group_of(name: str) -> str:
    if name == "transformer.wte.weight":
        return "wte"
    if name == "lm_head.weight":
        return "lm_head"
    return GROUPS[name.split(".", 3)[3].removesuffix(".weight")]


@pytest.mark.parametrize("depth", DEPTHS)
def test_parameters_match_the_planner_group_by_group(depth: int) -> None:
    shape = model_shape(depth)
    model = build_model(shape, device="meta")
    ours = {n: tuple(p.shape) for n, p in model.named_parameters()}
    assert ours == param_shapes(shape)  # same names, same (out, in) shapes, nothing else
    counts = param_counts(shape).to_dict()
    by_group: dict[str, int] = {}
    for name, p in model.named_parameters():
        by_group[group_of(name)] = by_group.get(group_of(name), 0) + p.numel()
    for group, n in by_group.items():
        assert n == counts[group], group
    assert sum(by_group.values()) == counts["total"]
    assert flops_per_token(shape) == 6 * (counts["total"] - counts["wte"]) + \
        12 * shape.n_layer * shape.n_head * shape.head_dim * shape.sequence_len


def test_gqa_shapes_match_the_planner() -> None:
    shape = model_shape(4, kv_heads=1, vocab_size=1024, seq_len=64)
    model = build_model(shape)
    assert {n: tuple(p.shape) for n, p in model.named_parameters()} == param_shapes(shape)
    logits = model(torch.randint(0, 1024, (2, 16)))
    assert logits.shape == (2, 16, 1024)


def test_init_follows_the_spec() -> None:
    torch.manual_seed(0)
    model = build_model(model_shape(2, vocab_size=4096, seq_len=64))
    p = dict(model.named_parameters())
    assert p["lm_head.weight"].abs().max() == 0
    assert p["transformer.h.0.attn.c_proj.weight"].abs().max() == 0
    assert p["transformer.h.1.mlp.c_proj.weight"].abs().max() == 0
    assert abs(p["transformer.wte.weight"].std().item() - 1.0) < 0.01
    # c_fc is 512x128: std = 1/sqrt(128) * min(1, sqrt(512/128)) = 1/sqrt(128)
    assert abs(p["transformer.h.0.mlp.c_fc.weight"].std().item() * math.sqrt(128) - 1) < 0.02
    # c_q is 128x128: std 1/sqrt(128)
    assert abs(p["transformer.h.0.attn.c_q.weight"].std().item() * math.sqrt(128) - 1) < 0.03


@pytest.mark.parametrize("vocab", [512, 8192])
def test_step0_loss_is_ln_vocab(vocab: int) -> None:
    torch.manual_seed(1)
    model = build_model(model_shape(2, vocab_size=vocab, seq_len=128))
    idx = torch.randint(0, vocab, (2, 128))
    loss = model(idx, torch.roll(idx, -1, 1))
    assert abs(loss.item() - math.log(vocab)) < 1e-4


def test_rotary_tables_are_bf16_rounded() -> None:
    model = build_model(model_shape(1, vocab_size=256, seq_len=64))
    assert model.rotary.dtype == torch.bfloat16 and model.rotary.shape == (2, 1, 64, 1, 32)


def test_reference_step_matches_nanochat() -> None:
    """Weights of nanochat's own d2 step in our model: losses, gradients, clipped AdamW+Muon step."""
    ref = torch.load(FIXTURE, weights_only=True)
    shape = model_shape(2, vocab_size=512, seq_len=64)  # d 128, one head of 128
    assert (shape.n_embd, shape.n_head, shape.n_kv_head) == (128, 1, 1)
    model = build_model(shape)
    model.load_state_dict({k.removeprefix("init/"): v for k, v in ref.items() if k.startswith("init/")})
    scale = (128 / 768) ** -0.5  # the plan carries the embedding lrs already scaled
    opt = ShardedOptimizer(model, optim_2025(embedding_lr=0.2 * scale, unembedding_lr=0.004 * scale))

    loss0 = model(ref["idx"], ref["targets"])
    assert abs(loss0.item() - ref["loss0"].item()) < 1e-5
    loss0.backward()
    for name, p in model.named_parameters():
        g = ref[f"grad/{name}"]
        assert (p.grad - g).abs().max() <= 1e-4 * g.abs().max(), name

    grad_norm, mult = opt.step(step=0, total_steps=1000)
    assert mult == 1.0
    assert abs(grad_norm.item() / ref["grad_norm_preclip"].item() - 1) < 1e-5
    for name, p in model.named_parameters():
        assert (p.detach() - ref[f"step1/{name}"]).abs().max() <= 1e-5, name
    with torch.no_grad():
        loss1 = model(ref["idx"], ref["targets"])
    assert abs(loss1.item() - ref["loss1"].item()) < 1e-5


def test_fused_cpu_loss_equals_the_plain_path() -> None:
    """The chunked CPU loss (no (N, V) logits) against materialised logits: value and gradients,
    with ignored targets (-1), for training (mean) and evaluation (per token)."""
    torch.manual_seed(3)
    model = build_model(model_shape(1, vocab_size=3000, seq_len=64))
    torch.nn.init.normal_(model.lm_head.weight, std=0.3)  # non-zero head: logits reach the soft-cap
    idx, tgt = torch.randint(0, 3000, (3, 64)), torch.randint(0, 3000, (3, 64))
    tgt[0, :5] = -1
    results = []
    for fused in (False, True):
        model.fused_loss = fused
        model.zero_grad(set_to_none=True)
        loss = model(idx, tgt)
        loss.backward()
        per_token = model(idx, tgt, reduction="none")
        results.append((loss.detach(), per_token.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    (l0, t0, g0), (l1, t1, g1) = results
    assert torch.allclose(l0, l1, rtol=1e-6, atol=1e-6)
    assert torch.allclose(t0, t1, rtol=1e-5, atol=1e-5) and (t1[:5] == 0).all()
    for name in g0:
        assert (g0[name] - g1[name]).abs().max() <= 1e-5 * g0[name].abs().max(), name
