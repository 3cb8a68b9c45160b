"""The CLI as a user runs it: a real process, exit codes, one-line errors, outputs."""

import json
import subprocess
import sys

import pytest

import chatplan
from chatplan.calibration import load_calibration


def run(*args, env=None):
    return subprocess.run([sys.executable, "-m", "chatplan", *args], capture_output=True, text=True, env=env,
                          timeout=60)


def test_estimate_json_is_the_plan():
    r = run("estimate", "--depth", "32", "--gpus", "8xH100", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    expected = chatplan.plan(depth=32, gpus="8xH100", calibration=load_calibration(None)).to_dict()
    assert doc == json.loads(json.dumps(expected))
    assert doc["calibration"]["status"] == "uncalibrated"
    assert doc["params"]["total"] == 1_879_048_192 and doc["flops_per_token"] == 12_079_595_520


def test_json_path_imports_no_heavy_modules():
    code = ("import sys, io, contextlib\nfrom chatplan.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n    rc = main(['estimate', '--depth', '32', '--json'])\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'rich', 'pyarrow', 'httpx', 'tabulate', 'tiktoken', 'rustbpe'))\nprint(rc, heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "0 []", out.stderr
    api = ("import sys, chatplan; chatplan.plan(depth=20); print(sorted(m for m in sys.modules "
           "if m.split('.')[0] in ('torch','rich','pyarrow','httpx','tabulate','typer')))")
    out = subprocess.run([sys.executable, "-c", api], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr


def test_save_plan_and_formats(tmp_path):
    path = tmp_path / "sub" / "plan.json"
    r = run("estimate", "--tier", "300", "--format", "markdown", "--save-plan", str(path))
    assert r.returncode == 0, r.stderr
    assert "## Parameters" in r.stdout and "| total" in r.stdout and "1,081,999,360" in r.stdout
    assert "stages chatplan does not run" in r.stdout
    assert json.loads(path.read_text())["model"]["n_layer"] == 26
    plain = run("estimate", "--depth", "20", "--format", "plain")
    assert "3.491758e+09" in plain.stdout and "216" in plain.stdout


def test_rich_table_shows_every_memory_term():
    r = run("estimate", "--depth", "32", "--gpus", "8xH100")
    assert r.returncode == 0
    for label in ("weights", "gradients", "optimizer state", "activations", "logits path", "allocator reserve",
                  "CUDA context", "peak allocated", "peak device", "verdict"):
        assert label in r.stdout
    assert "1.207960e+10" in r.stdout and "4.539628e+20" in r.stdout


BAD = [
    (["--depth", "0"], "0"), (["--depth", "-3"], "-3"), (["--depth", "2.5"], "2.5"), (["--depth", "abc"], "abc"),
    (["--depth", "21"], "21"), (["--depth", "127"], "127"), (["--depth", "20", "--gpus", "0xH100"], "0xH100"),
    (["--depth", "20", "--gpus", "8xFOO"], "FOO"), (["--depth", "20", "--gpus", "8x"], "8x"),
    (["--depth", "20", "--gpus", "H100"], "H100"), (["--depth", "20", "--gpus", "6xH100"], "6 GPUs"),
    (["--depth", "20", "--price", "-1"], "-1"), (["--depth", "20", "--mfu", "0"], "0"),
    (["--depth", "20", "--mfu", "1.5"], "1.5"), (["--tier", "7"], "7"),
    (["--depth", "20", "--device-batch-size", "3"], "3"),
]


@pytest.mark.parametrize("args,value", BAD)
def test_bad_input_is_one_line_exit_2(args, value):
    r = run("estimate", *args, "--json")
    assert r.returncode == 2
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr
    assert value in lines[0]


def test_nothing_fits_is_exit_1_with_ways_out():
    r = run("estimate", "--depth", "64", "--gpus", "1xRTX-3090", "--json")
    assert r.returncode == 1
    assert "more memory" in r.stderr and "shorter context" in r.stderr and "smaller depth" in r.stderr


def test_strict_oom_batch_is_exit_1():
    assert run("estimate", "--depth", "32", "--device-batch-size", "16", "--json").returncode == 0
    r = run("estimate", "--depth", "32", "--device-batch-size", "16", "--json", "--strict")
    assert r.returncode == 1 and "oom" in r.stderr


def test_fit_grid_json():
    r = run("fit", "--depth", "32", "--json")
    doc = json.loads(r.stdout)
    assert "one node of 8" in doc["assumption"]
    h100 = next(f for f in doc["fleets"] if f["gpu"] == "H100-SXM")
    verdicts = {c["device_batch_size"]: c["verdict"] for c in h100["batches"]}
    assert verdicts[8] != "oom" and verdicts[16] == "oom" and len(verdicts) == 9
    one = json.loads(run("fit", "--depth", "20", "--gpus", "1xA100-40GB", "--json").stdout)
    assert [f["gpu"] for f in one["fleets"]] == ["A100-40GB"] and one["fleets"][0]["num_gpus"] == 1
    md = run("fit", "--depth", "26", "--format", "markdown")
    assert md.returncode == 0 and "| H100-SXM" in md.stdout


def test_a_measured_tokenizer_of_another_vocabulary_is_refused(tmp_path):
    tok = tmp_path / "tok"
    tok.mkdir()
    (tok / "eval.json").write_text(json.dumps({"chars_per_token": 3.9, "vocab_size": 8192}))
    r = run("estimate", "--depth", "20", "--tokenizer", str(tok), "--json")
    assert r.returncode == 2 and "8,192 tokens but the plan's vocabulary is 65,536" in r.stderr
    ok = run("estimate", "--depth", "20", "--vocab-size", "8192", "--tokenizer", str(tok), "--json")
    assert ok.returncode == 0 and json.loads(ok.stdout)["data"]["chars_per_token"] == 3.9
