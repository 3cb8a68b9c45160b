"""The capability forecast (chatplan/forecast.py, scripts/fit_capability.py, chatplan/target.py).

The fit is refitted here from chatplan/capability.csv (about a second, leave-one-out included): the shipped
constants, the README's table and the held-out checks of issue 14 are all measured against a fresh fit.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("scipy")  # the fitting script's dependency (the dev extra); the planner needs neither

import chatplan  # noqa: E402
from chatplan.arch import get_arch  # noqa: E402
from chatplan.catalog import builtin_catalog  # noqa: E402
from chatplan.cli import main  # noqa: E402
from chatplan.errors import RequirementFailed  # noqa: E402
from chatplan.forecast import FIT_FILE, GPT2_CORE, Fit, default_fit, forecast  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import fit_capability as fc  # noqa: E402

sys.path.pop(0)

ROWS = fc.load_rows()


@pytest.fixture(scope="module")
def fresh() -> dict:
    return fc.document(ROWS)


def _close(a, b, path="") -> None:
    """Equal documents, floats to 1e-6 relative (least squares may differ in the last digits across BLAS builds)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), path
        for k in a:
            _close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9), (path, a, b)
    else:
        assert a == b, (path, a, b)


# --- the fit is code, from the data -----------------------------------------------------------------

def test_the_shipped_csv_is_the_research_table():
    shared = ROOT.parent / "shared" / "CAPABILITY.csv"
    if shared.is_file():
        assert (ROOT / "chatplan" / "capability.csv").read_bytes() == shared.read_bytes()
    assert len(ROWS) == 57 and {r.group for r in ROWS} == set(fc.GROUPS)


def test_forecast_fit_json_is_a_fresh_fit(fresh):
    _close(fresh, json.loads(FIT_FILE.read_text()))


def test_readme_table_is_the_scripts_output(fresh):
    assert fc.block(fresh["leave_one_out"]) in (ROOT / "README.md").read_text()


def test_leave_one_configuration_out_meets_the_bars(fresh):
    acc = fresh["leave_one_out"]
    assert acc["all CORE"]["median"] <= 0.008 and acc["all CORE"]["rows"] == 29
    for g in fc.LAW_GROUPS:
        assert acc[f"{g} val_bpb"]["median"] <= 0.006, g
    assert acc["law groups val_bpb"]["median"] <= 0.006 and acc["law groups val_bpb"]["rows"] == 39
    # the bands are those errors
    assert fresh["band"]["core"]["half"] == acc["all CORE"]["rms"]
    assert fresh["band"]["bpb_law"]["half"] == acc["law groups val_bpb"]["rms"]


def test_the_planner_uses_the_csvs_quantities():
    """N (nanochat's scaling params), tokens and total FLOPs of a plan equal the CSV's for the same run."""
    cases = {"O04": dict(depth=20), "O15": dict(depth=12), "O02": dict(depth=32),
             "C03": dict(arch="nanochat-2026", depth=24, data_ratio=8),
             "C08": dict(arch="nanochat-2026", depth=14, data_ratio=8),
             "C11": dict(arch="nanochat-2026", depth=12, data_ratio=8)}
    rows = {r.id: r for r in ROWS}
    for rid, kw in cases.items():
        p = chatplan.plan(**kw)
        count = fc.ARCHS[p.arch.name]["count"]
        r = rows[rid]
        assert getattr(p.params, count) == r.scaling_params, rid
        assert p.horizon.tokens == r.tokens, rid
        assert p.horizon.total_flops == pytest.approx(r.flops, rel=1e-4), rid


# --- held-out checks of issue 14 ---------------------------------------------------------------------

def _refit_without(pred) -> Fit:
    return Fit.from_dict(fc.fit([r for r in ROWS if not pred(r)]))


def _forecast(fit: Fit, p):
    return forecast(fit, p.arch.name, p.depth, p.params, p.horizon.tokens, p.horizon.total_flops)


