"""Every option a command's --help lists is honoured: a non-default value changes what the command does
(its output, exit code or the files it writes) or is refused with exit 2. An option a command silently
ignores fails here (as `fit --mfu` did before the redesign). `-h` works like `--help` everywhere, and the
tier name is read the same way by every command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer

from chatplan.cli import app, main, register

register([])
COMMANDS = {name: cmd for name, cmd in typer.main.get_command(app).commands.items() if name in
            ("estimate", "fit", "check", "compare", "run", "calibrate")}

# the arguments each command is run with, and then again with one option changed
BASE = {
    "estimate": ["--depth", "12", "--json"],
    "check": ["--depth", "12", "--json", "--max-cost", "1e6", "--max-hours", "1e6", "--min-headroom-gib", "0"],
    "fit": ["--depth", "12", "--json"],
    "compare": ["--depth", "12", "--json", "--counts", "8", "--gpu-types", "H100"],
    "run": ["--depth", "4", "--gpus", "1xCPU", "--device", "cpu", "--dry-run", "--steps", "5"],
}


def value_for(option: str, tmp: Path) -> list[str]:
    """A non-default setting of `option` (with what it needs to matter)."""
    catalog = tmp / "gpus.json"
    catalog.write_text(json.dumps({"gpus": [{"name": "H100-SXM", "price_per_hour": 9.0, "memory_gib": 60.0},
                                            {"name": "CPU", "price_per_hour": 1.0}]}))
    calibration = tmp / "calibration.json"
    point = {"gpu": "H100-SXM", "device_type": "cuda", "world_size": 8, "depth": 12, "device_batch_size": 32,
             "seq_len": 2048, "mfu": 0.21, "chatplan_version": "test"}
    calibration.write_text(json.dumps({"version": 1, "points": [point]}))
    tokenizer = tmp / "tok"
    tokenizer.mkdir(exist_ok=True)
    (tokenizer / "eval.json").write_text(json.dumps({"chars_per_token": 3.3, "vocab_size": 65536}))
    table = {
        "--arch": ["--arch", "nanochat-2026"], "--depth": ["--depth", "14"], "--tier": ["--tier", "300"],
        "--aspect-ratio": ["--aspect-ratio", "128"], "--head-dim": ["--head-dim", "64"],
        "--kv-heads": ["--kv-heads", "2"],
        "--vocab-size": ["--vocab-size", "32768"], "--seq-len": ["--seq-len", "1024"],
        "--window-pattern": ["--window-pattern", "SSSL"], "--total-batch-size": ["--total-batch-size", "1048576"],
        "--data-ratio": ["--data-ratio", "10"], "--target-flops": ["--target-flops", "1e19"],
        "--steps": ["--steps", "7"],
        "--gpus": ["--gpus", "1xH100"], "--gpus-per-node": ["--gpus-per-node", "4"], "--nodes": ["--nodes", "2"],
        "--device-batch-size": ["--device-batch-size", "8"], "--inter-node-gbps": ["--inter-node-gbps", "100"],
        "--fp8": ["--fp8"], "--compile": ["--no-compile"], "--budget": ["--budget", "100"], "--mfu": ["--mfu", "0.3"],
        "--price": ["--price", "1.5"], "--chars-per-token": ["--chars-per-token", "4"],
        "--chars-per-shard": ["--chars-per-shard", "1e8"], "--eval-every": ["--eval-every", "100"],
        "--eval-tokens": ["--eval-tokens", "1048576"], "--gpu-catalog": ["--gpu-catalog", str(catalog)],
        "--calibration": ["--calibration", str(calibration)], "--tokenizer": ["--tokenizer", str(tokenizer)],
        "--json": [], "--format": ["--format", "markdown"],
        "--save-plan": ["--save-plan", str(tmp.parent / "w" / "saved.json")],
        "--strict": ["--strict", "--device-batch-size", "256"], "--max-cost": ["--max-cost", "1"],
        "--max-hours": ["--max-hours", "0.01"], "--max-gpu-memory-frac": ["--max-gpu-memory-frac", "0.01"],
        "--min-headroom-gib": ["--min-headroom-gib", "79"], "--by": ["--by", "time"],
        "--counts": ["--counts", "16"], "--gpu-types": ["--gpu-types", "A100-80GB"],
        "--device": ["--device", "cuda"], "--nproc": ["--nproc", "2"], "--node-rank": ["--node-rank", "1"],
        "--rdzv-endpoint": ["--rdzv-endpoint", "127.0.0.1:1"], "--out": ["--out", str(tmp / "elsewhere")],
        "--data": ["--data", str(tmp / "shards")], "--yes": ["--yes"], "--dry-run": [], "--resume": ["--resume"],
        "--launcher": ["--launcher", "slurm"], "--save-every": ["--save-every", "3"],
        "--pessimistic": ["--pessimistic"], "--target-core": ["--target-core", "0.2"],
        "--target-bpb": ["--target-bpb", "0.9"],
    }
    return table[option]


# options whose effect needs a different starting point than the command's base
CONTEXT = {
    ("estimate", "--json"): ["--depth", "12"],  # with vs without --json
    ("check", "--json"): ["--depth", "12", "--max-cost", "1e6"],
    ("fit", "--json"): ["--depth", "12"],
    ("compare", "--json"): ["--depth", "12", "--counts", "8", "--gpu-types", "H100"],
    ("estimate", "--format"): ["--depth", "12"],  # --json prints the plan whatever the table format
    ("fit", "--format"): ["--depth", "12"],
    ("compare", "--format"): ["--depth", "12", "--counts", "8", "--gpu-types", "H100"],
    ("estimate", "--inter-node-gbps"): ["--depth", "12", "--json", "--gpus", "16xH100"],
    ("check", "--inter-node-gbps"): ["--depth", "12", "--json", "--gpus", "16xH100", "--max-hours", "1e6"],
    ("compare", "--inter-node-gbps"): ["--depth", "12", "--json", "--counts", "16", "--gpu-types", "H100"],
    ("run", "--inter-node-gbps"): ["--depth", "4", "--gpus", "16xH100", "--rdzv-endpoint", "h:1", "--dry-run"],
    ("run", "--rdzv-endpoint"): ["--depth", "4", "--gpus", "16xH100", "--rdzv-endpoint", "h:2", "--dry-run"],
    ("run", "--node-rank"): ["--depth", "4", "--gpus", "2xCPU", "--gpus-per-node", "1", "--device", "cpu",
                             "--rdzv-endpoint", "h:2", "--dry-run"],
    ("run", "--yes"): ["--tier", "100"],  # without a terminal: refused without --yes, GPU check with it
    ("run", "--dry-run"): ["--tier", "100"],
    ("run", "--gpus-per-node"): ["--depth", "4", "--gpus", "16xH100", "--rdzv-endpoint", "h:1", "--dry-run"],
    ("run", "--data"): ["--depth", "4", "--gpus", "1xCPU", "--device", "cpu", "--dry-run"],
    ("compare", "--max-hours"): ["--depth", "12", "--json", "--counts", "8", "--gpu-types", "H100,A100-80GB"],
    ("compare", "--by"): ["--depth", "12", "--json", "--counts", "8", "--gpu-types", "H100,A100-80GB"],
}


def invoke(args: list[str], capsys, tmp: Path) -> tuple:
    code = main(args)
    out = capsys.readouterr()
    files = {p.name: p.read_text() for p in sorted(tmp.rglob("*.json")) if p.is_file()}
    return code, out.out, out.err, files


def options_of(name: str) -> list[str]:
    return [p.opts[0] for p in COMMANDS[name].params if p.opts[0].startswith("--")]


CASES = [(name, opt) for name in BASE for opt in options_of(name)]


@pytest.mark.parametrize("name,option", CASES, ids=[f"{n} {o}" for n, o in CASES])
def test_every_listed_option_is_honoured(name, option, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    work = tmp_path / "w"
    work.mkdir()
    base = CONTEXT.get((name, option), BASE[name])
    if name == "run" and "--out" not in base:
        base = [*base, "--out", str(work / "run")]
    (tmp_path / "in").mkdir()
    extra = value_for(option, tmp_path / "in")
    if option == "--max-hours" and name == "compare":
        extra = ["--max-hours", "0.5"]
    if option in ("--json", "--dry-run"):
        extra = [option]
    before = invoke([name, *base], capsys, work)
    after = invoke([name, *base, *extra], capsys, work)
    assert after[0] == 2 or after != before, f"{name} {' '.join(extra)} changed nothing"


@pytest.mark.parametrize("argv", [["-h"], ["estimate", "-h"], ["fit", "-h"], ["run", "-h"], ["data", "-h"],
                                  ["data", "download", "-h"], ["tokenizer", "train", "-h"]])
def test_short_help_works_everywhere(argv, capsys):
    assert main(argv) == 0
    assert "Usage" in capsys.readouterr().out


@pytest.mark.parametrize("spelling", ["tiny", "$tiny", " Tiny", "TINY"])
def test_tier_names_are_normalised_once(spelling, tmp_path, capsys):
    assert main(["estimate", "--tier", spelling, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tier"]["name"] == "tiny"
    assert main(["run", "--tier", spelling, "--dry-run", "--device", "cpu", "--out", str(tmp_path / "r")]) == 0
    capsys.readouterr()
    assert main(["fit", "--tier", spelling]) == 2  # fit compares GPUs: refused by name, not misread
    assert "tiny tier runs on the CPU" in capsys.readouterr().err


@pytest.mark.parametrize("spelling", ["300", "$300"])
def test_dollar_tiers_read_alike(spelling, capsys):
    assert main(["estimate", "--tier", spelling, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["model"]["n_layer"] == 26
