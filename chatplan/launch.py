"""The `chatplan` console script: replay a kept answer when one is valid (chatplan/memo.py), else run the
command line (chatplan/cli.py) and keep what it answered. Imports nothing heavy before it knows which."""

from __future__ import annotations

import contextlib
import os
import sys

from chatplan import memo


def reader_gone() -> int:
    """The reader of our output went away (`chatplan ... | head`): not a failure of ours, and never exit 1
    ("limit exceeded" for `check`). Later writes and the interpreter's final flush go to /dev/null."""
    with contextlib.suppress(OSError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def run(args: list[str]) -> int:
    try:
        code = memo.replay(args)
    except BrokenPipeError:
        return reader_gone()
    if code is not None:
        return code
    from chatplan.cli import main

    if not memo.eligible(args):
        return main(args)
    out, err = memo.Recorder(sys.stdout), memo.Recorder(sys.stderr)
    sys.stdout, sys.stderr = out, err
    try:
        code = main(args)
    finally:
        sys.stdout, sys.stderr = out.stream, err.stream
    if not (out.broken or err.broken):
        memo.store(args, code, out.text(), err.text())
    return code


def entry() -> None:
    """Console-script entry point."""
    sys.exit(run(sys.argv[1:]))