def test_speedrun_forecast_with_every_d24_ratio8_climbmix_row_left_out(capsys):
    fit = _refit_without(lambda r: r.config == ("CLIMBMIX-32K", 24, "8"))
    p = chatplan.plan(tier="speedrun")
    held = _forecast(fit, p)
    assert abs(held.core - 0.2626) <= 0.015, held.core
    # and the CLI forecasts with the shipped fit: `estimate --tier speedrun --json`
    assert main(["estimate", "--tier", "speedrun", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)["forecast"]
    assert doc["core"]["value"] == pytest.approx(_forecast(default_fit(), p).core)
    assert doc["group"] == "CLIMBMIX-32K" and doc["extrapolates"] is False
    assert doc["nearest_published"]["text"] == "Run 6 (C03), d24 fp8 ratio 8: CORE 0.2626, bpb 0.718"
    assert doc["core"]["low"] < doc["core"]["value"] < doc["core"]["high"]


def test_tier_100_forecast_with_every_late_2025_d20_row_left_out():
    fit = _refit_without(lambda r: r.group == "OCT-FWE-65K" and r.depth == 20)
    held = _forecast(fit, chatplan.plan(tier="100"))
    assert abs(held.core - 0.22) <= 0.02, held.core


# --- the inverse question ------------------------------------------------------------------------------

def _grid_cheapest(arch: str, gpus: str, core: float) -> tuple[float, list]:
    """Every valid depth x ratio 4..20 step 0.25, planned one by one (until depths stop fitting in memory)."""
    catalog, a = builtin_catalog(), get_arch(arch)
    reaching = []
    for depth in range(1, 129):
        if not a.is_valid_depth(depth):
            continue
        try:
            chatplan.plan(arch=arch, depth=depth, gpus=gpus, catalog=catalog)
        except RequirementFailed:
            break
        for i in range(65):
            p = chatplan.plan(arch=arch, depth=depth, data_ratio=4 + 0.25 * i, gpus=gpus, catalog=catalog)
            if p.forecast.core >= core:
                reaching.append((p.time.cost_usd, depth, p.request.data_ratio))
    return min(reaching)[0], reaching


def test_target_core_finds_the_cheapest_plan_on_the_grid(capsys):
    assert main(["estimate", "--target-core", "0.256525", "--arch", "nanochat-2026", "--gpus", "8xH100",
                 "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    cheapest, reaching = _grid_cheapest("nanochat-2026", "8xH100", 0.256525)
    assert doc["forecast"]["core"]["value"] >= 0.256525
    assert doc["time"]["cost_usd"] == pytest.approx(cheapest, rel=1e-12)
    assert all(doc["time"]["cost_usd"] <= c for c, _, _ in reaching)
    assert (doc["model"]["n_layer"], doc["inputs"]["data_ratio"]) in {(d, r) for _, d, r in reaching}
    assert doc["target"]["chosen_depth"] == doc["model"]["n_layer"] and doc["inputs"]["target_core"] == 0.256525


def test_tier_gpt2_is_the_target_under_the_selected_arch():
    for arch in ("nanochat-2025", "nanochat-2026"):
        a = chatplan.plan(tier="gpt2", arch=arch)
        b = chatplan.plan(target_core=GPT2_CORE, arch=arch)
        assert (a.depth, a.request.data_ratio, a.time.cost_usd) == (b.depth, b.request.data_ratio, b.time.cost_usd)
        assert a.forecast.core >= GPT2_CORE and a.target.named == "gpt2" and a.arch.name == arch


def test_target_bpb_and_a_pinned_depth():
    p = chatplan.plan(arch="nanochat-2026", depth=20, target_bpb=0.76)
    assert p.depth == 20 and p.forecast.val_bpb <= 0.76
    lower = chatplan.plan(arch="nanochat-2026", depth=20, data_ratio=p.request.data_ratio - 0.25)
    assert lower.forecast.val_bpb > 0.76  # the smallest ratio that reaches it


def test_budget_reports_what_it_buys(capsys):
    assert main(["estimate", "--budget", "100", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["budget"]["chosen_depth"] == doc["model"]["n_layer"] and doc["forecast"]["core"]["value"] > 0.15


def test_compare_rows_carry_the_forecast(capsys):
    assert main(["compare", "--tier", "gpt2", "--arch", "nanochat-2026", "--counts", "8", "--gpu-types", "H100",
                 "--json"]) == 0
    row = json.loads(capsys.readouterr().out)["rows"][0]
    assert row["forecast"]["core"]["value"] >= GPT2_CORE and set(row["forecast"]["val_bpb"]) == {
        "value", "low", "high", "basis"}


@pytest.mark.parametrize("args,code,words", [
    (["--target-core", "1.5"], 2, "target CORE must be at most 1.0"),
    (["--target-core", "0.2", "--budget", "100"], 2, "drop --budget"),
    (["--tier", "gpt2", "--target-core", "0.3"], 2, "--tier gpt2 means --target-core 0.256525"),
    (["--target-core", "0.9"], 1, "no plan on 8xH100 reaches CORE 0.9"),
])
def test_bad_targets_are_one_line(args, code, words, capsys):
    assert main(["estimate", *args]) == code
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


# --- bands and extrapolation -------------------------------------------------------------------------------

def test_extrapolation_is_said_and_widens_the_band():
    inside = chatplan.plan(tier="speedrun").forecast
    outside = chatplan.plan(arch="nanochat-2026", depth=32).forecast  # ratio 12, d32, 2e20 FLOPs
    assert not inside.extrapolates and inside.widen == 1.0
    assert [s.split(" ")[0] for s in outside.extrapolation()] == ["FLOPs", "tokens", "depth"]
    assert outside.core_half > inside.core_half and outside.bpb_half > inside.bpb_half
    assert chatplan.plan(tier="tiny").forecast is None  # the embedded sample corpus: nothing published


def test_a_measured_quality_beside_the_forecast(tmp_path, capsys):
    from chatplan.contract import forecast_check, read_plan
    from chatplan_train.report import build_report

    doc = read_plan(chatplan.plan(depth=20).to_dict())
    report = build_report(doc, step_seconds=[0.5] * 5, tokens_per_step=1024, flops_per_token=doc.flops_per_token,
                          peak_flops=1e15, peak_method="catalog", world_size=8, wall_seconds=3.0, steps_done=5,
                          memory=None, final_val_bpb=0.815, final_loss=2.6)
    bpb = report["val_bpb_forecast"]
    assert bpb["achieved"] == 0.815 and bpb["within_band"] is True
    assert bpb["error"] == pytest.approx(0.815 - doc.forecast["val_bpb"]["value"])
    assert report["core_forecast"]["achieved"] is None  # CORE needs benchmark data: given by calibrate --core
    assert forecast_check(0.5, doc.forecast["core"])["within_band"] is False
    # `chatplan calibrate --core`: the comparison, one line
    run = tmp_path / "run"
    run.mkdir()
    (run / "plan.json").write_text(json.dumps(chatplan.plan(depth=20).to_dict()))
    (run / "report.json").write_text(json.dumps({"tokens_per_second": {"achieved": 0.45 * 8 * 989e12 / 3.49e9}}))
    assert main(["calibrate", "--from", str(run), "--calibration", str(tmp_path / "c.json"), "--core", "0.21"]) == 0
    out = capsys.readouterr().out
    assert "CORE 0.2100 vs forecast 0.2111" in out and "inside the band" in out
    assert main(["calibrate", "--from", str(run), "--calibration", str(tmp_path / "c.json"), "--core", "2"]) == 2


def test_planning_imports_no_numpy_or_scipy():
    code = ("import sys, chatplan\np = chatplan.plan(arch='nanochat-2026', depth=24)\nassert p.forecast.core > 0\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('numpy', 'scipy')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
