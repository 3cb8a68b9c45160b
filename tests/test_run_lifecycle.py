"""`chatplan run` from start to stop: a signal stops the whole launched tree (nothing left training) and
names the checkpoint to resume from; a run directory holds one run; a finished run stays finished; a
stale checkpoint is one clear line; SLURM gets a script; a planner-only install says what to install."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chatplan.cli import main
from chatplan.runner.launch import trainer_processes


def chatplan(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "chatplan", *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=kw.pop("timeout", 300), **kw)


def steps_logged(out: Path) -> int:
    try:
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    except (OSError, ValueError):
        return 0
    return sum(r.get("type") == "step" for r in rows)


@pytest.mark.slow
@pytest.mark.parametrize("signum,code", [(signal.SIGTERM, 143)])
def test_a_signal_stops_every_trainer_and_names_the_checkpoint(tmp_path, signum, code):
    out = tmp_path / "run"
    args = ["run", "--tier", "tiny", "--device", "cpu", "--nproc", "2", "--steps", "400", "--yes",
            "--out", str(out), "--calibration", "none"]
    parent = subprocess.Popen([sys.executable, "-m", "chatplan", *args], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 240
    while steps_logged(out) < 3 and time.monotonic() < deadline and parent.poll() is None:
        time.sleep(0.5)
    assert parent.poll() is None and steps_logged(out) >= 3, "training never started"
    plan_argv = ["--plan", str(out / "plan.json")]
    assert trainer_processes(plan_argv), "no trainer process while training"
    parent.send_signal(signum)
    stdout, stderr = parent.communicate(timeout=120)
    assert parent.returncode == code, stderr[-2000:]
    lines = [line for line in stderr.splitlines() if line.startswith("chatplan:")]
    assert len(lines) == 1 and "stopped by SIGTERM" in lines[0] and "--resume" in lines[0], stderr[-2000:]
    assert "Traceback" not in stderr
    assert trainer_processes(plan_argv) == []  # nothing left training
    checkpoints = sorted((out / "checkpoints").glob("step_*/MANIFEST.json"))
    assert checkpoints and str(checkpoints[-1].parent) in lines[0]
    assert (out / "train.log").is_file()  # the trainers' full stderr is kept in the run directory

    # the same directory without --resume is another run: refused, naming both ways out
    again = chatplan(*args)
    assert again.returncode == 2 and "--resume" in again.stderr and "fresh --out" in again.stderr
    # a plan shorter than the checkpoint is a clear line, not a torchrun traceback
    stale = chatplan(*[a if a != "400" else "2" for a in args], "--resume")
    assert stale.returncode == 2 and "past this plan's 2 steps" in stale.stderr
    assert len(stale.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_a_finished_run_resumed_says_so_and_keeps_its_report(tmp_path):
    out = tmp_path / "run"
    args = ["run", "--tier", "tiny", "--device", "cpu", "--nproc", "1", "--steps", "3", "--yes", "--out", str(out),
            "--calibration", "none"]
    first = chatplan(*args)
    assert first.returncode == 0, first.stderr[-2000:]
    report = (out / "report.json").read_bytes()
    again = chatplan(*args, "--resume")
    assert again.returncode == 0 and "is finished (step 3 of 3)" in again.stdout
    assert (out / "report.json").read_bytes() == report


def test_save_every_defaults_to_about_fifteen_minutes(tmp_path, capsys):
    assert main(["run", "--tier", "300", "--dry-run", "--out", str(tmp_path / "r"), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    plan = json.loads((tmp_path / "r" / "plan.json").read_text())
    every = doc["save_every"]
    assert every * plan["predictions"]["step_seconds"] == pytest.approx(900, rel=0.01)
    assert all(f"--save-every {every}" in c for c in doc["commands"])
    assert main(["run", "--tier", "300", "--dry-run", "--out", str(tmp_path / "s"), "--save-every", "50",
                 "--json"]) == 0
    assert "--save-every 50" in json.loads(capsys.readouterr().out)["commands"][0]


def test_slurm_script_for_a_two_node_fleet(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["run", "--tier", "1000", "--gpus", "16xH100", "--launcher", "slurm", "--dry-run",
                 "--out", str(out)]) == 0
    script = (out / "chatplan.sbatch").read_text().splitlines()
    directives = dict(line.removeprefix("#SBATCH --").split("=", 1) for line in script if line.startswith("#SBATCH"))
    assert directives["nodes"] == "2" and directives["gpus-per-node"] == "8" and directives["ntasks-per-node"] == "1"
    assert int(directives["time"]) > 0
    body = " ".join(script)
    assert "srun" in body and "torch.distributed.run" in body and "--nnodes 2 --nproc-per-node 8" in body
    assert '--rdzv-backend c10d --rdzv-endpoint "$head:29500"' in body and "scontrol show hostnames" in body
    assert f"--plan {out / 'plan.json'}" in body and f"--out {out}" in body
    # without --dry-run it submits with sbatch (a stand-in on PATH here)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text("#!/bin/sh\necho Submitted batch job 42\n")
    (bin_dir / "sbatch").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    r = chatplan("run", "--tier", "tiny", "--device", "cpu", "--gpus", "2xCPU", "--gpus-per-node", "1",
                 "--launcher", "slurm", "--yes", "--out", str(tmp_path / "s"), env=env)
    assert r.returncode == 0 and "Submitted batch job 42" in r.stdout, r.stderr[-1500:]
    cpu_script = (tmp_path / "s" / "chatplan.sbatch").read_text()
    assert "--nodes=2" in cpu_script and "--gpus-per-node" not in cpu_script.split("srun")[0]
    assert json.loads((tmp_path / "s" / "plan.json").read_text())["run"]["ranks_sha256"]  # prepared, then bound


def test_planner_only_install_says_what_to_install(monkeypatch, capsys, tmp_path):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    assert main(["run", "--tier", "tiny", "--yes", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "pip install 'chatplan[train]'" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()  # failed before building anything
