"""`chatplan probe`: a few real steps of the plan's model on one process, recorded as calibration that the
next plan uses (time on any world size of that GPU type; memory on CUDA), and an OOM that is reported as
the largest batch that fit. That a probe-calibrated two-rank run lands within 10 % of its prediction is a
speed target, measured in benchmarks/bench_probe.py."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

import chatplan
from chatplan.calibration import Calibration, CalibrationPoint, load_calibration
from tests.helpers import chatplan_cli


@pytest.fixture(scope="module")
def tiny_probe(tmp_path_factory) -> dict:
    cal = tmp_path_factory.mktemp("probe") / "calibration.json"
    r = chatplan_cli("probe", "--tier", "tiny", "--device", "cpu", "--calibration", str(cal), "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    return {"doc": json.loads(r.stdout), "progress": r.stderr, "cal": cal}


def test_tiny_cpu_probe_records_points_the_next_estimate_uses(tiny_probe):
    doc, cal = tiny_probe["doc"], tiny_probe["cal"]
    assert [b["device_batch_size"] for b in doc["batches"]] == [8, 16] and all(b["fit"] for b in doc["batches"])
    assert doc["largest_fitting_batch"] == 16 and doc["points_recorded"] == 2
    for b in doc["batches"]:
        assert b["step_seconds"] > 0 and b["tokens_per_second"] == pytest.approx(b["device_batch_size"] * 256
                                                                                 / b["step_seconds"])
        assert b["peak_rss_gib"] > b["rss_growth_gib"] > 0 and b["max_allocated_gib"] is None  # CPU: RSS
    assert "RSS" in doc["memory_measure"] and "not the planner's allocated figure" in doc["memory_measure"]
    assert "probe: batch 16: step 5/5" in tiny_probe["progress"]  # progress, step by step
    points = load_calibration(str(cal)).points
    assert {(p.source, p.world_size, p.grad_accum_steps, p.device_batch_size) for p in points} == {
        ("probe", 1, 1, 8), ("probe", 1, 1, 16)}
    # the measured tok/s at the plan's batch is what the calibrated tiny plan predicts (same config: ratio 1)
    p = chatplan.plan(tier="tiny", calibration=load_calibration(str(cal)))
    assert p.calibration.status.startswith("calibrated from a probe on 1xCPU, 20")
    assert p.time.tokens_per_second == pytest.approx(doc["batches"][0]["tokens_per_second"], rel=1e-6)
    # and it follows what was recorded, however close the model already is on this machine: the same points
    # at half the MFU give half the throughput (an ignored calibration would give the model's figure twice)
    halved = Calibration(points=tuple(replace(q, mfu=q.mfu / 2) for q in points))
    assert chatplan.plan(tier="tiny", calibration=halved).time.tokens_per_second == pytest.approx(
        p.time.tokens_per_second / 2, rel=1e-6)


def test_a_probe_that_runs_out_of_memory_reports_the_largest_batch_that_fit(tiny_probe, tmp_path):
    """The cap sits between what batch 8 and batch 16 grew the process by: batch 16 raises the OOM error
    torch raises (torch.OutOfMemoryError), the probe catches it and reports batch 8."""
    growth = [b["rss_growth_gib"] for b in tiny_probe["doc"]["batches"]]
    assert growth[1] > growth[0] + 0.04  # ~0.05 GiB apart; a second run lands within ~0.005 of each
    cap = (growth[0] + growth[1]) / 2
    cal = tmp_path / "cal.json"
    r = chatplan_cli("probe", "--tier", "tiny", "--device", "cpu", "--calibration", str(cal), "--json",
                     env={"CHATPLAN_PROBE_MEMORY_CAP_GIB": f"{cap:.4f}"})
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads(r.stdout)
    b8, b16 = doc["batches"]
    assert b8["fit"] and not b16["fit"] and "OutOfMemory" not in b16["error"] and "cap" in b16["error"]
    assert doc["largest_fitting_batch"] == 8 and doc["points_recorded"] == 1
    # the memory measure repeats: batch 8 of this second run grew what it grew in the first (with glibc's
    # heap history in the figure two runs differed by 0.04 GiB, the whole gap the cap sits in)
    assert b8["rss_growth_gib"] == pytest.approx(growth[0], abs=0.01)
    assert "Traceback" not in r.stderr and "out of memory" in r.stderr
    assert [p.device_batch_size for p in load_calibration(str(cal)).points] == [8]
    bad = chatplan_cli("probe", "--tier", "tiny", "--device", "cpu", "--calibration", "none",
                       env={"CHATPLAN_PROBE_MEMORY_CAP_GIB": "-1"})
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "CHATPLAN_PROBE_MEMORY_CAP_GIB" in bad.stderr


_EXACT_RSS_SCRIPT = """
import gc, json, torch
from chatplan_train.probe import _exact_rss, _glibc, _status_gib
if _glibc() is None:
    print(json.dumps(None)); raise SystemExit
def rss(): return _status_gib("VmRSS") * 1024
def churn():  # 150 one-MiB blocks, every page written, all freed but the last (it pins the heap's top)
    blocks = [torch.ones(2**20, dtype=torch.uint8) for _ in range(150)]
    keep = blocks[-1]; del blocks; gc.collect(); return keep
