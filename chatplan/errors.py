"""Errors are values until the CLI edge, where they become one line on stderr and an exit code.

Exit codes, one table for every command (also in the README):
  0  ok (also when the reader of our output went away: `chatplan ... | head`)
  1  valid input, but the plan fails a requirement (budget exceeded, nothing fits, --strict)
  2  invalid input (parse or semantic: invalid depth, unknown GPU, non-dividing batch, bad URL)
  3  runtime failure (download, training, refused checkpoint)
  130 interrupted
"""

from __future__ import annotations

import contextlib
import os
import sys

EXIT_OK = 0
EXIT_REQUIREMENT = 1
EXIT_INVALID = 2
EXIT_RUNTIME = 3
EXIT_INTERRUPTED = 130


def reader_gone() -> int:
    """The reader of our output went away (`chatplan ... | head`): not a failure of ours, and never exit 1
    ("limit exceeded" for `check`). Later writes and the interpreter's final flush go to /dev/null."""
    with contextlib.suppress(OSError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return EXIT_OK


class ChatplanError(Exception):
    """Base class: carries the one-line message and the exit code the CLI should use."""

    exit_code = EXIT_INVALID

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class InvalidInput(ChatplanError):
    """The user asked for something that cannot exist (exit 2)."""

    exit_code = EXIT_INVALID


class RequirementFailed(ChatplanError):
    """The input is valid but the plan fails a requirement: nothing fits, over budget (exit 1)."""

    exit_code = EXIT_REQUIREMENT


class RuntimeFailure(ChatplanError):
    """Something failed while doing the work: a download, a training run, a checkpoint (exit 3)."""

    exit_code = EXIT_RUNTIME


class AlreadyReported(ChatplanError):
    """A failure whose lines the command has printed itself (e.g. one per failed check): the CLI
    edge only sets the exit code."""
