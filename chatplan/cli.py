"""The `chatplan` command line: the Typer app, lazy registration of each command, and the error edge.

Each command lives in its own small module under chatplan/commands/ (the planner computes,
chatplan/render.py prints); a module is imported only when its command runs, or for the top-level
help, so `chatplan estimate --json` does not pay for the downloader's or the runner's imports.
Every error reaches the user as one line on stderr and an exit code (see chatplan.errors).
"""

import os
import sys

import typer

from chatplan.errors import (
    EXIT_INTERRUPTED,
    EXIT_INVALID,
    EXIT_REQUIREMENT,
    AlreadyReported,
    ChatplanError,
    reader_gone,
)

CONTEXT = {"help_option_names": ["-h", "--help"]}
app = typer.Typer(
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish, PowerShell
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings=CONTEXT,
    help="Plan, train and check nanochat-style GPT runs: exact sizes, memory fit, time and cost.",
)

def _version(value: bool) -> None:
    if value:
        from chatplan.version import __version__

        sys.stdout.write(f"chatplan {__version__}\n")
        raise typer.Exit(0)


@app.callback()
def _group(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                        help="Print chatplan's version and exit.")) -> None:
    """Plan, train and check nanochat-style GPT runs: exact sizes, memory fit, time and cost."""
    # a callback keeps `chatplan` a group of commands even when only one command is registered


# command name -> (module, function); sub-command groups are Typer apps of their own
COMMANDS = {
    "estimate": ("chatplan.commands.estimate", "estimate"),
    "fit": ("chatplan.commands.fit", "fit"),
    "check": ("chatplan.commands.check", "check"),
    "compare": ("chatplan.commands.compare", "compare"),
    "run": ("chatplan.commands.run", "run"),
    "calibrate": ("chatplan.commands.calibrate", "calibrate"),
    "validate": ("chatplan.commands.validate", "validate"),
    "probe": ("chatplan.commands.probe", "probe"),
}
SUBAPPS = {"data": "chatplan.data.cli", "tokenizer": "chatplan.tokenizer.cli"}
_registered: set[str] = set()


def register(args: list[str]) -> None:
    """Register the command the arguments ask for, or every command for the top-level help."""
    first = next((a for a in args if not a.startswith("-")), None)
    wanted = [first] if first in COMMANDS or first in SUBAPPS else list(COMMANDS) + list(SUBAPPS)
    for name in wanted:
        if name in _registered:
            continue
        if name in COMMANDS:
            module, func = COMMANDS[name]
            app.command(name=name, context_settings=CONTEXT)(getattr(__import__(module, fromlist=[func]), func))
        else:
            sub = __import__(SUBAPPS[name], fromlist=["app"]).app
            sub.info.context_settings = CONTEXT
            app.add_typer(sub, name=name)
        _registered.add(name)


def _bad_value(opts: list[str], args: list[str]) -> str | None:
    """The raw text a user gave for an option (typer's message does not repeat it). An option given
    twice takes its last value, and that is the one the parser checked."""
    found = None
    for i, arg in enumerate(args):
        for opt in opts:
            if arg == opt and i + 1 < len(args):
                found = args[i + 1]
            elif arg.startswith(opt + "="):
                found = arg[len(opt) + 1:]
    return found


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        register(args)
        rv = app(args=args, prog_name="chatplan", standalone_mode=False)
        return rv if isinstance(rv, int) else 0  # without standalone mode, typer.Exit(n) returns n
    except BrokenPipeError:
        return reader_gone()
    except SystemExit:
        # click turns a broken pipe (EPIPE) into sys.exit(1) after wrapping both streams in a
        # PacifyFlushWrapper: undo that, and exit as for any reader that went away
        from click.utils import PacifyFlushWrapper

        if not isinstance(sys.stdout, PacifyFlushWrapper):
            raise
        sys.stdout, sys.stderr = sys.stdout.wrapped, getattr(sys.stderr, "wrapped", sys.stderr)
        return reader_gone()
    except AlreadyReported as e:
        return e.exit_code
    except ChatplanError as e:
        sys.stderr.write(f"chatplan: error: {e}\n")
        return e.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("chatplan: interrupted\n")
        return EXIT_INTERRUPTED
    except typer.Exit as e:
        return e.exit_code
    except typer.Abort:
        sys.stderr.write("chatplan: aborted\n")
        return EXIT_REQUIREMENT
    except Exception as e:  # click-style usage errors from typer's parser; anything else is our bug
        message = getattr(e, "format_message", None)
        if message is None:
            if os.environ.get("CHATPLAN_TRACEBACK"):
                raise
            first = str(e).splitlines()[0] if str(e) else ""
            sys.stderr.write(f"chatplan: internal error: {type(e).__name__}: {first} "
                             "(set CHATPLAN_TRACEBACK=1 for the traceback)\n")
            return 3
        text = " ".join(message().split())
        if not text:  # `chatplan` alone, or a group without a command: the help was printed
            return 0 if not args else getattr(e, "exit_code", EXIT_INVALID)
        param = getattr(e, "param", None)
        value = _bad_value(list(getattr(param, "opts", []) or []), args) if param is not None else None
        if value is not None and repr(value) not in text:
            text += f" (got {value!r})"
        sys.stderr.write(f"chatplan: error: {text}\n")
        return getattr(e, "exit_code", EXIT_INVALID) or EXIT_INVALID
