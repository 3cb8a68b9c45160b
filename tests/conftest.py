"""Shared test setup. Under CI=true a missing dependency fails the run instead of skipping tests."""

import importlib.util
import os

import pytest

REQUIRED = ["torch", "typer", "rich", "tabulate", "httpx", "pyarrow", "tiktoken", "rustbpe", "hypothesis",
            "pytest_benchmark"]


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("CI") == "true":
        missing = [m for m in REQUIRED if importlib.util.find_spec(m) is None]
        if missing:
            raise pytest.UsageError(f"CI=true but these dependencies are missing: {', '.join(missing)}")
