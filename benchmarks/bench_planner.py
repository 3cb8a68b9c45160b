"""Planner speed targets (issue 2/3): plan() <= 50 us warm; `estimate --json` process <= 0.15 s median of 9;
Rich table <= 0.25 s; `fit` over the whole catalog <= 0.3 s.

Run: pytest benchmarks/bench_planner.py --benchmark-enable   (CI runs them once with --benchmark-disable)
"""

import statistics
import subprocess
import sys
import time

import chatplan
from chatplan.catalog import builtin_catalog


def test_plan_warm(benchmark):
    catalog = builtin_catalog()
    chatplan.plan(depth=32, gpus="8xH100", catalog=catalog)  # warm: catalog loaded, code paths hot
    p = benchmark(chatplan.plan, depth=32, gpus="8xH100", catalog=catalog)
    assert p.parallelism.device_batch_size == 8


def test_plan_every_depth(benchmark):
    """Cold-ish: a different depth each call (the ownership cache misses once per depth)."""
    catalog = builtin_catalog()
    depths = list(range(2, 50, 2))

    def all_depths():
        return [chatplan.plan(depth=d, gpus="8xH100", catalog=catalog) for d in depths]

    plans = benchmark(all_depths)
    assert len(plans) == len(depths)


def _median_process_seconds(args: list[str], runs: int = 9) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "chatplan", *args], check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def test_estimate_json_process(benchmark):
    seconds = benchmark.pedantic(_median_process_seconds, args=(["estimate", "--depth", "32", "--gpus", "8xH100",
                                                                 "--json"],), rounds=1, iterations=1)
    print(f"estimate --json: {seconds:.3f} s median of 9")


def test_estimate_rich_process(benchmark):
    seconds = benchmark.pedantic(_median_process_seconds, args=(["estimate", "--depth", "32", "--gpus", "8xH100"],),
                                 rounds=1, iterations=1)
    print(f"estimate (Rich table): {seconds:.3f} s median of 9")


def test_fit_whole_catalog_process(benchmark):
    seconds = benchmark.pedantic(_median_process_seconds, args=(["fit", "--depth", "26"],), rounds=1, iterations=1)
    print(f"fit over the catalog: {seconds:.3f} s median of 9")
