"""Small things users expect: --version, a repeated option reports the value it used, no internal
document references in what the CLI prints, the test helper's CPU catalog really takes its peak, and a CPU
run on real shards never looks for an NVIDIA GPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import chatplan
from chatplan.cli import main
from tests.helpers import cpu_catalog


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"chatplan {chatplan.__version__}"


def test_a_repeated_option_reports_the_value_it_used(capsys):
    assert main(["estimate", "--depth", "20", "--depth", "24", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["model"]["n_layer"] == 24
    assert main(["estimate", "--depth", "20", "--depth", "x"]) == 2
    err = capsys.readouterr().err
    assert "'x'" in err and "'20'" not in err


@pytest.mark.parametrize("args", [["estimate", "--tier", "300"], ["estimate", "--tier", "speedrun"],
                                  ["estimate", "--tier", "tiny"], ["fit", "--depth", "20"],
                                  ["compare", "--depth", "20", "--counts", "8"], ["validate"]])
@pytest.mark.parametrize("fmt", ["plain", "markdown"])
def test_no_internal_references_in_output(args, fmt, capsys):
    main([*args, "--format", fmt])
    out = capsys.readouterr()
    for word in ("SPEC", "DEVELOPERS.md", "FIELD.md row"):
        assert word not in out.out + out.err, word


def test_cpu_catalog_override_takes_effect():
    assert cpu_catalog(1.0).get("CPU").peak_flops == 1.0
    assert chatplan.plan(tier="tiny", catalog=cpu_catalog(3e11)).fleet.gpu.peak_flops == 3e11


@pytest.mark.slow
def test_a_cpu_run_on_real_shards_never_asks_nvidia_smi(tmp_path):
    import shutil

    from chatplan.data import write_sample_corpus

    sample = write_sample_corpus(tmp_path / "sample")
    data = tmp_path / "shards"  # the plan's ten recommended training shards and the validation shard, present
    data.mkdir()
    for i in range(10):
        shutil.copy(sample.train_paths[i % len(sample.train_paths)], data / f"shard_{i:05d}.parquet")
    shutil.copy(sample.validation_path, data / sample.validation_path.name)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    marker = tmp_path / "nvidia-smi-was-called"
    (bin_dir / "nvidia-smi").write_text(f"#!/bin/sh\ntouch {marker}\nexit 1\n")
    (bin_dir / "nvidia-smi").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    r = subprocess.run([sys.executable, "-m", "chatplan", "run", "--depth", "1", "--gpus", "1xCPU", "--device", "cpu",
                        "--vocab-size", "512", "--seq-len", "64", "--device-batch-size", "2", "--total-batch-size",
                        "128", "--steps", "2", "--data", str(data), "--yes", "--out", str(tmp_path / "run"),
                        "--calibration", "none"], capture_output=True, text=True, env=env, timeout=300,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr[-2000:]
    assert not marker.exists()
    assert json.loads((tmp_path / "run" / "plan.json").read_text())["run"]["data_source"] == "dataset"


@pytest.mark.parametrize("args", [
    ["estimate", "--depth", "20", "--json"],  # replayable: the memo's path
    ["estimate", "--depth", "20"],  # a Rich table
    ["check", "--depth", "20", "--max-hours", "1000", "--json"],
    ["fit", "--depth", "26", "--format", "markdown"],
], ids=["json", "table", "check", "fit"])
def test_a_reader_that_goes_away_is_exit_0(args, tmp_path):
    """`chatplan ... | true`: the write fails with a broken pipe. Click turns that into exit 1 ("limit
    exceeded" for check) unless the command line catches it; it must be 0 with nothing on stderr: first
    answered afresh, then (after a whole run kept it) estimate --json replays its answer into the closed pipe."""
    cmd = subprocess.list2cmdline([sys.executable, "-m", "chatplan", *args]) + " | true"
    env = {**os.environ, "CHATPLAN_CACHE_DIR": str(tmp_path)}
    for whole_run_before in (False, True):
        if whole_run_before:
            subprocess.run([sys.executable, "-m", "chatplan", *args], capture_output=True, env=env, timeout=120)
        r = subprocess.run(["bash", "-c", f"{cmd}; echo ${{PIPESTATUS[0]}}"], capture_output=True, text=True,
                           env=env, timeout=120)
        assert (r.stdout.strip(), r.stderr) == ("0", ""), r.stderr
