"""The CUDA code paths of the late-2025 trainer, run on the CPU at toy size so that a graph break or a dtype
error cannot first appear on a rented GPU: bf16 autocast, the stored-bf16 embedding, the non-fused
(materialised fp32 logits) loss, and torch.compile (inductor compiles on this machine).

The plan's CUDA precision is applied to a CPU model: everything the trainer does differently on CUDA,
except the device itself."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from chatplan_train.model import build_model
from chatplan_train.optim import ShardedOptimizer
from tests.helpers import model_shape, optim_2025, precision

SHAPE = model_shape(2, vocab_size=256, seq_len=32)


def cuda_policy(compile: bool):
    """The plan's CUDA precision (bf16 autocast, bf16 wte, non-fused loss), on the CPU."""
    return replace(precision("cuda", compile=compile), device_type="cpu")


def batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, SHAPE.vocab_size, (2, SHAPE.sequence_len), generator=g)
    return x, torch.roll(x, -1, dims=1)


def reference_loss() -> float:
    torch.manual_seed(0)
    model = build_model(SHAPE)
    x, y = batch()
    return model(x, y).item()


@pytest.mark.slow
@pytest.mark.parametrize("compile", [False, True], ids=["eager", "compiled"])
def test_bf16_autocast_unfused_loss_and_compile_train(compile):
    torch.manual_seed(0)
    policy = cuda_policy(compile)
    model = build_model(SHAPE, precision=policy)
    assert not model.fused_loss and model.transformer.wte.weight.dtype == torch.bfloat16
    assert model.lm_head.weight.dtype == torch.float32  # masters stay fp32
    opt = ShardedOptimizer(model, optim_2025(SHAPE), ns_dtype=torch.bfloat16)
    fwd = torch.compile(model) if compile else model
    x, y = batch()
    losses = []
    for step in range(3):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = fwd(x, y)
        assert loss.dtype == torch.float32  # the soft-capped cross-entropy runs on fp32 logits
        loss.backward()
        assert model.transformer.wte.weight.grad.dtype == torch.bfloat16
        assert all(torch.isfinite(p.grad.float()).all() for p in model.parameters())
        opt.step(step, 10)
        opt.zero_grad()
        losses.append(loss.item())
    # same initial weights as the fp32 reference (wte rounded to bf16): the first loss agrees to bf16 precision
    assert losses[0] == pytest.approx(reference_loss(), rel=2e-2)
    assert losses[-1] < losses[0]  # it learns on the repeated batch


# --- nanochat-2026: no autocast; the Linear casts its fp32 master to bf16 activations ------------------

@pytest.mark.slow
def test_2026_cuda_paths_compile_and_learn_in_bf16():
    """The 2026 model under the plan's CUDA precision on the CPU (bf16 activations, bf16 tables, unfused
    loss, compiled, bf16 Polar Express), attention through the dense window mask: FlexAttention has no CPU
    backward, so the "flash-windowed" kernel's forward is checked against this mask in test_train_2026.py
    and its backward runs only in benchmarks/gpu_step.py on a GPU."""
    from chatplan.arch import get_arch
    from chatplan_train.model_2026 import build_model as build_2026
    from chatplan_train.optim_2026 import MuonAdamW

    arch = get_arch("nanochat-2026")
    shape = arch.model_shape(2, vocab_size=256, seq_len=256)  # window 128 < context: the masked path
    policy = replace(precision("cuda", compile=True, arch=arch.name), device_type="cpu",
                     attention_kernel="sdpa-dense-mask")
    assert (policy.compute_dtype, policy.autocast, policy.fused_loss) == ("bfloat16", False, False)
    torch.manual_seed(0)
    model = build_2026(shape, precision=policy)
    assert {p.dtype for n, p in model.named_parameters() if n.startswith(("transformer.wte", "value_embeds"))} == {
        torch.bfloat16}
    assert model.lm_head.weight.dtype == torch.float32  # masters stay fp32
    settings = arch.optimizer_settings(shape, 256, 10)
    settings["warmup_steps"] = 1
    for g in settings["adamw_groups"] + settings["muon_groups"]:
        g["lr"] *= 20  # 256-token steps scale the recipe's rates by 1/45: move them enough to see learning
    opt = MuonAdamW(model, settings, ns_dtype=torch.bfloat16)
    fwd = torch.compile(model)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, shape.vocab_size, (1, shape.sequence_len), generator=g)
    y = torch.roll(x, -1, dims=1)
    losses = []
    for step in range(4):
        loss = fwd(x, y)
        assert loss.dtype == torch.float32  # the soft-capped cross-entropy runs on fp32 logits
        loss.backward()
        assert model.transformer.wte.weight.grad.dtype == torch.bfloat16
        assert all(torch.isfinite(p.grad.float()).all() for p in model.parameters())
        opt.step(step, 10)
        opt.zero_grad()
        losses.append(loss.item())
    torch.manual_seed(0)
    reference = build_2026(shape)(x, y).item()  # fp32, eager, the SDPA mask: the same initial weights
    assert losses[0] == pytest.approx(reference, rel=2e-2)
    assert losses[-1] < losses[0] - 0.05, losses  # it learns on the repeated batch
