"""Bytes that inductor's generated kernels read and write in one compiled forward + backward of the trainer's
model on this machine's CPU, split into fused (memory-bound) kernels and extern ones (matmuls, attention).

    python scripts/kernel_bytes.py [--arch nanochat-2025] [--seq-len 128]

It compiles depth 2 and 4 at vocabularies 2,048 and 8,192 and batches 2 and 4 (eight compiles, ~2 minutes)
and prints the per-token slope of the fused kernels' bytes, from which the time model's memory-bound
terms can be read: per layer per unit of width, per vocabulary entry, and the per-micro-step intercept
(weight-sized casts). CPU inductor fuses differently from Triton in places (outer-loop fusion) and its
attention is partly decomposed (a small T-dependent part), so this bounds the CUDA figures rather than
equals them. Results: benchmarks/results/inductor-kernel-bytes-2026-12-03.md.
"""

from __future__ import annotations

import argparse
import contextlib

import torch


def measure(arch_name: str, depth: int, vocab: int, seq_len: int, batch: int) -> tuple[float, float]:
    """(fused, extern) bytes accessed by the kernels of one compiled fwd + bwd."""
    import torch._inductor.config as inductor_config
    import torch._inductor.graph as graph

    from chatplan_train.saved_tensors import cuda_policy_model

    inductor_config.fx_graph_cache = False
    torch._functorch.config.enable_autograd_cache = False
    _, _, mode, model = cuda_policy_model(arch_name, depth, vocab, seq_len)
    seen: list[tuple[str, int]] = []
    original = graph.GraphLowering.count_bytes

    def spy(self: graph.GraphLowering) -> tuple:
        total, counts, runtimes = original(self)
        seen.extend((type(node).__name__, n * 4) for node, n in counts)
        return total, counts, runtimes

    graph.GraphLowering.count_bytes = spy
    torch._logging.set_logs(inductor_metrics=True)
    try:
        torch._dynamo.reset()
        idx = torch.randint(0, vocab, (batch, seq_len))
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if mode.autocast else contextlib.nullcontext()
        with ctx:
            loss = torch.compile(model, dynamic=False)(idx, idx.clone())
        loss.backward()
    finally:
        graph.GraphLowering.count_bytes = original
        torch._logging.set_logs()
        torch._dynamo.reset()
    extern = sum(b for kind, b in seen if kind == "ExternKernelSchedulerNode")
    fused = sum(b for kind, b in seen if kind not in ("ExternKernelSchedulerNode", "NopKernelSchedulerNode"))
    return fused, extern


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="nanochat-2025")
    p.add_argument("--seq-len", type=int, default=128)
    a = p.parse_args()
    slopes: dict[tuple[int, int], float] = {}
    for depth in (2, 4):
        for vocab in (2_048, 8_192):
            (f2, _), (f4, _) = (measure(a.arch, depth, vocab, a.seq_len, b) for b in (2, 4))
            slope = (f4 - f2) / (2 * a.seq_len)
            slopes[depth, vocab] = slope
            print(f"depth {depth} vocab {vocab}: fused {slope:,.0f} bytes per token, {f2 - 2 * a.seq_len * slope:,.0f} "
                  f"per micro-step", flush=True)
    for depth in (2, 4):
        per_vocab = (slopes[depth, 8_192] - slopes[depth, 2_048]) / 6_144
        print(f"depth {depth}: {per_vocab:.1f} bytes per token per vocab entry")


if __name__ == "__main__":
    main()
