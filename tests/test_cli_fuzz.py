"""A seeded fuzzer over every command's options, in process: no traceback, exit codes only 0/1/2/3/130, and
every error is one line that names the value it refuses (or the option it concerns). `run` only with
--dry-run; downloads only against a local server that refuses everything."""

from __future__ import annotations

import random
import re

import pytest
import typer

from chatplan.cli import app, main, register

register([])
GROUP = typer.main.get_command(app)

VALUES = ["0", "-1", "1", "2", "7", "12", "20", "21", "64", "1e9", "nan", "inf", "-inf", "0.5", "1.5", "abc", "",
          "8xH100", "6xH100", "1xCPU", "2xA100-40GB", "xx", "SSSL", "L", "SX", "$300", "tiny", "speedrun",
          "nanochat-2026", "nanochat-2025", "gpt", "16xH100", "1xRTX5090", "4096", "65536", "100000", "-0.0",
          "1e400", "3.3", "none"]
SEEDS = 12
PER_COMMAND = 36
ALLOWED = {0, 1, 2, 3, 130}


def commands() -> dict[str, object]:
    out = {}
    for name, cmd in GROUP.commands.items():
        if hasattr(cmd, "commands"):
            out.update({f"{name} {sub}": c for sub, c in cmd.commands.items()})
        else:
            out[name] = cmd
    return out


COMMANDS = commands()


def invocation(rng: random.Random, name: str, cmd, tmp) -> list[str]:
    args = name.split()
    options = [p for p in cmd.params if p.opts and p.opts[0].startswith("--")]
    for p in rng.sample(options, k=min(len(options), rng.randint(1, 4))):
        flag = p.opts[0]
        if getattr(p, "is_flag", False):
            args.append(flag if not p.secondary_opts or rng.random() < 0.5 else p.secondary_opts[0])
        else:
            args += [flag, rng.choice(VALUES)]
    if name == "run":
        args += ["--dry-run", "--out", str(tmp / f"run{rng.randrange(10**6)}")]
    if name == "probe":  # a real probe trains: its own tests (tests/test_probe.py) run it
        args += ["--dry-run"]
    if name == "data download":
        args += ["--base-url", "http://127.0.0.1:9", "--retries", "0", "--timeout", "0.2", "--dir", str(tmp / "d"),
                 "--no-progress"]
    if name.startswith("tokenizer"):
        args += ["--data", str(tmp / "no-such-dir")]
    if name == "calibrate" and "--from" not in args:
        args += ["--from", str(tmp / "no-run")]
    return args


def cases():
    for seed in range(SEEDS):
        rng = random.Random(seed)
        for name in COMMANDS:
            if name == "data sample":  # writes a corpus: covered by its own tests
                continue
            for _ in range(max(1, PER_COMMAND // SEEDS)):
                yield seed, name, rng


def test_fuzz_every_command(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    n = 0
    for _seed, name, rng in cases():
        args = invocation(rng, name, COMMANDS[name], tmp_path)
        code = main(args)
        out = capsys.readouterr()
        n += 1
        assert code in ALLOWED, (args, code, out.err[-500:])
        assert "Traceback" not in out.err and "internal error" not in out.err, (args, out.err[-800:])
        errors = [line for line in out.err.splitlines() if line.startswith("chatplan: error:")]
        if code == 2:
            assert len(errors) == 1, (args, out.err)
            named = [a for a in args[len(name.split()):] if (a and a in errors[0]) or (a == "" and "''" in errors[0])]
            # the user's value, the option, or (for a default that is missing) the path it looked at
            mentioned = named or re.findall(r"--[a-z-]+", errors[0]) or re.findall(r" /\S+", errors[0])
            assert mentioned, (args, errors[0])
    assert n >= 300


@pytest.mark.parametrize("args", [["compare", "--depth", "21"], ["compare", "--depth", "-1"],
                                  ["compare", "--depth", "20", "--mfu", "nan"],
                                  ["compare", "--depth", "20", "--price", "-5"],
                                  ["estimate", "--depth", "20", "--budget", "inf"],
                                  ["tokenizer", "train", "--max-chars", "inf", "--data", "sample"]])
def test_refused_with_exit_2_not_rows_or_internal_errors(args, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("chatplan: error:")
