"""Issue 6 speed target: `chatplan run --tier tiny --device cpu --nproc 2 --steps 10 --yes` finishes in
<= 40 s wall here, building the sample corpus and the tokenizer included (a fresh run directory).

Run: pytest benchmarks/bench_run.py --benchmark-enable -s
"""

import subprocess
import sys
import time


def _tiny_run(out_dir: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "chatplan", "run", "--tier", "tiny", "--device", "cpu", "--nproc", "2",
                    "--steps", "10", "--yes", "--out", out_dir, "--calibration", "none"],
                   check=True, capture_output=True, stdin=subprocess.DEVNULL)
    return time.perf_counter() - t0


def test_tiny_run_wall_time(benchmark, tmp_path):
    seconds = benchmark.pedantic(_tiny_run, args=(str(tmp_path / "tiny"),), rounds=1, iterations=1)
    print(f"tiny run, 10 steps, 2 CPU processes, fresh directory: {seconds:.1f} s wall")
    assert (tmp_path / "tiny" / "report.json").is_file()
