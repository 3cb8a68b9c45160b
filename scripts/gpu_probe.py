"""The prepared GPU check of the accuracy issue: `chatplan probe` on one GPU for the depths whose memory and
speed the planner's constants rest on, results into benchmarks/results/.

    python scripts/gpu_probe.py --gpus 1xH100            # on a machine with one GPU (budget: ~5 minutes)
    python scripts/gpu_probe.py --device cpu --toy       # the same path at toy size on a CPU (tested)

Cases (GPU): late-2025 d12, d20, d26 and 2026 d12, d24, each eager (the memory figures: allocated, reserved,
device), plus d20 (2025) and d24 (2026) compiled (the speed the plans assume: torch.compile). Each probe
runs the plan's device batch and the next power of two (an OOM there is an answer, not a failure) for two
measured steps after two warm-up steps, under its own timeout, so the whole run stays within the budget.
Every probe's points go into the results' own calibration file, never the user's.
No GPU was lent to the session that wrote this: the GPU results await a run (benchmarks/results/README.md).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

# (arch, depth, compiled, timeout seconds): eager for memory, compiled only where the plans' speed is checked
GPU_CASES = [
    ("nanochat-2025", 12, False, 45), ("nanochat-2025", 20, False, 50), ("nanochat-2025", 26, False, 60),
    ("nanochat-2025", 20, True, 90), ("nanochat-2026", 12, False, 45), ("nanochat-2026", 24, False, 60),
    ("nanochat-2026", 24, True, 100),
]
# cases probed at a fixed device batch (and the next power of two) instead of the plan's: the compiled d20 at
# FIELD L5's batch 8 (1x RTX 5090, 28.9 GiB allocated, 5.6 GiB above the model); batches 8 and 16 separate the
# per-token slope from a batch-independent term (the slope also tells a 2- from a 4-byte loss path: 0.25 GiB
# per sequence apart at V = 65,536), and an H100 shows whether the gap is the 5090's own
FIXED_BATCH = {("nanochat-2025", 20, True): 8}
# toy size on a CPU: the same commands, the planner's tiny shape (context 256, vocab 8,192)
TOY_CASES = [("nanochat-2025", 2, False, 120), ("nanochat-2026", 4, False, 120)]
TOY_SHAPE = ["--seq-len", "256", "--vocab-size", "8192", "--device-batch-size", "4", "--total-batch-size", "1024"]


def probe_case(arch: str, depth: int, compiled: bool, timeout: int, gpus: str, device: str, toy: bool,
               calibration: Path) -> dict:
    cmd = [sys.executable, "-m", "chatplan", "probe", "--arch", arch, "--depth", str(depth), "--gpus", gpus,
           "--device", device, "--compile" if compiled else "--no-compile", "--probe-steps", "2",
           "--calibration", str(calibration), "--json"] + (TOY_SHAPE if toy else [])
    if not toy and (arch, depth, compiled) in FIXED_BATCH:
        cmd += ["--batch", str(FIXED_BATCH[(arch, depth, compiled)])]
    t0 = time.perf_counter()
    case = {"arch": arch, "depth": depth, "compiled": compiled, "command": " ".join(cmd[1:])}
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {**case, "ok": False, "error": f"timed out after {timeout} s", "seconds": timeout}
    case["seconds"] = round(time.perf_counter() - t0, 1)
    if r.returncode != 0:
        return {**case, "ok": False, "error": (r.stderr.strip().splitlines() or ["?"])[-1]}
    return {**case, "ok": True, "probe": json.loads(r.stdout)}


def summary(results: list[dict]) -> str:
    lines = ["| arch | depth | mode | batch | s/step | tok/s | allocated GiB | reserved GiB | device GiB | RSS GiB |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for c in results:
        mode = "compiled" if c["compiled"] else "eager"
        if not c["ok"]:
            lines.append(f"| {c['arch']} | {c['depth']} | {mode} | - | {c['error']} | | | | | |")
            continue
        for b in c["probe"]["batches"]:
            def f(key: str, spec: str, b=b) -> str:
                return "-" if b[key] is None else format(b[key], spec)
            if not b["fit"]:
                lines.append(f"| {c['arch']} | {c['depth']} | {mode} | {b['device_batch_size']} | OOM | | | | | |")
                continue
            lines.append(f"| {c['arch']} | {c['depth']} | {mode} | {b['device_batch_size']} | "
                         f"{f('step_seconds', '.4f')} | {f('tokens_per_second', ',.0f')} | "
                         f"{f('max_allocated_gib', '.2f')} | {f('max_reserved_gib', '.2f')} | "
                         f"{f('device_used_gib', '.2f')} | {f('peak_rss_gib', '.3f')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpus", default=None, help="the GPU as the catalog names it, one of it (default 1xH100; "
                                                 "1xCPU on a CPU)")
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    ap.add_argument("--toy", action="store_true", help="toy shapes (the CPU check of this script)")
    ap.add_argument("--out", type=Path, default=None, help="results directory (default benchmarks/results)")
    args = ap.parse_args(argv)
    gpus = args.gpus or ("1xCPU" if args.device == "cpu" else "1xH100")
    out = args.out or RESULTS
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    calibration = out / f"gpu_probe_{stamp}_calibration.json"
    cases = TOY_CASES if args.toy else GPU_CASES
    results = []
    for arch, depth, compiled, timeout in cases:
        print(f"gpu_probe: {arch} d{depth} {'compiled' if compiled else 'eager'} on {gpus} ...", flush=True)
        results.append(probe_case(arch, depth, compiled, timeout, gpus, args.device, args.toy, calibration))
        print(f"gpu_probe:   {'ok' if results[-1]['ok'] else results[-1]['error']} ({results[-1]['seconds']} s)",
              flush=True)
    doc = {"when": stamp, "gpus": gpus, "device": args.device, "toy": args.toy, "cases": results,
           "calibration_file": calibration.name}
    (out / f"gpu_probe_{stamp}.json").write_text(json.dumps(doc, indent=1))
    (out / f"gpu_probe_{stamp}.md").write_text(f"# gpu_probe {stamp} on {gpus} ({args.device}"
                                               f"{', toy shapes' if args.toy else ''})\n\n{summary(results)}\n")
    print(summary(results))
    return 0 if all(c["ok"] for c in results) else 1


if __name__ == "__main__":
    sys.exit(main())
