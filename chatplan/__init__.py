"""chatplan: capacity planner for nanochat-style GPT models.

    >>> import chatplan
    >>> p = chatplan.plan(depth=32, gpus="8xH100")
    >>> p.params.total, p.horizon.steps, p.parallelism.device_batch_size
    (1879048192, 71680, 8)

The planner is pure Python: importing it never imports torch, rich, pyarrow or httpx.
"""

__version__ = "0.2.0"  # the one place the version is written (pyproject.toml reads it)

from chatplan.errors import ChatplanError, InvalidInput, RequirementFailed, RuntimeFailure  # noqa: E402
from chatplan.plan import Plan, plan  # noqa: E402
from chatplan.request import TIERS, PlanRequest  # noqa: E402

__all__ = ["plan", "Plan", "PlanRequest", "TIERS", "ChatplanError", "InvalidInput", "RequirementFailed",
           "RuntimeFailure", "__version__"]
