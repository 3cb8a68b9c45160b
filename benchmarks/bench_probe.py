"""Issue 13 speed target: a probe on one process at accumulation 1 calibrates a plan on two gloo ranks at
accumulation 4, and that plan's `run` lands within 10 % of the calibrated step time.

Probe: batches 8 and 16, one process per rank of the plan at once (they share the CPU as the ranks will),
8 measured steps. Plan and run: two gloo ranks, d2, context 256, vocabulary 8,192, batch 8 x 4
accumulation, 10 steps (medians over the steady ones). The model carries the probe to the plan (its
ratio). Measured on the 2-core dev box in quiet periods: -4.2 %, +0.2 %, -3.4 %, -2.6 %, +0.4 %; with 4
probe and 6 run steps, or one probe process alone, it strayed by 14-20 %. On a busy shared box the raw
error swings much wider (+11 %, -14 %, +21 %, +31 %, +39 % on 2026-12-03): the box's speed changes
between the probe and the run a minute later, and two ranks that sync every step lose more to a busy
neighbour than independent probe processes do. A timed assertion there is a flaky unit test, so the
target lives here.

Run: pytest benchmarks/bench_probe.py --benchmark-enable -s   (asserts the 10 % target; use a quiet machine)
CI runs it once with the default --benchmark-disable and asserts only LENIENT_REL (2x), a gross-regression
guard (a calibration applied twice, or to the wrong world size, is off by far more). That the calibration
is carried through the model's ratio is tested exactly in tests/test_probe.py and tests/test_calibration.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import chatplan_cli

TARGET_REL = 0.10
LENIENT_REL = 1.0
TWO_RANKS = ["--depth", "2", "--gpus", "2xCPU", "--seq-len", "256", "--vocab-size", "8192", "--device-batch-size",
             "8", "--total-batch-size", "16384", "--no-compile", "--eval-every", "0"]


def _probe_then_run(tmp_path: Path) -> tuple[dict, dict, dict]:
    """The probe's JSON, then the calibrated run's plan.json and report.json."""
    cal = tmp_path / "cal.json"
    r = chatplan_cli("probe", *TWO_RANKS, "--probe-steps", "8", "--calibration", str(cal), "--json", timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    probe = json.loads(r.stdout)
    run = chatplan_cli("run", *TWO_RANKS, "--steps", "10", "--device", "cpu", "--nproc", "2", "--data", "sample",
                       "--yes", "--out", str(tmp_path / "run"), "--calibration", str(cal), "--json", timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    return probe, *(json.loads((tmp_path / "run" / name).read_text()) for name in ("plan.json", "report.json"))


@pytest.mark.slow
def test_a_one_process_probe_calibrates_a_two_rank_run_at_accumulation_4(benchmark, tmp_path):
    probe, plan_doc, report = benchmark.pedantic(_probe_then_run, args=(tmp_path,), rounds=1, iterations=1)
    predicted = probe["plan"]["step_seconds"]
    from chatplan_train.cpu_peak import intra_op_threads

    # one rank's threads (the cores shared by the plan's two ranks), as the trainer will pin them: a probe
    # with every core measured one 2-thread process, 12-15 % slower than two 1-thread ranks here
    assert probe["threads"] == intra_op_threads(2)
    assert probe["plan"]["world_size"] == 2 and probe["plan"]["grad_accum_steps"] == 4
    assert probe["plan"]["calibration"].startswith("calibrated from a probe on 1xCPU")
    assert plan_doc["predictions"]["step_seconds"] == pytest.approx(predicted, rel=1e-9)  # the run used it
    step = report["step_seconds"]
    err = step["relative_error"]
    benchmark.extra_info.update(predicted_s=predicted, achieved_s=step["achieved"], relative_error=err)
    print(f"\nprobe-calibrated step {predicted:.4f} s, run {step['achieved']:.4f} s: {err:+.1%} "
          f"(uncalibrated {probe['plan']['step_seconds_uncalibrated']:.4f} s)")
    bound = TARGET_REL if benchmark.enabled else LENIENT_REL
    assert abs(err) <= bound, (predicted, step)
