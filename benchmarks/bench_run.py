"""Issue 6 speed target: `chatplan run --tier tiny --device cpu --nproc 2 --steps 10 --yes` finishes in
<= 40 s wall here, building the sample corpus and the tokenizer included (a fresh run directory and a fresh
$CHATPLAN_HOME, so nothing is reused from an earlier run).

Run: pytest benchmarks/bench_run.py --benchmark-enable -s   (asserts the target)
CI runs it once with the default --benchmark-disable and asserts LENIENT x the target only.
"""

import os
import subprocess
import sys
import time

from chatplan.contract import achieved, load_report, run_summary

TARGET_S = 40.0
LENIENT = 3.0
STEPS = 10


def _tiny_run(out_dir: str, home: str) -> float:
    env = {**os.environ, "CHATPLAN_HOME": home}
    env.pop("CHATPLAN_CACHE_DIR", None)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "chatplan", "run", "--tier", "tiny", "--device", "cpu", "--nproc",
                           "2", "--steps", str(STEPS), "--yes", "--out", out_dir, "--calibration", "none"],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, env=env)
    seconds = time.perf_counter() - t0
    assert proc.returncode == 0, f"chatplan run exited {proc.returncode}:\n{proc.stderr[-2000:]}"
    return seconds


def test_tiny_run_wall_time(benchmark, tmp_path):
    out = tmp_path / "tiny"
    seconds = benchmark.pedantic(_tiny_run, args=(str(out), str(tmp_path / "home")), rounds=1, iterations=1)
    print(f"\ntiny run, {STEPS} steps, 2 CPU processes, fresh directory: {seconds:.1f} s wall")
    report = load_report(out / "report.json")
    assert run_summary(report).steps_done == STEPS
    assert (achieved(report, "tokens_per_second") or 0) > 0
    bound = TARGET_S * (1 if benchmark.enabled else LENIENT)
    assert seconds <= bound, f"tiny run took {seconds:.1f} s > {bound:.0f} s"
