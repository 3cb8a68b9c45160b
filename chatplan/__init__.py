"""chatplan: capacity planner for nanochat-style GPT models.

    >>> import chatplan
    >>> p = chatplan.plan(depth=32, gpus="8xH100")
    >>> p.params.total, p.horizon.steps, p.parallelism.device_batch_size
    (1879048192, 71680, 8)

The planner is pure Python: importing it never imports torch, rich, pyarrow or httpx. The public names
are imported on first use, so `import chatplan.<module>` (the command line's first step) costs only that
module: a replayed `chatplan estimate --json` (chatplan/memo.py) never loads the planner at all.
"""

from __future__ import annotations

import sys
import types

# public name -> the module that defines it
_PUBLIC = {
    "plan": "chatplan.plan",
    "Plan": "chatplan.plan",
    "PlanRequest": "chatplan.request",
    "TIERS": "chatplan.request",
    "ChatplanError": "chatplan.errors",
    "InvalidInput": "chatplan.errors",
    "RequirementFailed": "chatplan.errors",
    "RuntimeFailure": "chatplan.errors",
    "__version__": "chatplan.version",
}
__all__ = ["plan", "Plan", "PlanRequest", "TIERS", "ChatplanError", "InvalidInput", "RequirementFailed",
           "RuntimeFailure", "__version__"]

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~3 ms at start-up)
if TYPE_CHECKING:
    from chatplan.errors import ChatplanError, InvalidInput, RequirementFailed, RuntimeFailure
    from chatplan.plan import Plan, plan
    from chatplan.request import TIERS, PlanRequest
    from chatplan.version import __version__


class _Package(types.ModuleType):
    """The package module, with its public names loaded on first use.

    One name is also a submodule: `chatplan.plan` is the function, and the module chatplan/plan.py. Importing a
    submodule binds it on its package, so that binding is turned into the function the module defines."""

    def __getattr__(self, name: str):
        if name not in _PUBLIC:
            raise AttributeError(f"module 'chatplan' has no attribute {name!r}")
        import importlib

        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        setattr(self, name, value)
        return value

    def __setattr__(self, name: str, value) -> None:
        if isinstance(value, types.ModuleType) and _PUBLIC.get(name) == value.__name__:
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
