"""chatplan: capacity planner for nanochat-style GPT models.

    >>> import chatplan
    >>> p = chatplan.plan(depth=32, gpus="8xH100")
    >>> p.params.total, p.horizon.steps, p.parallelism.device_batch_size
    (1879048192, 71680, 8)

The planner is pure Python: importing it never imports torch, rich, pyarrow or httpx.
"""

from chatplan.errors import ChatplanError, InvalidInput, RequirementFailed, RuntimeFailure
from chatplan.plan import Plan, plan
from chatplan.request import TIERS, PlanRequest
from chatplan.version import __version__

__all__ = ["plan", "Plan", "PlanRequest", "TIERS", "ChatplanError", "InvalidInput", "RequirementFailed",
           "RuntimeFailure", "__version__"]
