"""Shared test setup. Under CI=true a missing dependency fails the run instead of skipping tests."""

import importlib.util
import os
import tempfile

import pytest

# Hermetic runs: calibration and cached data never come from (or go to) the user's real directories.
# Set at import, before any test imports chatplan.data (which reads CHATPLAN_HOME once).
_HOME = tempfile.mkdtemp(prefix="chatplan-test-home-")
os.environ["CHATPLAN_HOME"] = _HOME
os.environ["CHATPLAN_CALIBRATION"] = os.path.join(_HOME, "calibration.json")

REQUIRED = ["torch", "typer", "rich", "tabulate", "httpx", "pyarrow", "tiktoken", "rustbpe", "hypothesis",
            "pytest_benchmark"]


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("CI") == "true":
        missing = [m for m in REQUIRED if importlib.util.find_spec(m) is None]
        if missing:
            raise pytest.UsageError(f"CI=true but these dependencies are missing: {', '.join(missing)}")
