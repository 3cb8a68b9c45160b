"""The CPU's fp32 matmul peak, the denominator of CPU MFU, measured once and cached with its method.

Method: torch.mm of two 2048x2048 fp32 matrices, 3 warm-ups, median of 10 timed runs, with as many
threads as all ranks of the run use together (2 ranks x 1 thread and 1 rank x 2 threads both
measure with 2). The measurement is repeated 3 times and the best median kept: a busy neighbour can
only make a measurement slower, and a low peak cached for good would inflate every later MFU.
CPU MFU = flops_per_token x global tok/s / this peak: never multiplied by the world size, because
the ranks share this one CPU.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

N = 2048
WARMUP = 3
REPEATS = 10
TRIALS = 3
METHOD = f"torch.mm fp32 {N}x{N}x{N}, {WARMUP} warm-ups, median of {REPEATS}, best of {TRIALS}"


def cache_path() -> Path:
    root = os.environ.get("CHATPLAN_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "chatplan")
    return Path(root) / "cpu_peak.json"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def measure(threads: int) -> float:
    """fp32 FLOP/s of one 2048^3 matmul with `threads` intra-op threads (median of 10)."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        g = torch.Generator().manual_seed(0)
        a, b = torch.randn(N, N, generator=g), torch.randn(N, N, generator=g)
        out = torch.empty(N, N)
        for _ in range(WARMUP):
            torch.mm(a, b, out=out)
        times = []
        for _ in range(REPEATS):
            t0 = time.perf_counter()
            torch.mm(a, b, out=out)
            times.append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(old)
    return 2 * N**3 / statistics.median(times)


def cpu_peak_flops(threads: int) -> dict:
    """{"flops": peak FLOP/s, "threads", "method", "cpu", "torch", "measured_at", "cached"}."""
    key = {"threads": threads, "method": METHOD, "cpu": _cpu_name(), "torch": torch.__version__}
    path = cache_path()
    try:
        entries = json.loads(path.read_text())
        for e in entries if isinstance(entries, list) else []:
            if all(e.get(k) == v for k, v in key.items()) and e.get("flops", 0) > 0:
                return {**e, "cached": True}
    except (OSError, ValueError):
        entries = []
    peak = max(measure(threads) for _ in range(TRIALS))
    entry = {**key, "flops": peak, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        entries = [e for e in (entries if isinstance(entries, list) else [])
                   if not all(e.get(k) == v for k, v in key.items())] + [entry]
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(entries, indent=1) + "\n")
        os.replace(tmp, path)
    except OSError:
        pass  # an unwritable cache only costs a re-measurement next time
    return {**entry, "cached": False}
