"""Shared helpers for the tests and benchmarks (not part of any package a user installs)."""

from __future__ import annotations

from dataclasses import replace

from chatplan.arch import get_arch
from chatplan.arch.base import ModelShape
from chatplan.facts import ModelFacts, model_facts
from chatplan.precision import Precision, decide_precision

A25 = get_arch("nanochat-2025")
model_shape = A25.model_shape
param_counts = A25.param_counts
param_shapes = A25.param_shapes
flops_per_token = A25.flops_per_token
is_valid_depth = A25.is_valid_depth
nearest_valid_depths = A25.nearest_valid_depths
shape_problem = A25.shape_problem


def precision(device_type: str, compile: bool | None = None, arch: str = "nanochat-2025") -> Precision:
    """The plan's precision on a device (an H100-class GPU for cuda)."""
    a = get_arch(arch)
    return decide_precision(a.name, device_type, fp8_supported=a.fp8_supported,
                            compute_capability=9.0 if device_type == "cuda" else None, compile=compile)


def facts(shape: ModelShape, world_size: int, device_type: str, compile: bool | None = None) -> ModelFacts:
    return model_facts(get_arch(shape.arch), shape, world_size, precision(device_type, compile, shape.arch))


def optim_2025(shape: ModelShape | None = None, **overrides):
    """The late-2025 recipe the planner writes for `shape` (depth 2 by default), with overrides."""
    from chatplan_train.config import OptimConfig

    settings = A25.optimizer_settings(shape or model_shape(2), 524_288, 100)
    return replace(OptimConfig.from_plan(settings), **overrides)
