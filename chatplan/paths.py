"""Every default location chatplan reads or writes, resolved from the environment at call time.

One root, `$CHATPLAN_HOME` (default `~/.cache/chatplan`), holds data, the sample corpus, tokenizers and
the CPU-peak cache; the calibration file is configuration (`$CHATPLAN_CALIBRATION`, default
`$XDG_CONFIG_HOME/chatplan/calibration.json`). Nothing is read at import time, so a test (or a user)
can move everything by setting the variables before a call.

The rules are written once, on strings (`*_location`), so the command line's replay path (chatplan/memo.py)
can use them without importing pathlib; the Path-returning functions wrap them.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~3 ms at start-up)
if TYPE_CHECKING:
    from pathlib import Path

HOME_ENV = "CHATPLAN_HOME"
CALIBRATION_ENV = "CHATPLAN_CALIBRATION"
CACHE_ENV = "CHATPLAN_CACHE_DIR"


def _path(location: str | os.PathLike) -> Path:
    from pathlib import Path

    return Path(location)


def home_location() -> str:
    return os.path.expanduser(os.environ.get(HOME_ENV) or "~/.cache/chatplan")


def cache_location() -> str:
    """Measurements worth keeping between runs (the CPU's matmul peak, replayable answers)."""
    return os.environ.get(CACHE_ENV) or home_location()


def calibration_location(given: str | os.PathLike | None = None) -> str:
    """The calibration file: the flag, else $CHATPLAN_CALIBRATION, else the user's config directory."""
    if given is not None:
        return os.fspath(given)
    if os.environ.get(CALIBRATION_ENV):
        return os.environ[CALIBRATION_ENV]
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "chatplan", "calibration.json")


def home() -> Path:
    return _path(home_location())


def data_dir(dataset_dir: str = "base_data") -> Path:
    """Shards of a pretraining corpus (each architecture's dataset names its own folder)."""
    return home() / dataset_dir


def sample_dir() -> Path:
    return home() / "sample"


def tokenizer_dir(name: str = "tokenizer") -> Path:
    return home() / name


def cache_dir() -> Path:
    """Measurements worth keeping between runs (the CPU's matmul peak)."""
    return _path(cache_location())


def calibration_path(given: str | os.PathLike | None = None) -> Path:
    """The calibration file: the flag, else $CHATPLAN_CALIBRATION, else the user's config directory."""
    return _path(calibration_location(given))


def run_dir(depth: int, fleet_label: str, arch: str) -> Path:
    """`runs/d<depth>-<fleet>` in the working directory (the 2026 architecture adds its name)."""
    suffix = "" if arch == "nanochat-2025" else f"-{arch.removeprefix('nanochat-')}"
    return _path("runs") / f"d{depth}-{fleet_label}{suffix}"
