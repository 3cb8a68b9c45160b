"""A verified memo of `chatplan estimate --json`: the same question, answered again without re-planning.

Why: a plan takes ~50 µs, but a cold `chatplan` process spends ~100 ms importing Typer, Click and the
planner, most of it compiling the generated methods of its dataclasses, which is 5-6x a bare Python start.
Scripts and CI budget checks ask the same question again and again, so the answer (stdout, stderr, exit code)
is kept and replayed while nothing it depends on has changed. That is the key, compared in full before a
replay (the file name is only its checksum):

- the arguments, exactly, and the working directory; the interpreter;
- every file of the installed chatplan package (path, size, modification time), data files included, so an
  upgrade or an edit misses;
- the environment chatplan reads: every CHATPLAN_* variable, HOME and the XDG directories;
- every file the plan may read, present or absent: the calibration file at its resolved location, every
  argument that names an existing file (a catalog, `--calibration FILE`) or directory (`--tokenizer DIR`: its
  entries), and every CHATPLAN_* variable that names a file ($CHATPLAN_GPU_CATALOG).

Only what has no side effect is kept: `estimate ... --json` without `--save-plan` (which writes a file) or a
help or completion flag, that exited 0. CHATPLAN_NO_MEMO=1 turns the memo off. The replay imports only
os, sys, marshal and zlib (no pathlib, json or typer), so it costs little more than the interpreter's start.
"""

from __future__ import annotations

import marshal
import os
import stat
import sys
import zlib

from chatplan.paths import cache_location, calibration_location

FORMAT = 1
MAX_ENTRIES = 64  # the oldest go first
DISABLE_ENV = "CHATPLAN_NO_MEMO"
# options of `estimate` that do something besides printing (tests/test_memo.py checks the command's options)
SIDE_EFFECT_OPTIONS = ("--save-plan",)
NOT_ANSWERS = ("-h", "--help", "--install-completion", "--show-completion")
ENVIRONMENT = ("HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME")


def eligible(args: list[str]) -> bool:
    """`estimate ... --json` with no side effect (see the module docstring)."""
    if os.environ.get(DISABLE_ENV) or not args or args[0] != "estimate" or "--json" not in args:
        return False
    return not any(a in NOT_ANSWERS or a.split("=", 1)[0] in SIDE_EFFECT_OPTIONS for a in args)


def _stat(path: str) -> tuple:
    """What identifies a file's content without reading it; a directory by its entries'; absence too."""
    try:
        st = os.stat(path)
    except OSError:
        return (path, None)
    if stat.S_ISDIR(st.st_mode):
        entries = []
        for e in sorted(os.scandir(path), key=lambda e: e.name):
            s = e.stat()
            entries.append((e.name, s.st_size, s.st_mtime_ns))
        return (path, tuple(entries))
    return (path, st.st_size, st.st_mtime_ns, st.st_ino)


def _package_files() -> tuple:
    root = os.path.dirname(os.path.abspath(__file__))
    found = []
    for top, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if not name.endswith((".pyc", ".memo")):
                st = os.stat(os.path.join(top, name))
                found.append((os.path.relpath(os.path.join(top, name), root), st.st_size, st.st_mtime_ns))
    return tuple(found)


def key(args: list[str]) -> tuple:
    """Everything the answer depends on (the module docstring)."""
    env = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("CHATPLAN_") or k in ENVIRONMENT))
    # arguments may name files or directories (--tokenizer DIR); variables name files (the CHATPLAN_HOME and
    # cache folders are not planner inputs, and the memo itself lives in one)
    values = [a.split("=", 1)[-1] for a in args[1:]]
    named = [v for v in values if v and os.path.exists(v)]
    named += [v for k, v in env if k.startswith("CHATPLAN_") and os.path.isfile(v)]
    inputs = [_stat(os.path.abspath(p)) for p in dict.fromkeys(named)]
    inputs.append(_stat(os.path.abspath(calibration_location())))
    return (FORMAT, sys.executable, sys.version, tuple(args), os.getcwd(), env, tuple(inputs), _package_files())


def _entry_path(k: tuple) -> str:
    text = repr(k).encode()
    name = f"{zlib.crc32(text):08x}{zlib.adler32(text):08x}.memo"
    return os.path.join(cache_location(), "memo", name)


def replay(k: tuple) -> int | None:
    """Write the answer kept under key `k` and return its exit code, or None when there is none to trust."""
    try:
        with open(_entry_path(k), "rb") as f:
            stored_key, code, out, err = marshal.load(f)
    except (OSError, EOFError, ValueError, TypeError):
        return None
    if stored_key != k:
        return None
    sys.stdout.write(out)
    sys.stdout.flush()
    sys.stderr.write(err)
    return code


def store(k: tuple, code: int, out: str, err: str) -> None:
    """Keep an answer under the key taken before the command ran (exit 0 only); a cache that cannot be
    written is skipped, never an error."""
    if code != 0:
        return
    path = _entry_path(k)
    folder = os.path.dirname(path)
    try:
        os.makedirs(folder, exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "wb") as f:
            marshal.dump((k, code, out, err), f)
        os.replace(tmp, path)
        kept = (e for e in os.scandir(folder) if e.name.endswith(".memo"))
        entries = sorted(kept, key=lambda e: e.stat().st_mtime_ns)
        for old in entries[:-MAX_ENTRIES]:
            os.unlink(old.path)
    except OSError:
        pass


class Recorder:
    """Passes writes through to a stream and keeps a copy (what `store` keeps). A write that failed (the
    reader went away: `| head`) marks it broken: the command stopped there, so its answer is incomplete."""

    def __init__(self, stream):
        self.stream = stream
        self.parts: list[str] = []
        self.broken = False

    def write(self, text: str) -> int:
        self.parts.append(text)
        try:
            return self.stream.write(text)
        except OSError:
            self.broken = True
            raise

    def text(self) -> str:
        return "".join(self.parts)

    def __getattr__(self, name: str):
        return getattr(self.stream, name)
