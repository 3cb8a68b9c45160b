"""plan.json -> a checked TrainConfig. The plan is the only contract between planner and trainer.

`chatplan.contract.read_plan` checks the document (schema version, every field's type and range) and
recomputes shape, parameter counts and FLOPs per token through the plan's architecture; a plan edited
by hand into something inconsistent, or written by another chatplan version, is refused rather than
half-trusted. Nothing downstream of this module touches the raw document.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from chatplan.arch.base import ModelShape
from chatplan.contract import PlanDoc, RunBinding
from chatplan.contract import load_plan as load_plan_doc
from chatplan.errors import InvalidInput
from chatplan.precision import Precision

DEFAULT_SAVE_EVERY = 1000  # steps between periodic checkpoints (also: at the end and on SIGTERM/SIGINT)


@dataclass(frozen=True)
class OptimConfig:
    """The late-2025 optimizer's hyper-parameters, exactly as plan.json's `optimizer` section carries
    them (the planner's architecture writes them; there are no defaults here to drift from it)."""

    matrix_lr: float
    embedding_lr: float  # already scaled by (d/768)^-0.5 in the plan
    unembedding_lr: float  # likewise
    adam_betas: tuple[float, float]
    adam_eps: float
    weight_decay: float
    muon_momentum_start: float
    muon_momentum_end: float
    muon_momentum_ramp_steps: int
    muon_nesterov: bool
    ns_steps: int
    ns_coefficients: tuple[float, float, float]
    warmup_ratio: float
    warmdown_ratio: float
    final_lr_frac: float
    grad_clip: float

    @classmethod
    def from_plan(cls, opt: dict[str, Any]) -> OptimConfig:
        values = {f.name: opt[f.name] for f in fields(cls)}
        for k in ("adam_betas", "ns_coefficients"):
            values[k] = tuple(values[k])
        return cls(**values)


@dataclass(frozen=True)
class TrainConfig:
    doc: PlanDoc
    shape: ModelShape
    precision: Precision
    optim: OptimConfig | None  # the late-2025 optimizer's settings; None for nanochat-2026 (doc.optimizer)
    out_dir: Path
    steps: int  # optimizer steps of this run (plan horizon unless --steps)
    device_batch_size: int
    grad_accum_steps: int
    world_size: int
    eval_every: int  # validation at step 0, every eval_every steps and at the last step; 0: never
    eval_tokens: int
    save_every: int  # 0: only at the end and on signals
    compile: bool
    resume: bool
    device_type: str  # "cuda" | "cpu"

    @property
    def seq_len(self) -> int:
        return self.shape.sequence_len

    @property
    def tokens_per_step(self) -> int:
        return self.device_batch_size * self.seq_len * self.world_size * self.grad_accum_steps


def load_plan(path: str | Path) -> PlanDoc:
    return load_plan_doc(path)


def check_tokenizer(doc: PlanDoc, vocab_size: int, ranks_sha256: str) -> None:
    if vocab_size != doc.vocab_size:
        raise InvalidInput(f"tokenizer has {vocab_size:,} tokens, the plan expects {doc.vocab_size:,}")
    if doc.run is not None and doc.run.ranks_sha256 is not None and doc.run.ranks_sha256 != ranks_sha256:
        raise InvalidInput(f"tokenizer ranks sha256 {ranks_sha256[:12]}... differs from the plan's "
                           f"{doc.run.ranks_sha256[:12]}...")


def run_binding(doc: PlanDoc) -> RunBinding:
    """Where the data and tokenizer are: the plan's run section (written by `chatplan run`), never a
    default of the environment."""
    if doc.run is None:
        raise InvalidInput("plan.json has no `run` section (data and tokenizer directories): start the run with "
                           "`chatplan run`, which binds them")
    return doc.run


def _learning_rates(doc: PlanDoc, optim: OptimConfig | None) -> list[tuple[str, Any]]:
    """(plan key, value) of every learning rate (and the clip) the trainer will multiply by."""
    if optim is not None:
        return [(k, getattr(optim, k)) for k in ("matrix_lr", "embedding_lr", "unembedding_lr", "grad_clip")]
    groups = [("adamw_groups", g) for g in doc.optimizer["adamw_groups"]]
    groups += [("muon_groups", g) for g in doc.optimizer["muon_groups"]]
    return [(f"{kind}[{g['name']}].lr", g["lr"]) for kind, g in groups]


def make_config(doc: PlanDoc, world_size: int, out: str | None = None, steps: int | None = None,
                compile: bool | None = None, eval_every: int | None = None, save_every: int | None = None,
                resume: bool = False) -> TrainConfig:
    if world_size != doc.world_size:
        raise InvalidInput(f"WORLD_SIZE is {world_size} but the plan is for {doc.world_size} ranks")
    for name, value in [("--steps", steps), ("--eval-every", eval_every), ("--save-every", save_every)]:
        if value is not None and value < (1 if name == "--steps" else 0):
            raise InvalidInput(f"{name} must be {'positive' if name == '--steps' else '>= 0'}, got {value}")
    optim = OptimConfig.from_plan(doc.optimizer) if doc.arch.name == "nanochat-2025" else None
    for key, value in _learning_rates(doc, optim):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            raise InvalidInput(f"plan.json: optimizer.{key} must be a finite number >= 0, got {value!r}")
    precision = doc.precision
    if compile is not None and compile != precision.compile:
        precision = replace(precision, compile=compile)
    if out is None:
        if doc.run is None:
            raise InvalidInput("no output directory: pass --out, or start the run with `chatplan run`")
        out = doc.run.out_dir
    return TrainConfig(
        doc=doc, shape=doc.shape, precision=precision, optim=optim, out_dir=Path(out),
        steps=steps if steps is not None else doc.steps,
        device_batch_size=doc.device_batch_size, grad_accum_steps=doc.grad_accum_steps, world_size=world_size,
        eval_every=eval_every if eval_every is not None else doc.eval_every, eval_tokens=doc.eval_tokens,
        save_every=save_every if save_every is not None else DEFAULT_SAVE_EVERY,
        compile=precision.compile, resume=resume, device_type=doc.device_type,
    )
