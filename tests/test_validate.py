"""`chatplan validate`: every FIELD row planned with one set of constants; the README shows its output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from chatplan.validate import field_rows, heldout_rows, validate

ROOT = Path(__file__).resolve().parents[1]
# rows that miss a bar today, and why (the accuracy issue's open work); anything else missing fails
KNOWN_MISSES = {("L5", "allocated GiB"): "5.6 GiB above the term-by-term layout at world size 1, accumulation 32, "
                                         "while the held-out d10 run on the same GPU type and layout (H2) is within "
                                         "1.4 %: unexplained (README)"}


def test_every_field_row_is_checked_with_its_bar():
    checks = validate()
    rows = {c.row.split()[0] for c in checks}
    assert rows == {r["id"] for r in field_rows()}
    misses = {(c.row, c.figure) for c in checks if not c.ok}
    assert misses == set(KNOWN_MISSES), misses
    by = {(c.row, c.figure): c for c in checks}
    assert by[("L2", "memory outcome")].predicted == "tight"
    assert by[("L3", "memory outcome")].predicted == "oom" and by[("N3", "memory outcome")].predicted == "oom"
    assert by[("N2", "allocated GiB")].relative_error == pytest.approx(0, abs=0.01)
    for c in checks:
        if c.relative_error is not None:
            assert c.relative_error == pytest.approx(c.predicted / c.measured - 1)


def test_cli_json_and_exit_code():
    r = subprocess.run([sys.executable, "-m", "chatplan", "validate", "--json"], capture_output=True, text=True,
                       timeout=120)
    doc = json.loads(r.stdout)
    assert r.returncode == 1 and doc["ok"] is False  # L5 misses: exit 1 like a failed check
    assert set(doc["sources"]) == {row["id"] for row in field_rows()}
    assert len(r.stderr.strip().splitlines()) == len(KNOWN_MISSES)
    # the held-out runs ride along in the JSON and never decide the exit code (only FIELD's misses are listed)
    held = {row["id"] for row in heldout_rows()}
    assert {c["row"] for c in doc["heldout"]} == held and set(doc["heldout_sources"]) == held


def test_readme_accuracy_table_is_the_commands_output():
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import accuracy_table
    finally:
        sys.path.pop(0)
    assert accuracy_table.block() in (ROOT / "README.md").read_text()


def test_the_bands_are_the_validation_residuals():
    """chatplan.accuracy's two figures are the RMS relative errors of the rows no constant was fitted to."""
    import math

    from chatplan import accuracy

    checks = validate()
    fitted = {("L4", "train minutes"), ("N2", "allocated GiB"), ("L4", "device GiB")}
    mem = [c.relative_error for c in checks if c.figure in ("allocated GiB", "device GiB")
           and (c.row, c.figure) not in fitted]
    time = [c.relative_error for c in checks if c.figure == "train minutes" and (c.row, c.figure) not in fitted]

    def rms(errors):
        return math.sqrt(sum(e * e for e in errors) / len(errors))

    assert accuracy.MEMORY_REL_ERROR == pytest.approx(rms(mem), abs=5e-4)
    assert accuracy.TIME_REL_ERROR == pytest.approx(rms(time), abs=5e-4)


def test_every_predicted_figure_carries_a_band_and_check_can_gate_on_it(capsys):
    import chatplan
    from chatplan.cli import main

    p = chatplan.plan(depth=32)
    doc = p.to_dict()
    for name in ("peak_allocated_gib", "peak_reserved_gib", "peak_device_gib", "step_seconds", "mfu", "train_hours",
                 "pretrain_hours", "cost_usd", "tokens_per_second"):
        b = doc["bands"][name]
        assert b["low"] < b["value"] < b["high"] and b["basis"]
    assert doc["bands"]["peak_device_gib"]["value"] == doc["predictions"]["peak_device_gib"]
    # a limit between the central cost and the high end of its band: only --pessimistic fails
    central = chatplan.plan(depth=20, gpus="8xH200")
    limit = (central.time.cost_usd + central.bands["cost_usd"]["high"]) / 2
    assert main(["check", "--depth", "20", "--gpus", "8xH200", "--max-cost", f"{limit:.6f}"]) == 0
    assert main(["check", "--depth", "20", "--gpus", "8xH200", "--max-cost", f"{limit:.6f}", "--pessimistic"]) == 1
    assert "high end of its band" in capsys.readouterr().err


def test_l5_time_is_predicted_from_the_5090s_measured_matmul_rate():
    """L5 (1xRTX5090, d20, batch 8): 3,917.84 min measured. The catalog's matmul efficiency is a public
    GEMM measurement (254 TFLOP/s of the 209.5 table figure), not fitted to L5; with it L5 lands within
    1 %, at ~80 % MFU against the table peak (47.7k tok/s)."""
    import chatplan

    by = {(c.row, c.figure): c for c in validate()}
    assert abs(by[("L5", "train minutes")].relative_error) < 0.01
    p = chatplan.plan(depth=20, gpus="1xRTX5090", device_batch_size=8)
    assert p.fleet.gpu.matmul_efficiency == pytest.approx(254.03 / 209.5, abs=1e-4)
    assert p.time.mfu == pytest.approx(0.796, abs=0.01)
    assert p.time.tokens_per_second == pytest.approx(47_700, rel=0.01)


