"""chatplan's version: the one place it is written (pyproject.toml and the package read it)."""

__version__ = "0.2.0"
