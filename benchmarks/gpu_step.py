"""Measure real training steps of the bundled trainer's model at planned shapes: step time, MFU and the
three memory figures (torch.cuda.max_memory_allocated, max_memory_reserved, device memory in use as
nvidia-smi counts it), beside what the plan predicts for the same shape, batch and precision.

The one prepared script for a lent GPU (≤ 5 minutes in all); on the CPU it runs the same code at toy
size (tests/test_gpu_step_script.py), so it cannot first break on a rented machine.

    python benchmarks/gpu_step.py --device cuda --out benchmarks/results/gpu-<date>.json
    python benchmarks/gpu_step.py --device cpu --config tiny            # what CI runs

Each configuration: the model of the plan's architecture built from its shape and precision (late-2025:
bf16 autocast, bf16 wte; 2026: no autocast, bf16 activations and tables, fp8 through torchao where the
plan says so), compiled or eager, the trainer's optimizer for that architecture (chatplan_train.recipe),
random tokens (the data does not change step time or memory), `--steps` optimizer steps at accumulation 1
on one device; the first two steps (compilation, allocator warm-up) are left out of the timing. An fp8
configuration on a machine without torchao or without fp8 support is reported as skipped, not failed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import chatplan  # noqa: E402
from chatplan.contract import plan_document, read_plan  # noqa: E402
from chatplan.errors import ChatplanError  # noqa: E402
from chatplan_train.config import make_config  # noqa: E402
from chatplan_train.loop import train_step  # noqa: E402
from chatplan_train.recipe import recipe_for  # noqa: E402

GIB = 2**30
# (name, plan inputs, compiled): eager for the memory figures, compiled where the published runs compile
A26 = "nanochat-2026"
CONFIGS = {
    "cuda": [("d12", dict(depth=12), False), ("d20", dict(depth=20), False), ("d20-compiled", dict(depth=20), True),
             ("d26", dict(depth=26), False),
             ("2026-d12", dict(arch=A26, depth=12), False), ("2026-d24", dict(arch=A26, depth=24), False),
             ("2026-d24-compiled", dict(arch=A26, depth=24), True),
             ("2026-d24-fp8-compiled", dict(arch=A26, depth=24, fp8=True), True)],
    "tiny": [("tiny", dict(depth=2, vocab_size=512, seq_len=64, device_batch_size=2), False),
             ("tiny-2026", dict(arch=A26, depth=2, vocab_size=512, seq_len=256, device_batch_size=1), False)],
}


def measure(name: str, inputs: dict, compiled: bool, device: str, steps: int) -> dict:
    gpus = "1xH100" if device == "cuda" else "1xCPU"
    p = chatplan.plan(gpus=gpus, compile=compiled, steps=max(steps, 1),
                      total_batch_size=None if "device_batch_size" not in inputs else
                      inputs["device_batch_size"] * inputs.get("seq_len", 2048), **inputs)
    precision = p.precision if device == "cuda" else replace(p.precision, device_type="cpu")
    B, T, V = p.parallelism.device_batch_size, p.shape.sequence_len, p.shape.vocab_size
    dev = torch.device(device)
    recipe = recipe_for(p.shape.arch)
    cfg = make_config(read_plan(plan_document(p)), 1, out="unused")  # the optimizer, as the trainer reads it
    torch.manual_seed(0)
    try:
        model = recipe.build_model(p.shape, device=dev, precision=precision)
    except ChatplanError as e:  # fp8 without torchao: say so and go on with the other configurations
        return {"name": name, "device": device, "skipped": str(e)}
    opt = recipe.make_optimizer(model, cfg, 1, 0, getattr(torch, precision.newton_schulz_dtype))
    fwd = torch.compile(model) if compiled else model
    cast = (lambda: torch.autocast(device, dtype=torch.bfloat16)) if precision.autocast else contextlib.nullcontext

    def batches():
        g = torch.Generator().manual_seed(1)
        while True:
            x = torch.randint(0, V, (B, T), generator=g)
            yield x.to(dev), torch.roll(x, -1, 1).to(dev)

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    it, seconds, result = batches(), [], {}
    try:
        for step in range(steps):
            t0 = time.perf_counter()
            train_step(fwd, opt, it, 1, step, steps, cast, dev)
            if device == "cuda":
                torch.cuda.synchronize(dev)
            seconds.append(time.perf_counter() - t0)
    except torch.OutOfMemoryError as e:  # a batch that does not fit is a result, not a crash
        result["oom"] = str(e).splitlines()[0]
    steady = seconds[2:] if len(seconds) > 2 else seconds
    step_s = statistics.median(steady) if steady else None
    peak = p.fleet.gpu.peak_flops
    result.update({
        "name": name, "arch": p.shape.arch, "device": device, "compiled": compiled, "fp8": precision.fp8,
        "attention_kernel": getattr(precision, "attention_kernel", None), "depth": p.depth, "device_batch_size": B,
        "seq_len": T, "vocab_size": V, "steps": len(seconds), "step_seconds": step_s,
        "mfu": p.flops_per_token * B * T / step_s / peak if step_s else None,
        "predicted": {"step_seconds_per_micro_batch": p.time.step_seconds / p.parallelism.grad_accum_steps,
                      "mfu": p.time.mfu, "peak_allocated_gib": p.memory.peak_allocated_gib,
                      "peak_reserved_gib": p.memory.peak_reserved_gib, "peak_device_gib": p.memory.peak_device_gib},
    })
    if device == "cuda":
        free, total = torch.cuda.mem_get_info(dev)
        result.update(max_allocated_gib=torch.cuda.max_memory_allocated(dev) / GIB,
                      max_reserved_gib=torch.cuda.max_memory_reserved(dev) / GIB,
                      device_used_gib=(total - free) / GIB, gpu=torch.cuda.get_device_name(dev))
    del fwd, model, opt
    if device == "cuda":
        torch.cuda.empty_cache()
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    ap.add_argument("--config", choices=tuple(CONFIGS), default=None, help="default: cuda on a GPU, tiny on CPU")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--out", type=Path, default=None, help="write the results here (JSON)")
    args = ap.parse_args(argv)
    config = args.config or ("cuda" if args.device == "cuda" else "tiny")
    results = [measure(name, inputs, compiled, args.device, args.steps) for name, inputs, compiled in CONFIGS[config]]
    doc = {"command": "python benchmarks/gpu_step.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "torch": torch.__version__, "results": results}
    text = json.dumps(doc, indent=1)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
