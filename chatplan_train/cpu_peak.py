"""The trainer's intra-op thread count, and the CPU's fp32 matmul peak (the denominator of CPU MFU).

Threads. `pin_threads` fixes the process's intra-op thread count at start-up, before any compute, by
one rule (`intra_op_threads`):
  1. OMP_NUM_THREADS, when set to a positive integer (an explicit choice; torchrun sets 1 when it
     starts several processes per node);
  2. otherwise the CPUs this process may run on (its affinity mask) divided by the processes per node
     (LOCAL_WORLD_SIZE, which torchrun sets; else the world size), at least 1.
A fresh run and its resume on the same machine and world therefore compute with the same threads.
Pinning is not only about the count: `torch.set_num_threads` also switches MKL's dynamic threading
off (ATen's ParallelOpenMP.cpp: `mkl_set_dynamic(false)`). With it on, MKL's default, MKL picks the
threads of each sgemm at run time, and a different split gives a different fp32 sum, so a process
that never called set_num_threads was not reproducible even against itself. Before this rule the only
call was inside `measure`, so a run that measured the peak and a resume that read it from the cache
computed differently (the gradient norm after resume differed in the 7th digit).

Peak. torch.mm of two 2048x2048 fp32 matrices, 3 warm-ups, median of 10 timed runs, with as many
threads as all ranks of the run use together (2 ranks x 1 thread and 1 rank x 2 threads both
measure with 2), but never more than the CPUs this process may use: 4 ranks x 1 thread on 2 CPUs
time-share the 2 CPUs at their full rate, while one matmul with 4 OpenMP threads on 2 CPUs crawls
(2-7 GFLOP/s against ~440 with 2 threads, measured on a 2-core box), and that figure made a 4-rank run
report MFU 1339 %. The measurement is repeated 3 times and the best median kept: a busy neighbour can
only make a measurement slower. The measurement restores the caller's thread count (and leaves MKL's
dynamic threading off, as pinning did), so measuring never changes the run.
CPU MFU = flops_per_token x global tok/s / this peak: never multiplied by the world size, because
the ranks share this one CPU.

Cache. Entries are keyed by thread count, method, CPU model and torch version. A cached peak is used
only if it is finite, within a sane per-thread range, and not beaten by a quick re-measure (a smaller
matmul, a lower bound of the peak): a figure measured while the CPU was shared (e.g. two test runs at
once) is otherwise kept for good and inflates every later MFU (a 7.3 GFLOP/s entry gave 1339 %).
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from chatplan.paths import cache_dir

N = 2048
WARMUP = 3
REPEATS = 10
TRIALS = 3
METHOD = f"torch.mm fp32 {N}x{N}x{N}, {WARMUP} warm-ups, median of {REPEATS}, best of {TRIALS}"

# Plausible fp32 matmul FLOP/s per thread: the floor is far below any x86/ARM core of the last 15 years
# even with 8 threads per core; the ceiling is ~4x an AVX-512 core with two FMA units at 4 GHz (256 G).
MIN_FLOPS_PER_THREAD = 1e9
MAX_FLOPS_PER_THREAD = 1e12
# The quick check: a 1024^3 matmul, 1 warm-up, best of 3 (~0.1 s on 2 cores). It runs at no more than
# the peak, so beating the cached peak by more than timing noise proves that entry too low.
QUICK_N = 1024
QUICK_REPEATS = 3
STALE_FACTOR = 1.25


# -- threads ----------------------------------------------------------------------------------------


def usable_cpus() -> int:
    """CPUs this process may run on (taskset / cgroup cpusets shrink the affinity mask)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def intra_op_threads(local_world_size: int, environ: Mapping[str, str] | None = None,
                     cpus: int | None = None) -> int:
    """The pinned intra-op thread count (the rule in the module docstring)."""
    env = os.environ if environ is None else environ
    explicit = env.get("OMP_NUM_THREADS", "").strip()
    if explicit.isdigit() and int(explicit) > 0:
        return int(explicit)
    return max(1, (usable_cpus() if cpus is None else cpus) // max(1, local_world_size))


def pin_threads(local_world_size: int) -> int:
    """Pin this process's intra-op threads (and switch MKL's dynamic threading off); returns the count.
    Call once at start-up, before any tensor compute."""
    threads = intra_op_threads(local_world_size)
    torch.set_num_threads(threads)
    return threads


# -- the peak ---------------------------------------------------------------------------------------


def _matmul_seconds(n: int, warmup: int, repeats: int) -> list[float]:
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
    out = torch.empty(n, n)
    for _ in range(warmup):
        torch.mm(a, b, out=out)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b, out=out)
        times.append(time.perf_counter() - t0)
    return times


