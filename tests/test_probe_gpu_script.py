"""scripts/gpu_probe.py, the prepared GPU check, at toy size on this CPU: the same `chatplan probe`
command it runs on a GPU, its results document and its table."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import gpu_probe  # noqa: E402

sys.path.pop(0)


def test_the_gpu_cases_are_the_issues():
    """eager for memory at 2025 d12/d20/d26 and 2026 d12/d24; compiled only for 2025 d20 and 2026 d24; the
    timeouts add up to the five-minute budget."""
    eager = {(a, d) for a, d, c, _ in gpu_probe.GPU_CASES if not c}
    compiled = {(a, d) for a, d, c, _ in gpu_probe.GPU_CASES if c}
    assert eager == {("nanochat-2025", 12), ("nanochat-2025", 20), ("nanochat-2025", 26), ("nanochat-2026", 12),
                     ("nanochat-2026", 24)}
    assert compiled == {("nanochat-2025", 20), ("nanochat-2026", 24)}
    assert set(gpu_probe.FIXED_BATCH) <= {(a, d, c) for a, d, c, _ in gpu_probe.GPU_CASES}  # L5's batch is probed
    assert sum(t for *_, t in gpu_probe.GPU_CASES) <= 450  # worst case; the measured steps take far less


def test_a_toy_case_probes_and_tabulates_on_cpu(tmp_path):
    arch, depth, compiled, timeout = gpu_probe.TOY_CASES[0]
    case = gpu_probe.probe_case(arch, depth, compiled, timeout, "1xCPU", "cpu", True, tmp_path / "cal.json")
    assert case["ok"], case
    batches = case["probe"]["batches"]
    assert [b["device_batch_size"] for b in batches] == [4, 8] and all(b["step_seconds"] > 0 for b in batches)
    assert (tmp_path / "cal.json").is_file()  # the results' own calibration file, not the user's
    table = gpu_probe.summary([case, {**case, "ok": False, "error": "timed out after 1 s"}])
    assert "| nanochat-2025 | 2 | eager | 4 |" in table and "timed out after 1 s" in table