del_me = torch.ones(8 * 2**20, dtype=torch.uint8); del del_me  # a large free raises glibc's mmap threshold
base, out, kept = rss(), {}, []
out["on"] = _exact_rss(True); kept.append(churn()); out["exact churn"] = rss() - base
out["off"] = _exact_rss(False); kept.append(churn()); out["steady churn"] = rss() - base
_exact_rss(True); out["trimmed"] = rss() - base
print(json.dumps(out))
"""


def test_exact_rss_makes_rss_what_is_live_and_off_restores_the_heap(tmp_path):
    """The probe's CPU memory figure rests on _exact_rss: with it on, blocks of 1 MiB are mapped fresh and
    unmapped on free (150 MiB freed leaves no RSS), and switching it on returns the free heap pages; off,
    the same churn stays resident in glibc's heap (the steady state the timed steps run in). Run in its
    own process: mallopt is process-wide. A no-op _exact_rss fails the first figure, a missing trim the
    last, an `off` that does not restore the threshold the middle one."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", _EXACT_RSS_SCRIPT], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout)
    if out is None:
        pytest.skip("not glibc: the probe's RSS keeps the allocator's history there, as documented")
    assert out["on"] and out["off"]
    assert out["exact churn"] < 5  # MiB: one live block kept
    assert out["steady churn"] > 120  # the 149 freed blocks stay in the heap
    assert out["trimmed"] < 8  # trim gives them back; two live blocks kept


def _point(depth: int, batch: int, **kw) -> CalibrationPoint:
    base = dict(gpu="H100-SXM", device_type="cuda", world_size=1, depth=depth, device_batch_size=batch, seq_len=2048,
                vocab_size=65_536, arch="nanochat-2025", source="probe", grad_accum_steps=1, chatplan_version="x",
                recorded_at="2026-12-03T00:00:00+00:00", mfu=0.5)
    return CalibrationPoint(**{**base, **kw})


def test_a_gpu_probe_calibrates_the_time_of_an_eight_gpu_plan_through_the_models_ratio():
    from chatplan.catalog import builtin_catalog, parse_fleet
    from chatplan.timing import predict_step

    one = chatplan.plan(depth=20, gpus="1xH100", device_batch_size=32, total_batch_size=32 * 2048)
    model_one = one.step.mfu
    cal = Calibration((_point(20, 32, mfu=model_one * 1.1),))
    eight = chatplan.plan(depth=20, gpus="8xH100", calibration=cal)
    uncal = chatplan.plan(depth=20, gpus="8xH100")
    assert eight.time.mfu_source == "calibrated" and eight.calibration.status.startswith(
        "calibrated from a probe on 1xH100-SXM, 2026-12-03")
    assert eight.time.mfu == pytest.approx(uncal.time.mfu * 1.1, rel=1e-9)
    assert parse_fleet("1xH100", builtin_catalog()).num_gpus == 1 and predict_step  # the model at world 1


def test_measured_memory_replaces_the_models_and_says_so():
    """Two CUDA probe points at d20 (batches 16 and 32, one GPU): measured = model + 8 GiB at batch 16 and
    + 10 GiB at 32 (a fixed 6 GiB and 0.125 GiB per sequence). The 8-GPU plan at batch 32 gets its own
    model figure plus that line at its batch, the measured band (±2 %), and a note."""
    m16 = chatplan.plan(depth=20, gpus="1xH100", device_batch_size=16, total_batch_size=16 * 2048).memory
    m32 = chatplan.plan(depth=20, gpus="1xH100", device_batch_size=32, total_batch_size=32 * 2048).memory
    cal = Calibration((_point(20, 16, peak_allocated_gib=m16.peak_allocated_gib + 8.0,
                              peak_reserved_gib=m16.peak_reserved_gib + 8.5, device_used_gib=m16.peak_device_gib + 9),
                       _point(20, 32, peak_allocated_gib=m32.peak_allocated_gib + 10.0,
                              peak_reserved_gib=m32.peak_reserved_gib + 10.5, device_used_gib=m32.peak_device_gib + 11))
                      )
    model = chatplan.plan(depth=20, gpus="8xH100").memory
    p = chatplan.plan(depth=20, gpus="8xH100", calibration=cal)
    assert model.source == "model" and p.memory.source.startswith("memory calibrated from a probe on 1xH100-SXM")
    assert p.memory.peak_allocated_gib == pytest.approx(model.peak_allocated_gib + 10.0, rel=1e-9)
    assert p.memory.peak_reserved_gib == pytest.approx(model.peak_reserved_gib + 10.5, rel=1e-9)
    assert p.memory.peak_device_gib == pytest.approx(model.peak_device_gib + 11, rel=1e-9)
    assert p.memory.source in p.notes
    b = p.bands["peak_allocated_gib"]
    assert b["high"] == pytest.approx(p.memory.peak_allocated_gib * 1.02) and "calibrated from a probe" in b["basis"]
    # 70.1 + 10 GiB (+ the CUDA context) of 79.19: measured, it no longer fits
    assert p.memory.verdict == "oom" and "by the measured figures" in p.warnings[-1]
    doc = p.to_dict()
    assert doc["predictions"]["peak_allocated_gib"] == pytest.approx(p.memory.peak_allocated_gib)
    # another depth, or a CPU plan, is not calibrated by these points
    assert chatplan.plan(depth=26, gpus="8xH100", calibration=cal).memory.source == "model"
