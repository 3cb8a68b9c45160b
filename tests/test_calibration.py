"""Calibration: recorded runs feed the next plan's MFU, on the same GPU type and world size only."""

import json
import subprocess
import sys

import pytest

import chatplan
from chatplan.calibration import Calibration, CalibrationPoint, load_calibration, record_point
from chatplan.runner.report import point_from_run


def point(depth, mfu, gpu="H100-SXM", device_type="cuda", world=8, seq_len=2048, vocab=65536):
    return CalibrationPoint(gpu=gpu, device_type=device_type, world_size=world, depth=depth, device_batch_size=8,
                            seq_len=seq_len, mfu=mfu, chatplan_version="test", vocab_size=vocab)


def test_exact_depth_uses_the_mean():
    cal = Calibration((point(20, 0.40), point(20, 0.44)))
    p = chatplan.plan(depth=20, calibration=cal)
    assert p.time.mfu == pytest.approx(0.42) and p.time.mfu_source == "calibrated"
    assert p.calibration.status == "calibrated from 2 runs (exact)"


def test_interpolates_in_depth_between_neighbours():
    cal = Calibration((point(20, 0.40), point(32, 0.52)))
    assert chatplan.plan(depth=26, calibration=cal).time.mfu == pytest.approx(0.46)


def test_one_sided_points_scale_with_the_model():
    cal = Calibration((point(32, 0.45),))
    p20 = chatplan.plan(depth=20, calibration=cal)
    model20, model32 = chatplan.plan(depth=20).time.mfu, chatplan.plan(depth=32).time.mfu
    assert p20.time.mfu == pytest.approx(0.45 * model20 / model32, rel=1e-9)
    assert p20.calibration.status.startswith("calibrated from 1 run")


def test_other_world_sizes_gpus_and_cpu_points_never_apply():
    cal = Calibration((point(20, 0.10, world=16), point(20, 0.10, gpu="A100-80GB"),
                       point(20, 0.10, gpu="H100-SXM", device_type="cpu")))
    p = chatplan.plan(depth=20, calibration=cal)
    assert p.time.mfu_source == "predicted" and p.calibration.status == "uncalibrated"
    tiny = point(2, 0.3, gpu="CPU", device_type="cpu", world=1, seq_len=256, vocab=8192)
    assert chatplan.plan(tier="tiny", calibration=Calibration((tiny,))).time.mfu == pytest.approx(0.3)
    # ... and a T 256 / V 8,192 point says nothing about the same depth at T 2,048 / V 65,536
    other = chatplan.plan(depth=2, gpus="1xCPU", calibration=Calibration((tiny,)))
    assert other.time.mfu_source == "predicted"


def test_multi_node_calibration_does_not_add_inter_node_time_twice():
    cal = Calibration((point(32, 0.45, world=16),))
    p = chatplan.plan(depth=32, gpus="16xH100", calibration=cal)
    assert p.time.mfu == pytest.approx(0.45) and p.time.communication_hours == 0
    assert chatplan.plan(depth=32, gpus="16xH100").time.communication_hours > 0


@pytest.mark.parametrize("content", ['[]', '{"points": [{"gpu": "H100-SXM"}]}', '{"points": 3}', 'not json'])
def test_bad_calibration_files_are_exit_2(tmp_path, content):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    r = subprocess.run([sys.executable, "-m", "chatplan", "estimate", "--depth", "20", "--calibration", str(bad)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1


def test_implausible_points_are_refused():
    with pytest.raises(ValueError):
        point(20, -3.0)
    with pytest.raises(ValueError):
        point(20, 1.5)


def test_mfu_override_beats_calibration():
    p = chatplan.plan(depth=20, mfu=0.5, calibration=Calibration((point(20, 0.3),)))
    assert p.time.mfu == 0.5 and p.time.mfu_source == "override"


def _fake_run(tmp_path, mfu=0.47):
    run = tmp_path / "run"
    run.mkdir()
    (run / "plan.json").write_text(json.dumps(chatplan.plan(depth=20).to_dict()))
    p = chatplan.plan(depth=20)
    tok_s = mfu * 8 * 989e12 / p.flops_per_token  # what the fleet delivers at that MFU
    (run / "report.json").write_text(json.dumps({"mfu": {"achieved": mfu, "predicted": 0.478},
                                                 "tokens_per_second": {"achieved": tok_s},
                                                 "memory_gib": {"max_allocated": {"achieved": 70.0}}}))
    return run


def test_record_and_load_round_trip(tmp_path):
    run = _fake_run(tmp_path)
    path = tmp_path / "cal" / "calibration.json"
    assert record_point(path, point_from_run(run)) == 1
    # the same run recorded again replaces its point instead of counting twice
    assert record_point(path, point_from_run(run)) == 1
    other = tmp_path / "other"
    other.mkdir()
    for name in ("plan.json", "report.json"):
        (other / name).write_text((run / name).read_text())
    assert record_point(path, point_from_run(other)) == 2
    cal = load_calibration(path)
    assert len(cal.points) == 2 and cal.points[0].depth == 20 and cal.points[0].peak_allocated_gib == 70.0
    assert load_calibration("none") is None


def test_cli_calibrate_then_estimate(tmp_path):
    run = _fake_run(tmp_path, mfu=0.4)
    cal = tmp_path / "c.json"
    env_cmd = [sys.executable, "-m", "chatplan"]
    r = subprocess.run(env_cmd + ["calibrate", "--from", str(run), "--calibration", str(cal)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(env_cmd + ["estimate", "--depth", "20", "--calibration", str(cal), "--json"],
                       capture_output=True, text=True, timeout=60)
    doc = json.loads(r.stdout)
    assert doc["time"]["mfu"] == pytest.approx(0.4) and doc["calibration"]["status"].startswith("calibrated from 1")
    bad = subprocess.run(env_cmd + ["calibrate", "--from", str(tmp_path / "missing"), "--calibration", str(cal)],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "plan.json is missing" in bad.stderr
