"""python -m chatplan_train.probe --plan plan.json --out probe.json [--batches 8,16] [--steps 3] [--warmup 2]

A short measured probe: the plan's real model and optimizer (the trainer's own modules, no copy) take a
few real optimizer steps on one process at each device batch given, on synthetic token ids (the data's
content does not change a step's time or memory). For each batch it measures the median step time and
the memory figures this device can measure, and writes one JSON document that `chatplan probe` turns
into calibration points:

- CUDA: torch.cuda.max_memory_allocated, max_memory_reserved, and the device memory in use as
  nvidia-smi shows it (total - free from cudaMemGetInfo: the context, the cache and every tensor).
- CPU: the process's peak resident set over the warm-up steps (VmHWM, reset per batch through
  /proc/self/clear_refs) and its growth over the resident set before the model was built. Those steps
  run with glibc's free pages returned and large blocks mapped fresh (_exact_rss), so the figure is what
  the batch holds, not what earlier batches left in the heap; the timed steps run as usual. RSS counts
  the interpreter and torch's libraries too: it is not the planner's allocated figure, and the document
  says so.

Batches run in ascending order; the first that runs out of memory (torch.OutOfMemoryError, caught) ends
the probe and the largest batch that fit is reported. `CHATPLAN_PROBE_MEMORY_CAP_GIB` caps the memory
a probe may use (tests, or leaving room on a shared GPU): on CUDA it becomes the allocator's
per-process memory fraction, so PyTorch itself raises the OOM; on a CPU the RSS growth is checked
after every memory-measuring step and the same error type is raised.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from chatplan.errors import EXIT_INVALID, EXIT_RUNTIME, ChatplanError, InvalidInput

GIB = 2**30
CAP_ENV = "CHATPLAN_PROBE_MEMORY_CAP_GIB"
PROBE_VERSION = 1


@dataclass(frozen=True)
class ProbeBatch:
    device_batch_size: int
    fit: bool
    steps: int  # measured steps (after the warm-up)
    step_seconds: float | None  # median of the measured steps
    tokens_per_second: float | None
    max_allocated_gib: float | None = None  # CUDA
    max_reserved_gib: float | None = None  # CUDA
    device_used_gib: float | None = None  # CUDA: total - free, what nvidia-smi shows in use
    peak_rss_gib: float | None = None  # CPU: VmHWM of this process during the batch
    rss_growth_gib: float | None = None  # CPU: peak RSS - RSS of the process before its first model
    error: str | None = None  # the OOM, in one line


def _status_gib(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024 / GIB  # kB
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Linux resets VmHWM to the current RSS when '5' is written to clear_refs (kernel >= 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


# glibc keeps what a step freed and, after the first free of a large block, serves blocks up to 32 MiB from
# its heaps instead of fresh mappings (a dynamic mmap threshold); with several threads it also spreads them
# over per-thread arenas. A step's RSS peak then depends on which blocks earlier steps left where: two runs
# of the same batch differed by 0.04 GiB, as much as batch 8 and 16 of the tiny tier differ. So a CPU
# probe measures memory in its warm-up steps with every block of 64 KiB or more mapped fresh and unmapped
# on free (RSS = what is live, to +-0.001 GiB over runs), and then sets the threshold to glibc's 32 MiB
# ceiling, the steady state the dynamic rule reaches, for the timed steps (fresh mappings fault in every
# page: a step ran 50 % slower that way). The trim returns free pages but keeps the free chunks: a later
# block carved from one of them faults its pages back in and keeps them when freed, so the figure is exact
# for what the steps allocate beyond the heap the process had (tests/test_probe.py pins each part).
M_MMAP_THRESHOLD = -3  # malloc.h
EXACT_MMAP_THRESHOLD = 64 * 1024
STEADY_MMAP_THRESHOLD = 32 * 2**20  # glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit


@functools.cache
def _glibc():
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None  # not glibc (macOS, musl): RSS keeps the allocator's history, as said in the document


def _exact_rss(on: bool) -> bool:
    """on: return free heap pages to the OS and map large blocks fresh; off: the steady-state threshold."""
    libc = _glibc()
    if libc is None:
        return False
    if on:
        gc.collect()
        libc.malloc_trim(0)
    return bool(libc.mallopt(M_MMAP_THRESHOLD, EXACT_MMAP_THRESHOLD if on else STEADY_MMAP_THRESHOLD))


def _cap_gib() -> float | None:
    raw = os.environ.get(CAP_ENV)
    if not raw:
        return None
    try:
        cap = float(raw)
    except ValueError:
        raise InvalidInput(f"{CAP_ENV} must be a number of GiB > 0, got {raw!r}") from None
    if not cap > 0:
        raise InvalidInput(f"{CAP_ENV} must be a number of GiB > 0, got {raw!r}")
    return cap


def synthetic_batches(batch: int, seq_len: int, vocab: int, device: torch.device):
    """Random token ids, fixed seed: real shapes and dtypes, no tokenizer or shard needed."""
    g = torch.Generator().manual_seed(0)
    while True:
        x = torch.randint(0, vocab, (batch, seq_len + 1), generator=g)
        yield x[:, :-1].contiguous().to(device), x[:, 1:].contiguous().to(device)


def probe_batch(cfg, device: torch.device, batch: int, warmup: int, steps: int, cap_gib: float | None,
                say, rss_before: float | None = None) -> ProbeBatch:
    """Build the model and optimizer fresh, take warmup + steps optimizer steps at `batch`, measure."""
    from chatplan_train.loop import SEED, autocast_for, train_step
    from chatplan_train.recipe import recipe_for

    cuda = device.type == "cuda"
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    # RSS growth is counted from the process before its first model; on a CPU the memory is that of the
    # warm-up steps, run with the allocator's history taken out (_exact_rss), or of all steps without warm-up
    exact = not cuda and warmup > 0 and _exact_rss(True)
    _reset_peak_rss()
    rss_before = _status_gib("VmRSS") if rss_before is None else rss_before
    memory_steps = warmup or steps
    peak_rss: float | None = None
    cfg = replace(cfg, device_batch_size=batch, grad_accum_steps=1)
    recipe = recipe_for(cfg.doc.arch.name)
    model = opt = None
    times: list[float] = []
    try:
        torch.manual_seed(SEED)
        model = recipe.build_model(cfg.shape, device=device, precision=cfg.precision)
        opt = recipe.make_optimizer(model, cfg, 1, 0, getattr(torch, cfg.precision.newton_schulz_dtype))
        fwd = torch.compile(model) if cfg.compile else model
        autocast = autocast_for(cfg, device)
        data = synthetic_batches(batch, cfg.seq_len, cfg.shape.vocab_size, device)
        total = warmup + steps
        for step in range(total):
            t0 = time.perf_counter()
            train_step(fwd, opt, data, 1, step, total, autocast, device)
            if cuda:
                torch.cuda.synchronize(device)
            dt = time.perf_counter() - t0
            if step >= warmup:
                times.append(dt)
            if not cuda and step < memory_steps:
                peak_rss = _status_gib("VmHWM")
                growth = None if peak_rss is None or rss_before is None else peak_rss - rss_before
                if cap_gib is not None and growth is not None and growth > cap_gib:
                    raise torch.OutOfMemoryError(f"CPU probe: RSS grew {growth:.3f} GiB, over the "
                                                 f"{cap_gib:g} GiB cap ({CAP_ENV})")
                if exact and step == memory_steps - 1:
                    _exact_rss(False)  # the timed steps run with the steady-state threshold
            say(f"probe: batch {batch}: step {step + 1}/{total} {dt * 1000:,.0f} ms"
                + (" (warm-up)" if step < warmup else ""))
    except torch.OutOfMemoryError as e:
        if exact:
            _exact_rss(False)
        first = str(e).strip().splitlines()[0] if str(e).strip() else "out of memory"
        say(f"probe: batch {batch}: out of memory: {first[:200]}")
        del model, opt
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
        return ProbeBatch(batch, False, 0, None, None, error=first[:300])
    median = statistics.median(times)
    tokens = batch * cfg.seq_len
    if cuda:
        free, total_mem = torch.cuda.mem_get_info(device)
        result = ProbeBatch(batch, True, len(times), median, tokens / median,
                            max_allocated_gib=torch.cuda.max_memory_allocated(device) / GIB,
                            max_reserved_gib=torch.cuda.max_memory_reserved(device) / GIB,
                            device_used_gib=(total_mem - free) / GIB)
    else:
        result = ProbeBatch(batch, True, len(times), median, tokens / median, peak_rss_gib=peak_rss,
                            rss_growth_gib=None if peak_rss is None or rss_before is None else peak_rss - rss_before)
    del model, opt
    return result


def run_probe(plan_path: str, batches: list[int], warmup: int, steps: int, say=print,
              ranks_per_node: int = 1) -> dict:
    """`ranks_per_node`: how many ranks of the plan being calibrated share one machine. On a CPU they share
    its cores, so the probe computes with the threads one rank of that plan gets (the trainer's rule,
    cpu_peak.pin_threads): two 1-thread processes do more than one 2-thread process (small ops scale
    poorly over threads), and a probe with all the cores would under-predict them."""
    from chatplan_train.config import load_plan, make_config
    from chatplan_train.cpu_peak import pin_threads, usable_cpus

    doc = load_plan(plan_path)
    if doc.world_size != 1:
        raise InvalidInput(f"a probe runs on one process: the probe plan is for {doc.world_size} ranks")
    cfg = make_config(doc, 1, out=str(Path(plan_path).parent), steps=warmup + steps, eval_every=0, save_every=0)
    cap = _cap_gib()
    if doc.device_type == "cuda":
        if not torch.cuda.is_available():
            raise InvalidInput("the plan is for a GPU but torch sees no CUDA device here (use --device cpu)")
        device = torch.device("cuda", 0)
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True
        if cap is not None:
            total = torch.cuda.get_device_properties(device).total_memory / GIB
            torch.cuda.set_per_process_memory_fraction(min(1.0, cap / total), device)
        name = torch.cuda.get_device_name(device)
        threads = torch.get_num_threads()
    else:
        device = torch.device("cpu")
        threads = pin_threads(ranks_per_node)
        name = f"CPU ({threads} threads)"
    say(f"probe: {doc.arch.name} d{doc.shape.n_layer}, context {doc.shape.sequence_len}, on {name}: batches "
        f"{', '.join(map(str, batches))}, {warmup} warm-up + {steps} measured steps each"
        + (f", memory cap {cap:g} GiB" if cap else ""))
    results: list[ProbeBatch] = []
    rss_start = _status_gib("VmRSS")
    for b in sorted(batches):
        r = probe_batch(cfg, device, b, warmup, steps, cap, say, rss_start)
        results.append(r)
        if not r.fit:
            break
    return {"probe_version": PROBE_VERSION, "measured_on": name, "device_type": device.type,
            "torch_version": torch.__version__, "compile": cfg.compile, "threads": threads,
            # the share of the device's peak this process had: on a CPU its threads of the usable cores
            "peak_share": 1.0 if device.type == "cuda" else min(1.0, threads / usable_cpus()),
            "memory_measure": ("torch.cuda max_memory_allocated / max_memory_reserved, cudaMemGetInfo used"
                               if device.type == "cuda" else
                               "process RSS (VmHWM) over the warm-up steps, glibc's free pages returned "
                               "and large blocks mapped fresh: includes the interpreter and libraries; not "
                               "the planner's allocated figure"),
            "batches": [asdict(r) for r in results]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m chatplan_train.probe")
    p.add_argument("--plan", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--batches", required=True, help="comma-separated device batch sizes")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--ranks-per-node", type=int, default=1,
                   help="ranks of the calibrated plan per machine (a CPU probe takes one rank's threads)")
    args = p.parse_args(argv)
    try:
        batches = [int(b) for b in args.batches.split(",")]
        if not batches or min(batches) < 1 or args.steps < 1 or args.warmup < 0 or args.ranks_per_node < 1:
            raise ValueError
    except ValueError:
        print(f"chatplan_train.probe: --batches must be positive integers, --steps >= 1, --warmup >= 0 and "
              f"--ranks-per-node >= 1, got {args.batches!r}, {args.steps}, {args.warmup}, {args.ranks_per_node}",
              file=sys.stderr)
        return EXIT_INVALID
    try:
        doc = run_probe(args.plan, batches, args.warmup, args.steps, say=lambda s: print(s, flush=True),
                        ranks_per_node=args.ranks_per_node)
    except ChatplanError as e:
        print(f"chatplan_train.probe: {e}", file=sys.stderr)
        return e.exit_code
    except Exception as e:  # one line, not a traceback
        first = str(e).splitlines()[0] if str(e) else ""
        print(f"chatplan_train.probe: {type(e).__name__}: {first}", file=sys.stderr)
        if os.environ.get("CHATPLAN_TRACEBACK"):
            raise
        return EXIT_RUNTIME
    Path(args.out).write_text(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
