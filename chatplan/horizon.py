"""Training horizon (SPEC §4, SPEC-2026 §5): steps, tokens and total FLOPs.

Generic: the architecture says which parameter count a tokens:params ratio multiplies (all of them
in late 2025, the scaling parameters since 2026) and what the total batch is; the precedence and
the rounding are nanochat's in both generations.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import lru_cache

from chatplan.errors import InvalidInput

MAX_STEPS = 10**12  # a sanity bound: far beyond any real run, small enough for exact float arithmetic


@dataclass(frozen=True)
class Horizon:
    steps: int
    total_batch_size: int  # tokens per optimizer step, all ranks together
    tokens: int
    total_flops: float
    tokens_per_param: float  # tokens per parameter the ratio counts (scaling parameters)
    source: str  # which input decided the steps: "steps" | "target_flops" | "data_ratio"

    def to_dict(self) -> dict:
        return asdict(self)


@lru_cache(maxsize=1024)  # pure: budget searches and fleet comparisons ask for the same horizons
def training_horizon(
    num_params: int,
    flops_per_token: int,
    total_batch_size: int,
    steps: int | None = None,
    target_flops: float | None = None,
    data_ratio: float = 20.0,
) -> Horizon:
    """Precedence as nanochat's base_train: explicit steps, else a FLOPs target, else a data ratio."""
    if total_batch_size < 1:
        raise InvalidInput(f"total batch size must be a positive number of tokens, got {total_batch_size}")
    if steps is not None:
        if steps < 1:
            raise InvalidInput(f"steps must be a positive integer, got {steps}")
        source = "steps"
    elif target_flops is not None:
        if not (target_flops > 0 and math.isfinite(target_flops)):
            raise InvalidInput(f"target FLOPs must be a positive finite number, got {target_flops}")
        raw = target_flops / (flops_per_token * total_batch_size)
        source = "target_flops"
    else:
        if not (data_ratio > 0 and math.isfinite(data_ratio)):
            raise InvalidInput(f"data ratio must be a positive finite number, got {data_ratio}")
        raw = data_ratio * num_params / total_batch_size
        source = "data_ratio"
    if source != "steps":
        if not raw <= MAX_STEPS:  # also catches an overflow to inf
            raise InvalidInput(f"the horizon comes to {raw:.3g} steps, above the supported {MAX_STEPS:.0e}: lower "
                               "the FLOPs target or data ratio")
        # nanochat: round() for a FLOPs target; int(ratio * N) // batch for a ratio (exact in integers
        # whenever the ratio is a whole number, as the defaults 20 and 12 are)
        if source == "target_flops":
            steps = round(raw)
        elif float(data_ratio).is_integer():
            steps = int(data_ratio) * num_params // total_batch_size
        else:
            steps = int(data_ratio * num_params) // total_batch_size
    if steps < 1:
        raise InvalidInput(f"the horizon comes to {steps} steps: raise the FLOPs target or data ratio")
    if steps > MAX_STEPS:
        raise InvalidInput(f"--steps {steps:,} is above the supported {MAX_STEPS:,}")
    tokens = steps * total_batch_size
    return Horizon(
        steps=steps,
        total_batch_size=total_batch_size,
        tokens=tokens,
        total_flops=float(flops_per_token) * tokens,
        tokens_per_param=tokens / num_params,
        source=source,
    )
