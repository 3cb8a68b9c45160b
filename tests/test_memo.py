"""The memo of `chatplan estimate --json` (chatplan/memo.py): a replay is the answer a fresh run gives, it costs no
planner import, and anything the answer depends on makes it a miss."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys

import pytest

from chatplan import memo
from chatplan.calibration import CalibrationPoint, record_point

ARGS = ["estimate", "--depth", "20", "--gpus", "8xH100", "--json"]
# what the replaying process must not import: the planner, the command line, the parser
HEAVY = ("chatplan.plan", "chatplan.cli", "chatplan.contract", "typer", "click")
PROBE = ("import sys\nfrom chatplan.launch import run\ncode = run(sys.argv[1:])\n"
         "sys.stderr.write('\\nMODULES ' + ' '.join(sorted(sys.modules)) + '\\n')\nsys.exit(code)\n")


def chatplan(*args: str, env: dict | None = None, cwd=None) -> tuple[int, str, str, set[str]]:
    """(exit code, stdout, stderr without the module list, the modules the process had loaded)."""
    r = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=120,
                       env={**os.environ, **(env or {})}, cwd=cwd)
    err, _, modules = r.stderr.rpartition("\nMODULES ")
    return r.returncode, r.stdout, err, set(modules.split())


def entries(tmp_path) -> list:
    return sorted((tmp_path / "memo").glob("*.memo"))


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CHATPLAN_CACHE_DIR", str(tmp_path))
    return tmp_path


def test_replay_is_the_fresh_answer_and_imports_no_planner(cache):
    code0, fresh, err0, _ = chatplan(*ARGS, env={memo.DISABLE_ENV: "1"})
    assert code0 == 0 and not entries(cache)  # off: nothing kept
    code1, first, err1, loaded1 = chatplan(*ARGS)
    assert code1 == 0 and first == fresh and err1 == err0 and len(entries(cache)) == 1
    assert "chatplan.plan" in loaded1  # the first answer planned
    code2, replayed, err2, loaded2 = chatplan(*ARGS)
    assert (code2, replayed, err2) == (0, fresh, err0)
    assert not loaded2 & set(HEAVY), sorted(loaded2 & set(HEAVY))
    assert json.loads(replayed)["parallelism"]["device_batch_size"] == 32


def test_a_new_calibration_is_a_miss(cache, tmp_path, monkeypatch):
    cal = tmp_path / "calibration.json"
    monkeypatch.setenv("CHATPLAN_CALIBRATION", str(cal))  # absent: the default-location rule of an empty file
    _, before, _, _ = chatplan(*ARGS)
    record_point(cal, CalibrationPoint(gpu="H100-SXM", device_type="cuda", world_size=8, depth=20,
                                       device_batch_size=32, seq_len=2048, mfu=0.3, chatplan_version="test",
                                       vocab_size=65536))
    _, after, _, loaded = chatplan(*ARGS)
    assert "chatplan.plan" in loaded  # planned again, not replayed
    assert json.loads(after)["time"]["mfu"] == pytest.approx(0.3) != json.loads(before)["time"]["mfu"]


def test_named_files_variables_and_the_directory_are_in_the_key(cache, tmp_path, monkeypatch):
    catalog = tmp_path / "gpus.json"
    catalog.write_text('{"gpus": []}')
    args = [*ARGS, "--gpu-catalog", str(catalog)]
    k = memo.key(args)
    assert memo.key(args) == k  # stable
    catalog.write_text('{"gpus": [] }')
    assert memo.key(args) != k  # an input file changed
    k = memo.key(args)
    monkeypatch.setenv("CHATPLAN_SOMETHING", "1")
    assert memo.key(args) != k  # the environment chatplan reads
    k = memo.key(args)
    monkeypatch.chdir(tmp_path)
    assert memo.key(args) != k  # relative names mean other files elsewhere
    tokenizer = tmp_path / "tok"
    tokenizer.mkdir()
    targs = [*ARGS, "--tokenizer", str(tokenizer)]
    k = memo.key(targs)
    (tokenizer / "eval.json").write_text("{}")
    assert memo.key(targs) != k  # a directory argument: its entries


def test_an_edited_package_is_a_miss(tmp_path, monkeypatch):
    package = tmp_path / "chatplan"
    package.mkdir()
    (package / "memo.py").write_text("")
    (package / "gpus.json").write_text("{}")
    monkeypatch.setattr(memo, "__file__", str(package / "memo.py"))
    k = memo.key(ARGS)
    (package / "gpus.json").write_text('{"x": 1}')
    assert memo.key(ARGS) != k


def test_side_effects_and_failures_are_never_kept(cache, tmp_path):
    out = tmp_path / "plan.json"
    for _ in range(2):  # the second run must write the file again, not replay the first
        code, stdout, _, _ = chatplan(*ARGS, "--save-plan", str(out))
        assert code == 0 and out.is_file() and json.loads(out.read_text()) == json.loads(stdout)
        out.unlink()
    code, _, err, _ = chatplan("estimate", "--depth", "0", "--json")
    assert code == 2 and "depth" in err
    assert not entries(cache)
    assert not memo.eligible(["estimate", "--depth", "20"])  # tables depend on the terminal: not kept
    assert not memo.eligible([*ARGS, "--help"]) and not memo.eligible([*ARGS, "--save-plan=x.json"])


def test_an_answer_cut_short_by_its_reader_is_not_kept(cache):
    """`| true` exits before chatplan writes: the write fails (broken pipe), the command stops there (exit 0,
    as the README says) and what it wrote so far must not become the answer."""
    cmd = shlex.join([sys.executable, "-c", PROBE, *ARGS]) + " | true"
    r = subprocess.run(["bash", "-c", f"{cmd}; echo ${{PIPESTATUS[0]}}"], capture_output=True, text=True, timeout=120)
    assert r.stdout.strip() == "0" and "Traceback" not in r.stderr, r.stderr  # it ran, and exited 0
    assert not entries(cache)
    assert chatplan(*ARGS)[0] == 0 and len(entries(cache)) == 1  # a whole answer is kept


def test_a_damaged_entry_is_a_miss(cache):
    _, fresh, _, _ = chatplan(*ARGS)
    (entry,) = entries(cache)
    entry.write_bytes(b"\x00not a memo")
    code, again, _, loaded = chatplan(*ARGS)
    assert code == 0 and again == fresh and "chatplan.plan" in loaded
    assert memo.replay(memo.key(ARGS)) == 0  # and it was kept again


def test_entries_are_bounded(cache):
    for depth in range(2, 2 + memo.MAX_ENTRIES + 6):
        memo.store(memo.key(["estimate", "--depth", str(depth), "--json"]), 0, f"{depth}\n", "")
    assert len(entries(cache)) == memo.MAX_ENTRIES


def test_every_file_option_of_estimate_is_an_input_or_a_side_effect():
    """A new option that writes a file must join memo.SIDE_EFFECT_OPTIONS, or its effect is skipped on replay."""
    import click
    import typer

    from chatplan.cli import app, register

    register(["estimate"])
    command = typer.main.get_command(app).commands["estimate"]
    inputs = {"--gpu-catalog", "--tokenizer"}  # read, and in the key through their names (memo.key)
    file_options = {o for p in command.params if isinstance(p.type, click.Path) for o in p.opts}
    assert file_options == inputs | set(memo.SIDE_EFFECT_OPTIONS)
