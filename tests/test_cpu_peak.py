"""The trainer's thread pinning and the CPU-peak cache: measuring never changes the run, and a cached
peak is used only when it is plausible and not beaten by a quick re-measure."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from chatplan_train import cpu_peak
from chatplan_train.report import build_report, checked_mfu, render_report

ROOT = Path(__file__).resolve().parents[1]


# -- the thread rule ---------------------------------------------------------------------------------


def test_thread_rule_is_omp_num_threads_else_cpus_per_local_rank() -> None:
    rule = cpu_peak.intra_op_threads
    assert rule(1, {"OMP_NUM_THREADS": "3"}, cpus=16) == 3  # an explicit choice wins
    assert rule(8, {"OMP_NUM_THREADS": "1"}, cpus=16) == 1  # what torchrun sets for several processes
    assert rule(1, {}, cpus=16) == 16
    assert rule(4, {}, cpus=16) == 4
    assert rule(3, {}, cpus=2) == 1  # at least one
    assert rule(2, {"OMP_NUM_THREADS": "0"}, cpus=8) == 4  # not a positive integer: ignored
    assert rule(2, {"OMP_NUM_THREADS": "lots"}, cpus=8) == 4


PIN_AND_MEASURE = """
import torch
from chatplan_train import cpu_peak
pinned = cpu_peak.pin_threads(1)
peak = cpu_peak.cpu_peak_flops(2 * pinned)
print(pinned, torch.get_num_threads(), peak["threads"])
"""


def test_measuring_the_peak_leaves_the_pinned_thread_count(tmp_path: Path) -> None:
    """The run's threads after a measurement (with more threads) are the pinned ones, and the peak is
    measured with at most the usable CPUs. Before: the count was set only inside the measurement."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CHATPLAN_CACHE_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", PIN_AND_MEASURE], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    pinned, after, measured_with = map(int, out.stdout.split())
    assert pinned == after == 1
    assert measured_with == min(2, cpu_peak.usable_cpus())


def test_measure_restores_the_callers_threads() -> None:
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        cpu_peak.quick_measure(2)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


# -- the cache ---------------------------------------------------------------------------------------


@pytest.fixture
def fake_timing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict:
    """A private cache and canned measurements: the full one gives 100 GFLOP/s, the quick one `quick`."""
    monkeypatch.setenv("CHATPLAN_CACHE_DIR", str(tmp_path))
    calls = {"full": 0, "quick": 90e9}

    def full(threads: int) -> float:
        calls["full"] += 1
        return 100e9

    monkeypatch.setattr(cpu_peak, "measure", full)
    monkeypatch.setattr(cpu_peak, "quick_measure", lambda threads: calls["quick"])
    monkeypatch.setattr(cpu_peak, "usable_cpus", lambda: 2)
    return calls


def poison(flops: float | str, threads: int = 2) -> None:
    """A cache entry for this machine with `flops` (a number, or raw JSON text such as NaN)."""
    entry = {"threads": threads, "method": cpu_peak.METHOD, "cpu": cpu_peak._cpu_name(),
             "torch": torch.__version__, "flops": "@", "measured_at": "2026-01-01T00:00:00"}
    cpu_peak.cache_path().write_text(json.dumps([entry]).replace('"@"', str(flops)))


def test_a_good_cached_peak_is_used_without_a_full_measurement(fake_timing: dict) -> None:
    first = cpu_peak.cpu_peak_flops(2)
    assert first["flops"] == 100e9 and not first["cached"] and fake_timing["full"] == cpu_peak.TRIALS
    again = cpu_peak.cpu_peak_flops(2)
    assert again["cached"] and again["flops"] == 100e9 and fake_timing["full"] == cpu_peak.TRIALS


@pytest.mark.parametrize("bad", ["NaN", "Infinity", "-1.0", "0", "1000.0", "1e15", '"fast"', "null", "true"])
def test_an_implausible_cached_peak_is_re_measured(fake_timing: dict, bad: str) -> None:
    poison(bad)
    peak = cpu_peak.cpu_peak_flops(2)
    assert peak["flops"] == 100e9 and not peak["cached"] and "not plausible" in peak["rejected_cache"]
    assert [e["flops"] for e in json.loads(cpu_peak.cache_path().read_text())] == [100e9]  # replaced


def test_a_cached_peak_beaten_by_a_quick_re_measure_is_re_measured(fake_timing: dict) -> None:
    """The issue's case: 7.3 GFLOP/s stored for a run that computes at ~100 (MFU 1339 %)."""
    poison(7.3e9)
    peak = cpu_peak.cpu_peak_flops(2)
    assert peak["flops"] == 100e9 and "quick re-measure" in peak["rejected_cache"]
    fake_timing["quick"] = 8e9  # a busy CPU now: the (higher) cached figure stands
    assert cpu_peak.cpu_peak_flops(2)["cached"]


def test_more_threads_than_cpus_are_measured_as_the_cpus(fake_timing: dict) -> None:
    """One matmul with 4 OpenMP threads on 2 CPUs crawls (2-7 GFLOP/s here): that is not the peak of 4
    single-thread ranks sharing 2 CPUs."""
    peak = cpu_peak.cpu_peak_flops(4)
    assert peak["threads"] == 2
    assert cpu_peak.cpu_peak_flops(2)["cached"]  # the same entry


def test_the_cache_follows_chatplan_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CHATPLAN_CACHE_DIR", raising=False)
    monkeypatch.setenv("CHATPLAN_HOME", str(tmp_path / "h"))
    assert cpu_peak.cache_path() == tmp_path / "h" / "cpu_peak.json"
    monkeypatch.setenv("CHATPLAN_CACHE_DIR", str(tmp_path / "c"))
    assert cpu_peak.cache_path() == tmp_path / "c" / "cpu_peak.json"


# -- MFU above 100 % is a measurement error ----------------------------------------------------------


def test_checked_mfu() -> None:
    assert checked_mfu(50e9, 100e9) == (0.5, None)
    assert checked_mfu(None, 100e9) == (None, None) and checked_mfu(50e9, 0.0) == (None, None)
    mfu, why = checked_mfu(97.7e9, 7.3e9)
    assert mfu is None and "above 100 %" in why and "1338%" in why


def test_report_gives_no_mfu_figure_above_100_percent() -> None:
    from types import SimpleNamespace

    doc = SimpleNamespace(predictions={"mfu": 0.4, "tokens_per_second": 1e3, "step_seconds": 0.5},
                          steps=100, device_type="cpu")
    report = build_report(doc, step_seconds=[0.1] * 5, tokens_per_step=1000, flops_per_token=10**6,
                          peak_flops=7.3e9, peak_method="torch.mm", world_size=4, wall_seconds=1.0,
                          steps_done=5, memory=None, final_val_bpb=None, final_loss=None)
    # on a CPU both MFUs are against the measured peak: the plan's 1e3 tok/s x 1e6 FLOPs / 7.3e9
    assert report["mfu"]["achieved"] is None and report["mfu"]["predicted"] == pytest.approx(1e3 * 1e6 / 7.3e9)
    assert "above 100 %" in report["mfu"]["measurement_error"]
    json.dumps(report, allow_nan=False)  # report.json stays strict JSON
    lines = render_report(report)
    mfu_row = next(line for line in lines if line.startswith("MFU "))
    assert mfu_row.split()[1] == "-" and "%" not in mfu_row.split()[1]
    assert any(line.startswith("MFU: measurement error: ") for line in lines)
