"""The facts of one model on one world size and precision, computed once and handed down.

plan() asks for them once; the memory model, the time model and the calibration read them. Cached
because plans are often made many at a time (budget searches, fleet comparisons) and the optimizer
ownership walk over every tensor is the slowest part of a plan.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from chatplan.arch.base import Architecture, MemoryTerms, ModelShape, ParamCounts, StepTerms
from chatplan.precision import Precision


@dataclass(frozen=True)
class ModelFacts:
    arch: Architecture
    shape: ModelShape
    world_size: int
    precision: Precision
    counts: ParamCounts
    flops_per_token: int
    memory: MemoryTerms
    step: StepTerms


@lru_cache(maxsize=4096)
def model_facts(arch: Architecture, shape: ModelShape, world_size: int, precision: Precision) -> ModelFacts:
    counts = arch.param_counts(shape)
    return ModelFacts(arch=arch, shape=shape, world_size=world_size, precision=precision, counts=counts,
                      flops_per_token=arch.flops_per_token(shape, counts),
                      memory=arch.memory_terms(shape, world_size, precision),
                      step=arch.step_terms(shape, world_size, precision))
