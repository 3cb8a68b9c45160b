"""Record plan.json documents of the planner as it is, for a grid of inputs (the redesign's guard).

Run on a worktree of main at 8520f67 (schema 1), before the redesign:

    git worktree add /tmp/wt-8520f67 8520f67
    cd /tmp/wt-8520f67 && python /path/to/scripts/make_behaviour_fixture.py OUT.json.gz

Each case is the keyword arguments given to `chatplan.plan()` of that commit (no catalog file, no
calibration) and either the document it returned or the one-line error it raised.
tests/test_behaviour_unchanged.py maps every case onto today's planner and compares.
"""

from __future__ import annotations

import gzip
import itertools
import json
import sys

from chatplan.shape import is_valid_depth

import chatplan
from chatplan.errors import ChatplanError


def cases() -> list[dict]:
    out: list[dict] = []
    # every valid default depth 1..64 on the default fleet
    out += [{"depth": d} for d in range(1, 65) if is_valid_depth(d)]
    out += [{"depth": d, "gpus": g} for d in range(2, 65, 6) for g in ("1xH100", "16xH100", "8xA100-80GB")
            if is_valid_depth(d)]
    # every tier, on its own fleet and others
    out += [{"tier": t} for t in ("100", "300", "1000", "tiny")]
    out += [{"tier": t, "gpus": g} for t, g in itertools.product(("100", "300", "1000"),
                                                                 ("8xA100-80GB", "16xH100", "1xH100"))]
    out += [{"tier": "tiny", "gpus": "2xCPU", "gpus_per_node": 2}, {"tier": "tiny", "steps": 10}]
    # fleets and nodes
    fleets = ["1xH100", "8xH100", "16xH100", "32xH100", "8xA100-40GB", "8xA100-80GB", "8xH200", "1xRTX5090",
              "8xB200", "4xL40S", "2xCPU"]
    out += [{"depth": d, "gpus": g} for d, g in itertools.product((4, 12, 20, 26, 32), fleets)]
    out += [{"depth": 20, "gpus": "16xH100", "gpus_per_node": 4},
            {"depth": 32, "gpus": "64xH100", "nodes": 8}, {"depth": 26, "gpus": "16xH100", "inter_node_gbps": 100.0}]
    # overrides
    out += [{"depth": 20, "kv_heads": k} for k in (1, 2, 5)]
    out += [{"depth": 20, "vocab_size": v} for v in (32_768, 50_304)]
    out += [{"depth": 20, "seq_len": t} for t in (1_024, 4_096)]
    out += [{"depth": d, "aspect_ratio": a, "head_dim": h} for d, a, h in ((12, 128, 64), (16, 96, 96), (8, 64, 64))]
    out += [{"depth": 20, "total_batch_size": b} for b in (262_144, 1_048_576)]
    out += [{"depth": 20, "data_ratio": r} for r in (8.0, 10.5, 40.0)]
    out += [{"depth": 26, "target_flops": f} for f in (1e18, 4.64e18, 1e20)]
    out += [{"depth": 20, "steps": s} for s in (1, 100, 5_000)]
    out += [{"depth": d, "device_batch_size": b} for d, b in ((20, 16), (26, 32), (32, 16), (32, 4))]
    out += [{"depth": 32, "mfu": m} for m in (0.3, 0.5092)]
    out += [{"depth": 20, "price": p} for p in (0.0, 2.5)]
    out += [{"depth": 20, "chars_per_token": 4.2}, {"depth": 20, "chars_per_shard": 1e8},
            {"depth": 20, "eval_every": 0}, {"depth": 20, "eval_every": 100, "eval_tokens": 524_288},
            {"depth": 20, "compile": False}, {"depth": 4, "gpus": "2xCPU", "compile": True}]
    # budgets, on several fleets and with an MFU override
    out += [{"budget": b} for b in (50.0, 100.0, 300.0, 1000.0, 5000.0)]
    out += [{"budget": b, "mfu": 0.5092} for b in (100.0, 300.0, 1000.0)]
    out += [{"budget": 500.0, "gpus": g} for g in ("8xA100-80GB", "16xH100", "1xRTX5090")]
    # inputs that are refused (the error line must stay the same)
    out += [{"depth": 5}, {"depth": 0}, {"depth": 20, "gpus": "6xH100"}, {"depth": 20, "device_batch_size": 3},
            {"depth": 20, "mfu": 1.5}, {"tier": "500"}, {"tier": "100", "depth": 12}, {"budget": 0.01},
            {"depth": 20, "gpus": "8xNOPE"}, {"tier": "tiny", "gpus": "8xH100"}, {"depth": 64, "gpus": "1xRTX5090"}]
    return out


def record(kwargs: dict) -> dict:
    try:
        return {"kwargs": kwargs, "plan": chatplan.plan(**kwargs).to_dict()}
    except ChatplanError as e:
        return {"kwargs": kwargs, "error": str(e), "exit_code": e.exit_code}


def main() -> None:
    rows = [record(k) for k in cases()]
    with gzip.open(sys.argv[1], "wt") as f:
        json.dump({"commit": "8520f67", "cases": rows}, f, sort_keys=True)
    print(f"{len(rows)} cases, {sum('plan' in r for r in rows)} plans, {sum('error' in r for r in rows)} errors")


if __name__ == "__main__":
    main()
