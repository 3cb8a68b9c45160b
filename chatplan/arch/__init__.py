"""The nanochat generations chatplan plans and trains, each one value (see base.py).

`--arch` selects one by name; plan.json records its name and the nanochat commit it follows.
"""

from __future__ import annotations

from chatplan.arch.base import Architecture, ModelShape, ParamCounts
from chatplan.arch.nanochat_2025 import NANOCHAT_2025
from chatplan.arch.nanochat_2026 import NANOCHAT_2026
from chatplan.errors import InvalidInput

ARCHITECTURES: dict[str, Architecture] = {a.name: a for a in (NANOCHAT_2025, NANOCHAT_2026)}
DEFAULT_ARCH = NANOCHAT_2025.name


def get_arch(name: str | None = None) -> Architecture:
    arch = ARCHITECTURES.get(DEFAULT_ARCH if name is None else str(name).strip().lower())
    if arch is None:
        raise InvalidInput(f"unknown architecture {name!r}: valid architectures are {', '.join(ARCHITECTURES)}")
    return arch


__all__ = ["ARCHITECTURES", "DEFAULT_ARCH", "Architecture", "ModelShape", "ParamCounts", "get_arch"]
