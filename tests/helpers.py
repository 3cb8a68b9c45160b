"""Shared helpers for the tests and benchmarks (not part of any package a user installs)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import chatplan
from chatplan.arch import get_arch
from chatplan.arch.base import ModelShape
from chatplan.catalog import Catalog, builtin_catalog
from chatplan.contract import RunBinding, bind, plan_document
from chatplan.facts import ModelFacts, model_facts
from chatplan.precision import Precision, decide_precision

A25 = get_arch("nanochat-2025")
model_shape = A25.model_shape
param_counts = A25.param_counts
param_shapes = A25.param_shapes
flops_per_token = A25.flops_per_token
is_valid_depth = A25.is_valid_depth
nearest_valid_depths = A25.nearest_valid_depths
shape_problem = A25.shape_problem


def chatplan_cli(*args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """`python -m chatplan ARGS` in the repository root, stdin closed, output captured as text."""
    return subprocess.run([sys.executable, "-m", "chatplan", *args], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1], timeout=timeout, stdin=subprocess.DEVNULL,
                          env={**os.environ, **(env or {})})


def precision(device_type: str, compile: bool | None = None, arch: str = "nanochat-2025") -> Precision:
    """The plan's precision on a device (an H100-class GPU for cuda)."""
    a = get_arch(arch)
    return decide_precision(a.name, device_type, fp8_supported=a.fp8_supported,
                            compute_capability=9.0 if device_type == "cuda" else None, compile=compile)


def facts(shape: ModelShape, world_size: int, device_type: str, compile: bool | None = None) -> ModelFacts:
    return model_facts(get_arch(shape.arch), shape, world_size, precision(device_type, compile, shape.arch))


def optim_2025(shape: ModelShape | None = None, **overrides):
    """The late-2025 recipe the planner writes for `shape` (depth 2 by default), with overrides."""
    from chatplan_train.config import OptimConfig

    settings = A25.optimizer_settings(shape or model_shape(2), 524_288, 100)
    return replace(OptimConfig.from_plan(settings), **overrides)


# --- a bound CPU plan.json for the trainer's tests and benchmarks -------------------------------------
# The built-in catalog's CPU entry is replaced by one with the given peak (the trainer measures its own
# for MFU; this figure only feeds the plan's predictions).
CPU_PEAK_FLOPS = 1.8e11  # the catalog's measured fp32 matmul peak of a 2-core dev box (gpus.json)


def cpu_catalog(peak_flops: float = CPU_PEAK_FLOPS) -> Catalog:
    base = builtin_catalog()
    gpus = tuple(replace(g, peak_flops=peak_flops) if g.name == "CPU" else g for g in base.gpus)
    return Catalog(gpus=gpus, reference_gpu=base.reference_gpu, sources=base.sources)


def cpu_plan(depth: int = 2, *, vocab_size: int, seq_len: int, device_batch_size: int, world_size: int = 1,
             grad_accum_steps: int = 1, steps: int = 20, eval_every: int = 0, eval_tokens: int | None = None,
             data_dir: str | Path | None = None, tokenizer_dir: str | Path | None = None,
             ranks_sha256: str | None = None, source: str = "sample", out_dir: str | Path = "runs/test",
             validation_shard: str = "shard_01822.parquet", train_shards: int = 0,
             arch: str = "nanochat-2025") -> dict:
    """plan.json (as a dict) for a small CPU run, bound to the given data and tokenizer directories."""
    total = device_batch_size * seq_len * world_size * grad_accum_steps
    p = chatplan.plan(arch=arch, depth=depth, gpus=f"{world_size}xCPU", gpus_per_node=world_size, vocab_size=vocab_size,
                      seq_len=seq_len, total_batch_size=total, steps=steps,
                      device_batch_size=device_batch_size, eval_every=eval_every,
                      eval_tokens=eval_tokens or device_batch_size * seq_len * world_size,
                      catalog=cpu_catalog())
    run = RunBinding(out_dir=str(out_dir), data_dir=str(data_dir or ""), data_source=source,
                     train_shards=train_shards, validation_shard=validation_shard,
                     tokenizer_dir=str(tokenizer_dir or ""), ranks_sha256=ranks_sha256)
    return bind(plan_document(p), run)
