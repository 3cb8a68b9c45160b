"""plan.json -> a checked TrainConfig. The plan is the only contract between planner and trainer.

Everything about the model is recomputed through `chatplan` (shape, parameter counts, FLOPs per
token) and must equal what the plan says; a plan edited by hand into something inconsistent, or
written by another chatplan version with different rules, is refused rather than half-trusted.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chatplan.counts import flops_per_token, param_counts
from chatplan.errors import InvalidInput
from chatplan.shape import ModelShape, model_shape

DEFAULT_SAVE_EVERY = 1000  # steps between periodic checkpoints (also: at the end and on SIGTERM/SIGINT)


@dataclass(frozen=True)
class OptimConfig:
    """Optimizer hyper-parameters, as plan.json's `optimizer` section carries them."""

    matrix_lr: float = 0.02
    embedding_lr: float = 0.2  # already scaled by (d/768)^-0.5 in the plan
    unembedding_lr: float = 0.004  # likewise
    adam_betas: tuple[float, float] = (0.8, 0.95)
    adam_eps: float = 1e-10
    weight_decay: float = 0.0
    muon_momentum_start: float = 0.85
    muon_momentum_end: float = 0.95
    muon_momentum_ramp_steps: int = 300
    muon_nesterov: bool = True
    ns_steps: int = 5
    ns_coefficients: tuple[float, float, float] = (3.4445, -4.7750, 2.0315)
    warmup_ratio: float = 0.0
    warmdown_ratio: float = 0.2
    final_lr_frac: float = 0.0
    grad_clip: float = 1.0

    @classmethod
    def from_plan(cls, opt: dict) -> OptimConfig:
        fields = {k: opt[k] for k in cls.__dataclass_fields__ if k in opt}
        for k in ("adam_betas", "ns_coefficients"):
            if k in fields:
                fields[k] = tuple(fields[k])
        return cls(**fields)


@dataclass(frozen=True)
class TrainConfig:
    plan: dict
    shape: ModelShape
    optim: OptimConfig
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
    dtype: str  # "bfloat16" (autocast) | "float32"

    @property
    def seq_len(self) -> int:
        return self.shape.sequence_len

    @property
    def tokens_per_step(self) -> int:
        return self.device_batch_size * self.seq_len * self.world_size * self.grad_accum_steps


def get(plan: dict, dotted: str, kind: type | tuple[type, ...] | None = None) -> Any:
    """plan["a"]["b"] for "a.b", with a one-line error naming the key when it is missing or mistyped."""
    node: Any = plan
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise InvalidInput(f"plan.json: missing key `{dotted}`")
        node = node[part]
    kinds = kind if isinstance(kind, tuple) else (kind,) if kind is not None else None
    if kinds is not None and (not isinstance(node, kinds) or (isinstance(node, bool) and bool not in kinds)):
        raise InvalidInput(f"plan.json: `{dotted}` has the wrong type ({type(node).__name__})")
    return node