def test_tight_means_the_memory_band_crosses_capacity():
    """L2 (d20, batch 32, 8xH100) once ran out of memory with 72.48 GiB in use: predicted demand 70.9 GiB
    of 79.19 fits, but its high end (x 1.14, the measured memory error) does not: tight. A demand 93 % of
    capacity was `fits` under the old fixed 5 % margin; the band makes it tight."""
    import chatplan
    from chatplan.accuracy import MEMORY_REL_ERROR
    from chatplan.memory import fit_verdict

    m = chatplan.plan(depth=20, gpus="8xH100", device_batch_size=32).memory
    demand = m.peak_allocated_gib + m.cuda_context / 2**30
    assert demand < m.capacity_gib < demand * (1 + MEMORY_REL_ERROR) and m.verdict == "tight"
    assert fit_verdict(0.93 * 80, 80) == "tight" and fit_verdict(0.87 * 80, 80) == "fits"
    assert fit_verdict(80.1, 80) == "oom"
    # d32 at batch 8 (L4): the allocator cache fills the device to ~75 GiB, but the demand is ~57 GiB: fits
    assert chatplan.plan(depth=32, gpus="8xH100", device_batch_size=8).memory.verdict == "fits"


def test_check_pessimistic_fails_a_plan_whose_memory_band_crosses_capacity(capsys):
    from chatplan.cli import main

    args = ["check", "--depth", "20", "--gpus", "8xH100", "--device-batch-size", "32"]
    assert main(args) == 0  # central 75.2 GiB (device) <= 79.19
    assert main([*args, "--pessimistic"]) == 1  # high end 85.8 GiB > 79.19
    assert "peak_device_gib (high end of its band)" in capsys.readouterr().err


def test_leave_one_out_names_what_is_not_cross_validated():
    from chatplan.validate import fitted_constants, leave_one_out

    loo = {(x.row, x.figure): x for x in leave_one_out()}
    # a constant fixed by one row cannot be validated on that row
    for key in [("L4", "train minutes"), ("L4", "device GiB"), ("N2", "allocated GiB")]:
        assert loo[key].error is None and "alone fixes" in loo[key].reason
    scored = [x for x in loo.values() if x.error is not None]
    assert {(x.row, x.figure) for x in scored} == {("L1", "allocated GiB"), ("L1", "train minutes"),
                                                   ("L5", "allocated GiB"), ("L5", "train minutes"),
                                                   ("N1", "train minutes"), ("N2", "train minutes")}
    assert max(abs(x.error) for x in scored if x.figure == "train minutes") < 0.15
    # fewer constants fitted to FIELD rows than FIELD figures
    fitted = [k for k in fitted_constants() if k.field_rows]
    figures = [c for c in validate() if c.relative_error is not None]
    assert len(fitted) == 4 < len(figures) == 9


def test_held_out_runs_are_scored_and_pin_the_two_byte_loss_path():
    """chatplan/field_heldout.json: public nanochat reports never fitted to. The runs the compiled loss
    path dominates are what set it at 2 bytes per logit; at the old 4 (late 2025) or 10 (2026) bytes H1
    (8xH100 d8, batch 32) was +39 % and H4 (one A100, 2026 d2) +282 %. The late-2025 rows and the 2026 bf16 rows
    the loss path and activations dominate (d2, d16 x2) must stay within 10 % (H9, a 3090 at batch 1, peaks in
    the optimizer step and is -23 %, unexplained). So must the fp8 d18/d24 rows on 1, 4 and 8 GPUs: they pin
    the compiled fp8 block keeping 1-byte copies of the fp8 linears' inputs (with their bf16 copies kept,
    the model before this rule, they were +14 % to +20 %; with nothing kept, the CPU partition's bound,
    -5 % to -12 %). H5 (d12, full windows, H100 NVL) and H16 (8xH200 d26, a modified fork) are ~-24 %,
    unexplained."""
    from chatplan.validate import heldout

    checks = heldout()
    assert {c.row for c in checks} == {r["id"] for r in heldout_rows()}
    rows = {r["id"]: r for r in heldout_rows()}
    mem = {c.row: c for c in checks if c.figure == "allocated GiB"}
    assert {"H1", "H2", "H3", "H4", "H6", "H7"} <= set(mem)
    for rid in ("H1", "H2", "H3", "H4", "H6", "H7"):
        assert not rows[rid]["inputs"].get("fp8") and abs(mem[rid].relative_error) < 0.10, (rid, mem[rid])
    for rid in ("H8", "H10", "H11", "H12", "H13", "H14", "H15"):  # fp8 d18, d24 on 1, 4 and 8 GPUs
        assert rows[rid]["inputs"]["fp8"] and -0.04 < mem[rid].relative_error < 0.08, (rid, mem[rid])
