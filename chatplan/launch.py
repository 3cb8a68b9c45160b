"""The `chatplan` console script: replay a kept answer when one is valid (chatplan/memo.py), else run the
command line (chatplan/cli.py) and keep what it answered. Imports nothing heavy before it knows which."""

from __future__ import annotations

import sys

from chatplan import memo
from chatplan.errors import reader_gone


def run(args: list[str]) -> int:
    k = memo.key(args) if memo.eligible(args) else None  # taken once, before the command reads anything
    if k is not None:
        try:
            code = memo.replay(k)
        except BrokenPipeError:
            return reader_gone()
        if code is not None:
            return code
    from chatplan.cli import main

    if k is None:
        return main(args)
    out, err = memo.Recorder(sys.stdout), memo.Recorder(sys.stderr)
    sys.stdout, sys.stderr = out, err
    try:
        code = main(args)
    finally:
        sys.stdout, sys.stderr = out.stream, err.stream
    if not (out.broken or err.broken):
        memo.store(k, code, out.text(), err.text())
    return code


def entry() -> None:
    """Console-script entry point."""
    sys.exit(run(sys.argv[1:]))
