"""Shared test setup for tests/ and benchmarks/ (both are collected by `pytest`). Under CI=true a missing
dependency fails the run instead of skipping tests."""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

import pytest

# Hermetic runs: no test reads or writes the user's real home, cache or config. A test run once stored
# a 4-thread CPU peak of 7.3 GFLOP/s in the real ~/.cache/chatplan/cpu_peak.json, and every later
# 4-process CPU run of that user reported MFU 1339 %. Set at import, before any test module imports
# chatplan, in os.environ, so every subprocess a test starts (trainer, torchrun, the CLI) inherits it.
REAL_HOME = Path(os.path.expanduser("~")).resolve()
_ROOT = Path(tempfile.mkdtemp(prefix="chatplan-test-home-"))
ISOLATED = {
    "HOME": _ROOT / "home",
    "XDG_CACHE_HOME": _ROOT / "home" / ".cache",
    "XDG_CONFIG_HOME": _ROOT / "home" / ".config",
    "XDG_DATA_HOME": _ROOT / "home" / ".local" / "share",
    "CHATPLAN_HOME": _ROOT / "chatplan",
    "CHATPLAN_CACHE_DIR": _ROOT / "cache",
}
for _name, _path in ISOLATED.items():
    _path.mkdir(parents=True, exist_ok=True)
    os.environ[_name] = str(_path)
os.environ["CHATPLAN_CALIBRATION"] = str(_ROOT / "config" / "calibration.json")
os.environ.pop("CHATPLAN_GPU_CATALOG", None)  # a user's own GPU figures would change every prediction

REQUIRED = ["torch", "typer", "rich", "tabulate", "httpx", "pyarrow", "tiktoken", "rustbpe", "hypothesis",
            "pytest_benchmark"]


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("CI") == "true":
        missing = [m for m in REQUIRED if importlib.util.find_spec(m) is None]
        if missing:
            raise pytest.UsageError(f"CI=true but these dependencies are missing: {', '.join(missing)}")


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(_ROOT, ignore_errors=True)


@pytest.fixture(autouse=True)
def _hermetic_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts with the isolated locations, even if an earlier test changed os.environ."""
    for name, path in ISOLATED.items():
        monkeypatch.setenv(name, str(path))
    monkeypatch.setenv("CHATPLAN_CALIBRATION", str(_ROOT / "config" / "calibration.json"))
    monkeypatch.delenv("CHATPLAN_GPU_CATALOG", raising=False)


@pytest.fixture
def real_home() -> Path:
    """The user's home as it was before the suite moved HOME (for tests that check it is untouched)."""
    return REAL_HOME


@pytest.fixture
def isolated() -> dict[str, Path]:
    return dict(ISOLATED)