def load_plan(path: str | Path) -> dict:
    try:
        plan = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise InvalidInput(f"plan file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidInput(f"cannot read plan {path}: {e}") from None
    except json.JSONDecodeError as e:
        raise InvalidInput(f"plan {path} is not valid JSON: {e.msg} at line {e.lineno}") from None
    if not isinstance(plan, dict):
        raise InvalidInput(f"plan {path} is not a JSON object")
    return plan


def check_model(plan: dict) -> ModelShape:
    """Recompute shape, parameter counts and FLOPs per token through chatplan; refuse on mismatch."""
    m = {k: get(plan, f"model.{k}", int) for k in ("n_layer", "n_embd", "n_head", "n_kv_head", "head_dim",
                                                  "vocab_size", "sequence_len")}
    if m["n_layer"] < 1 or m["n_embd"] % m["n_layer"]:
        raise InvalidInput(f"plan.json: model dim {m['n_embd']} is not a multiple of {m['n_layer']} layers")
    shape = model_shape(m["n_layer"], aspect_ratio=m["n_embd"] // m["n_layer"], head_dim=m["head_dim"],
                        kv_heads=m["n_kv_head"], vocab_size=m["vocab_size"], seq_len=m["sequence_len"])
    for key, value in shape.to_dict().items():
        if get(plan, f"model.{key}") != value:
            raise InvalidInput(f"plan.json: model.{key} is {plan['model'][key]}, chatplan computes {value}")
    for key, value in param_counts(shape).to_dict().items():
        if get(plan, f"params.{key}") != value:
            raise InvalidInput(f"plan.json: params.{key} is {plan['params'][key]}, "
                               f"chatplan computes {value:,}")
    fpt = flops_per_token(shape)
    if get(plan, "flops_per_token") != fpt:
        raise InvalidInput(f"plan.json: flops_per_token is {plan['flops_per_token']}, "
                           f"chatplan computes {fpt:,}")
    return shape


def check_tokenizer(plan: dict, vocab_size: int, ranks_sha256: str) -> None:
    want = get(plan, "tokenizer.vocab_size", int)
    if vocab_size != want or vocab_size != plan["model"]["vocab_size"]:
        raise InvalidInput(f"tokenizer has {vocab_size:,} tokens, the plan expects {want:,}")
    sha = get(plan, "tokenizer.ranks_sha256")
    if sha is not None and sha != ranks_sha256:
        raise InvalidInput(f"tokenizer ranks sha256 {ranks_sha256[:12]}... differs from the plan's "
                           f"{str(sha)[:12]}...")


def make_config(plan: dict, world_size: int, out: str | None = None, steps: int | None = None,
                compile: bool | None = None, eval_every: int | None = None, save_every: int | None = None,
                resume: bool = False) -> TrainConfig:
    shape = check_model(plan)
    planned_world = get(plan, "parallelism.world_size", int)
    if world_size != planned_world:
        raise InvalidInput(f"WORLD_SIZE is {world_size} but the plan is for {planned_world} ranks")
    B = get(plan, "parallelism.device_batch_size", int)
    accum = get(plan, "parallelism.grad_accum_steps", int)
    total = get(plan, "horizon.total_batch_size", int)
    if B < 1 or accum < 1 or B * shape.sequence_len * world_size * accum != total:
        raise InvalidInput(f"plan.json: {B} x {shape.sequence_len} tokens x {world_size} ranks x {accum} "
                           f"accumulation steps is not the total batch {total:,}")
    for name, value in [("--steps", steps), ("--eval-every", eval_every), ("--save-every", save_every)]:
        if value is not None and value < (1 if name == "--steps" else 0):
            raise InvalidInput(f"{name} must be {'positive' if name == '--steps' else '>= 0'}, got {value}")
    device_type = get(plan, "device.type", str)
    if device_type not in ("cuda", "cpu"):
        raise InvalidInput(f"plan.json: device.type must be cuda or cpu, got {device_type!r}")
    dtype = get(plan, "device.dtype", str)
    if dtype not in ("bfloat16", "float32"):
        raise InvalidInput(f"plan.json: device.dtype must be bfloat16 or float32, got {dtype!r}")
    try:
        optim = OptimConfig.from_plan(get(plan, "optimizer", dict))
    except (TypeError, ValueError) as e:
        raise InvalidInput(f"plan.json: bad optimizer section: {e}") from None
    for key in ("matrix_lr", "embedding_lr", "unembedding_lr", "grad_clip"):
        value = getattr(optim, key)
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            raise InvalidInput(f"plan.json: optimizer.{key} must be a finite number >= 0, got {value!r}")
    return TrainConfig(
        plan=plan, shape=shape, optim=optim,
        out_dir=Path(out if out is not None else plan.get("out_dir") or "runs/chatplan"),
        steps=steps if steps is not None else get(plan, "horizon.steps", int),
        device_batch_size=B, grad_accum_steps=accum, world_size=world_size,
        eval_every=eval_every if eval_every is not None else get(plan, "eval.every", int),
        eval_tokens=get(plan, "eval.tokens", int),
        save_every=save_every if save_every is not None else DEFAULT_SAVE_EVERY,
        compile=compile if compile is not None else bool(get(plan, "device.compile", bool)),
        resume=resume, device_type=device_type, dtype=dtype,
    )
