"""Helpers for the trainer's tests and benchmarks: a CPU plan.json built by `chatplan.plan()`.

The built-in GPU catalog has no CPU, so a CPU entry is added to it (peak = the nominal fp32 figure
of the machine; the trainer measures its own for MFU). Nothing here is used by a training run.
"""

from __future__ import annotations

from pathlib import Path

import chatplan
from chatplan.catalog import GPU, Catalog, builtin_catalog

CPU_PEAK_FLOPS = 1.3e11  # ~fp32 matmul peak of a 2-core dev box; only feeds the plan's predictions


def cpu_catalog(peak_flops: float = CPU_PEAK_FLOPS) -> Catalog:
    base = builtin_catalog()
    cpu = GPU(name="CPU", aliases=("cpu",), description="this machine's CPU (fp32)", memory_gib=16.0,
              peak_flops=peak_flops, matmul_efficiency=1.0, memory_bandwidth=2e10, price_per_hour=0.0,
              intra_node_gbps=10.0, device_type="cpu")
    return Catalog(gpus=base.gpus + (cpu,), reference_gpu=base.reference_gpu)


def cpu_plan(depth: int = 2, *, vocab_size: int, seq_len: int, device_batch_size: int, world_size: int = 1,
             grad_accum_steps: int = 1, steps: int = 20, eval_every: int = 0, eval_tokens: int | None = None,
             data_dir: str | Path | None = None, tokenizer_dir: str | Path | None = None,
             ranks_sha256: str | None = None, source: str = "sample") -> dict:
    """plan.json (as a dict) for a small CPU run."""
    total = device_batch_size * seq_len * world_size * grad_accum_steps
    p = chatplan.plan(depth, gpus=f"{world_size}xCPU", gpus_per_node=world_size, vocab_size=vocab_size,
                      seq_len=seq_len, total_batch_size=total, steps=steps,
                      device_batch_size=device_batch_size, eval_every=max(eval_every, 1),
                      eval_tokens=eval_tokens or device_batch_size * seq_len * world_size,
                      catalog=cpu_catalog()).to_dict()
    p["eval"]["every"] = eval_every
    p["data"].update(dir=str(data_dir) if data_dir else None, source=source)
    p["tokenizer"].update(dir=str(tokenizer_dir) if tokenizer_dir else None, ranks_sha256=ranks_sha256)
    return p