def _with_threads(threads: int, fn):
    """fn() with `threads` intra-op threads, then the caller's count again (set explicitly, so the
    run keeps its pinned count and MKL's dynamic threading stays off)."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return fn()
    finally:
        torch.set_num_threads(old)


def measure(threads: int) -> float:
    """fp32 FLOP/s of one 2048^3 matmul with `threads` intra-op threads (median of 10)."""
    times = _with_threads(threads, lambda: _matmul_seconds(N, WARMUP, REPEATS))
    return 2 * N**3 / statistics.median(times)


def quick_measure(threads: int) -> float:
    """A lower bound of the peak in ~0.1 s: best of 3 runs of a 1024^3 matmul."""
    times = _with_threads(threads, lambda: _matmul_seconds(QUICK_N, 1, QUICK_REPEATS))
    return 2 * QUICK_N**3 / min(times)


def cache_path() -> Path:
    """cpu_peak.json in chatplan.paths.cache_dir(): $CHATPLAN_CACHE_DIR, else $CHATPLAN_HOME (default
    ~/.cache/chatplan), the one rule every chatplan file follows."""
    return cache_dir().expanduser() / "cpu_peak.json"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def plausible(flops: Any, threads: int) -> bool:
    """A finite FLOP/s figure inside the sane per-thread range."""
    return (isinstance(flops, (int, float)) and not isinstance(flops, bool) and math.isfinite(flops)
            and MIN_FLOPS_PER_THREAD * threads <= flops <= MAX_FLOPS_PER_THREAD * threads)


def _read_entries(path: Path) -> list[dict]:
    try:
        entries = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []


def cpu_peak_flops(threads: int) -> dict:
    """The peak for a run whose ranks use `threads` intra-op threads in all (capped at the usable CPUs):
    {"flops": peak FLOP/s, "threads" (as measured), "method", "cpu", "torch", "measured_at", "cached"}, plus
    "rejected_cache" (why a cached entry was not used) when one was found and refused."""
    threads = max(1, min(threads, usable_cpus()))  # more threads than CPUs only measures oversubscription
    key = {"threads": threads, "method": METHOD, "cpu": _cpu_name(), "torch": torch.__version__}
    path = cache_path()
    entries = _read_entries(path)
    cached = next((e for e in entries if all(e.get(k) == v for k, v in key.items())), None)
    rejected = None
    if cached is not None:
        if not plausible(cached.get("flops"), threads):
            rejected = f"cached peak {cached.get('flops')!r} FLOP/s is not plausible for {threads} threads"
        else:
            quick = quick_measure(threads)
            if quick > STALE_FACTOR * cached["flops"]:
                rejected = (f"cached peak {cached['flops']:.3g} FLOP/s is below a quick re-measure of "
                            f"{quick:.3g} FLOP/s (measured while the CPU was busy?)")
            else:
                return {**cached, "cached": True}
    peak = max(measure(threads) for _ in range(TRIALS))
    entry = {**key, "flops": peak, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        kept = [e for e in entries if not all(e.get(k) == v for k, v in key.items())] + [entry]
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(kept, indent=1) + "\n")
        os.replace(tmp, path)
    except OSError:
        pass  # an unwritable cache only costs a re-measurement next time
    result: dict[str, Any] = {**entry, "cached": False}
    if rejected:
        result["rejected_cache"] = rejected
    return result
