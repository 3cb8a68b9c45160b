"""`--budget`, `chatplan check` (CI gates) and `chatplan compare` (fleets)."""

import json
import subprocess
import sys

import pytest

import chatplan
from chatplan.catalog import builtin_catalog
from chatplan.errors import RequirementFailed
from chatplan.request import PlanRequest
from chatplan.search import compare_fleets


def run(*args):
    return subprocess.run([sys.executable, "-m", "chatplan", *args], capture_output=True, text=True, timeout=60)


# --- budget --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("budget,depth", [(100, 20), (300, 26), (1000, 32)])
def test_budget_picks_the_tier_depths(budget, depth):
    p = chatplan.plan(budget=budget, gpus="8xH100", mfu=0.5092)
    assert p.depth == depth and p.time.cost_usd <= budget
    assert p.budget.next_cost_usd > budget and p.budget.next_depth == depth + 2


@pytest.mark.parametrize("depth,train_cost", [(22, 104), (28, 366), (34, 1047)])
def test_next_depths_cost_more(depth, train_cost):
    p = chatplan.plan(depth=depth, gpus="8xH100", mfu=0.5092)
    # the figures are the training steps alone; the plan's cost adds the evaluation passes
    assert p.time.train_hours * 8 * 3.0 == pytest.approx(train_cost, rel=0.01)
    assert p.time.cost_usd > {22: 100, 28: 300, 34: 1000}[depth]


def test_budget_choice_is_monotone():
    depths = [chatplan.plan(budget=b, mfu=0.5092).depth for b in (1, 5, 20, 50, 100, 200, 300, 600, 1000, 2000)]
    assert depths == sorted(depths) and depths[-1] > depths[0]


def test_budget_below_depth_one_exits_1():
    with pytest.raises(RequirementFailed, match="depth 1 costs"):
        chatplan.plan(budget=0.001, mfu=0.5092)
    r = run("estimate", "--budget", "0.001", "--mfu", "0.5092", "--json")
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1
    assert run("estimate", "--budget", "100", "--depth", "20").returncode == 2


# --- check -----------------------------------------------------------------------------------------------
def test_check_exit_0_when_all_hold():
    r = run("check", "--tier", "300", "--max-cost", "300", "--max-hours", "12", "--min-headroom-gib", "1",
            "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    p = chatplan.plan(tier="300")
    assert doc["ok"] is True
    by_name = {c["name"]: c for c in doc["checks"]}
    assert by_name["max_cost"] == {"name": "max_cost", "limit": 300.0, "predicted": p.time.cost_usd, "ok": True,
                                   "unit": "USD", "compares": "pretraining cost", "verdict": "pass"}
    assert by_name["max_hours"]["predicted"] == p.time.pretrain_hours
    assert by_name["min_headroom_gib"]["predicted"] == p.memory.headroom_gib


def test_check_exit_1_one_line_per_violation():
    r = run("check", "--tier", "300", "--max-cost", "100", "--max-hours", "1", "--max-gpu-memory-frac", "0.5")
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 3 and all("check failed" in line for line in lines)
    assert any("max_gpu_memory_frac" in line and "peak_device_gib" in line for line in lines)


def test_check_exit_2_on_bad_input():
    assert run("check", "--tier", "300", "--max-cost", "-1").returncode == 2
    assert run("check", "--depth", "21", "--max-cost", "10").returncode == 2


# --- compare ------------------------------------------------------------------------------------------------
def test_compare_rows_equal_plan_field_by_field():
    rows = compare_fleets(PlanRequest(depth=32), builtin_catalog(), by="cost",
                          gpu_names=["H100", "A100-40GB", "RTX-4090"], counts=(1, 8, 16))
    runnable = [r for r in rows if r.plan is not None]
    for row in runnable:
        assert row.plan.to_dict() == chatplan.plan(depth=32, gpus=row.fleet).to_dict()
    costs = [r.plan.time.cost_usd for r in runnable]
    assert costs == sorted(costs)
    # a 24 GiB card cannot hold d32 even at batch 1 on one GPU: marked, ranked last
    assert rows[-1].plan is None and rows[-1].to_dict()["verdict"] == "oom"


def test_compare_by_time_with_deadline_cli():
    r = run("compare", "--depth", "26", "--by", "time", "--max-hours", "24", "--json")
    doc = json.loads(r.stdout)
    timed = [row for row in doc["rows"] if "pretrain_hours" in row]
    within = [row for row in timed if row["pretrain_hours"] <= 24]
    assert [row["pretrain_hours"] for row in within] == sorted(row["pretrain_hours"] for row in within)
    assert doc["rows"][: len(within)] == within  # the deadline keeps only fleets done in time on top
    assert run("compare", "--depth", "26", "--by", "speed").returncode == 2
