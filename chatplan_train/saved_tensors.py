"""What inductor keeps for backward: the tensors its min-cut partitioner saves in one compiled forward.

    python -m chatplan_train.saved_tensors [--arch nanochat-2025] [--depth 2] [--vocab-size 2048]
        [--seq-len 64] [--batches 2,4] [--fp8] [--list]

Builds the trainer's model with the CUDA precision policy (bf16; autocast for late 2025), compiles it on
this machine's CPU and stops at the partition: the backward graph's inputs that are not incoming
gradients are what the forward keeps alive for it. No kernel is built, so it takes seconds. The
partitioner works on the joint graph before any device code exists, so the CUDA graph it sees differs
only in the attention op's name. Prints, per batch, the bytes kept; then the per-token slope over
the batches, next to the planner's activation + saved-logits terms (tests/test_memory_vs_trainer.py
asserts they agree for late 2025).
"""

from __future__ import annotations

import argparse
import contextlib

import torch


class _Partitioned(Exception):
    pass


def kept_for_backward(model: torch.nn.Module, idx: torch.Tensor, targets: torch.Tensor,
                      autocast: bool) -> list[tuple[str, tuple[int, ...], torch.dtype, int]]:
    """(name, shape, dtype, bytes) of every tensor the partition keeps for backward."""
    import torch._inductor.compile_fx as compile_fx
    from torch._functorch import partitioners

    kept: list = []
    original = compile_fx.min_cut_rematerialization_partition

    def spy(joint, inputs, **kw):
        _, bw = partitioners.min_cut_rematerialization_partition(joint, inputs, **kw)
        for n in bw.graph.nodes:
            v = n.meta.get("val")
            if n.op == "placeholder" and not n.name.startswith("tangents") and isinstance(v, torch.Tensor):
                kept.append((n.name, tuple(v.shape), v.dtype, v.numel() * v.element_size()))
        raise _Partitioned

    compile_fx.min_cut_rematerialization_partition = spy
    torch._dynamo.reset()
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
    try:
        with ctx:
            torch.compile(model, dynamic=False)(idx, targets)
    except Exception as e:  # dynamo wraps the backend's exception
        if "_Partitioned" not in repr(e) and "_Partitioned" not in repr(e.__cause__):
            raise
    finally:
        compile_fx.min_cut_rematerialization_partition = original
        torch._dynamo.reset()
    if not kept:
        raise RuntimeError("the partitioner was not reached")
    return kept


def cuda_policy_model(arch_name: str, depth: int, vocab_size: int, seq_len: int, fp8: bool = False):
    """(architecture, shape, precision, model): the trainer's model built on the CPU with the precision an
    H100 plan gets (bf16, compiled; autocast for late 2025; fp8 linears through torchao if asked), to
    inspect what inductor makes of it."""
    from chatplan.arch import get_arch
    from chatplan.precision import decide_precision

    arch = get_arch(arch_name)
    shape = arch.model_shape(depth, vocab_size=vocab_size, seq_len=seq_len)
    mode = decide_precision(arch.name, "cuda", fp8_supported=arch.fp8_supported, compute_capability=9.0, compile=True,
                            fp8=fp8)
    if arch.name == "nanochat-2025":
        from chatplan_train.model import build_model
    else:
        from chatplan_train.model_2026 import build_model
    return arch, shape, mode, build_model(shape, "cpu", precision=mode)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m chatplan_train.saved_tensors")
    p.add_argument("--arch", default="nanochat-2025")
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--vocab-size", type=int, default=2048)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--batches", default="2,4")
    p.add_argument("--fp8", action="store_true", help="fp8 linears (nanochat-2026), as --fp8 trains them")
    p.add_argument("--list", action="store_true", help="print every kept tensor of the first batch")
    a = p.parse_args(argv)
    try:
        batches = sorted({int(b) for b in a.batches.split(",")})
        if batches[0] < 1 or min(a.depth, a.seq_len, a.vocab_size) < 1:
            raise ValueError
    except ValueError:
        p.error(f"--batches must be positive integers separated by commas, and --depth, --seq-len and "
                f"--vocab-size positive, got --batches {a.batches!r}")
    torch.manual_seed(0)
    arch, shape, mode, model = cuda_policy_model(a.arch, a.depth, a.vocab_size, a.seq_len, fp8=a.fp8)
    totals = {}
    for i, b in enumerate(batches):
        idx, targets = (torch.randint(0, a.vocab_size, (b, a.seq_len)) for _ in range(2))
        kept = kept_for_backward(model, idx, targets, autocast=mode.autocast)
        totals[b] = sum(k[-1] for k in kept)
        print(f"batch {b}: {len(kept)} tensors kept, {totals[b]:,} bytes")
        if a.list and i == 0:
            for name, dims, dtype, nbytes in kept:
                print(f"  {name:28s} {str(dims):24s} {str(dtype).removeprefix('torch.'):9s} {nbytes:>12,}")
    if len(batches) >= 2:
        lo, hi = batches[0], batches[-1]
        slope = (totals[hi] - totals[lo]) / ((hi - lo) * a.seq_len)
        terms = arch.memory_terms(shape, 1, mode)
        print(f"kept per token: {slope:,.0f} bytes; planner: activations {terms.activation_bytes_per_token:,.0f} "
              f"+ loss path at the peak {terms.loss_bytes_per_token:,.0f} "
              "(on CUDA the saved logits, whose storage then takes their gradient)")


if __name__ == "__main__":
    main()
