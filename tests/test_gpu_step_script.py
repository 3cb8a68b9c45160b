"""The prepared GPU measurement script runs here in its CPU mode, at toy size: same code path."""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_cpu_mode_measures_steps_and_writes_results(tmp_path, capsys):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import gpu_step
    finally:
        sys.path.pop(0)
    out = tmp_path / "r.json"
    assert gpu_step.main(["--device", "cpu", "--steps", "4", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert [(r["arch"], r["device_batch_size"]) for r in doc["results"]] == [("nanochat-2025", 2),
                                                                             ("nanochat-2026", 1)]
    for r in doc["results"]:
        assert r["steps"] == 4 and r["step_seconds"] > 0 and 0 < r["mfu"] < 1
        assert r["depth"] == 2 and "oom" not in r and "skipped" not in r
        assert set(r["predicted"]) == {"step_seconds_per_micro_batch", "mfu", "peak_allocated_gib",
                                       "peak_reserved_gib", "peak_device_gib"}
    assert doc["results"][1]["attention_kernel"] == "sdpa-masked"  # the 2026 window (128) < context (256)
    assert doc["command"].startswith("python benchmarks/gpu_step.py")
