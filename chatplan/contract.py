"""plan.json and report.json: the one module that writes and reads the documents between planner,
runner and trainer.

- `plan_document(plan)` writes plan.json (schema 2) from a Plan: every section complete, no
  placeholder for others to fill. What only the runner knows (where the data, tokenizer and run
  directory are) is a separate `RunBinding`, added once by `bind()` as the `run` section.
- `read_plan(doc)` / `load_plan(path)` is the typed reader the trainer and `chatplan run` share: it
  checks the schema version and every field they use (type and range), with one line naming the key
  and what would be valid. Nothing outside this module indexes these documents.
- `band()` is the one format of a predicted figure with its error band.
- report.json: `pair()` (achieved vs predicted, one error measure), `REPORT_ROWS`, `read_report()`.

Torch-free and planner-free at import time (the trainer imports it); the writer takes the Plan it
is given.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chatplan.arch import get_arch
from chatplan.arch.base import Architecture, ModelShape
from chatplan.errors import InvalidInput
from chatplan.precision import ATTENTION_KERNELS, DTYPE_BYTES, Precision
from chatplan.version import __version__

if TYPE_CHECKING:
    from chatplan.plan import Plan

SCHEMA_VERSION = 2
REGENERATE = "regenerate it with `chatplan estimate ... --save-plan plan.json` (or `chatplan run`)"


def chatplan_version() -> str:
    return __version__


# --- a predicted figure with its band --------------------------------------------------------------

def band(value: float, low: float, high: float, basis: str) -> dict[str, Any]:
    """A prediction and the range it is believed to lie in, with what that belief rests on."""
    return {"value": value, "low": low, "high": high, "basis": basis}


# --- writing plan.json ------------------------------------------------------------------------------

def plan_document(p: Plan) -> dict[str, Any]:
    tier = None
    if p.tier is not None:
        tier = {"name": p.tier.name, "budget_usd": p.tier.budget_usd, "budget_hours": p.tier.budget_hours,
                "budget_minus_pretraining_usd": p.tier.budget_usd - p.time.cost_usd,
                "note": "the difference pays for the stages chatplan does not run "
                        "(tokenizer training, SFT, evaluations)"}
    return {
        "schema_version": SCHEMA_VERSION,
        "chatplan_version": chatplan_version(),
        "arch": {"name": p.arch.name, "nanochat_commit": p.arch.nanochat_commit, "summary": p.arch.summary},
        "inputs": p.request.to_dict(),
        "tier": tier,
        "budget": asdict(p.budget) if p.budget else None,
        "target": asdict(p.target) if p.target else None,
        "forecast": p.forecast.to_dict() if p.forecast else None,
        "calibration": asdict(p.calibration),
        "model": p.shape.to_dict(),
        "params": p.params.to_dict(),
        "scaling_params": p.params.scaling,
        "flops_per_token": p.flops_per_token,
        "horizon": {**p.horizon.to_dict(), "total_batch_source": p.total_batch_source},
        "fleet": {**p.fleet.to_dict(), "gpu_spec": p.fleet.gpu.to_dict()},
        "parallelism": p.parallelism.to_dict(),
        "precision": p.precision.to_dict(),
        "memory": p.memory.to_dict(),
        "step_model": p.step.to_dict(),
        "time": p.time.to_dict(),
        "data": {**p.data.to_dict(), "source": p.data_source, "dataset": p.arch.dataset.name},
        "tokenizer": {"vocab_size": p.shape.vocab_size},
        "optimizer": p.optimizer,
        "eval": {"every": p.eval_every, "tokens": p.eval_tokens},
        "device": {"type": p.fleet.gpu.device_type, "gpu": p.fleet.gpu.name},
        "predictions": {
            "tokens_per_second": p.time.tokens_per_second,
            "step_seconds": p.time.step_seconds,
            "mfu": p.time.mfu,
            "peak_flops_per_gpu": p.fleet.gpu.peak_flops,
            "peak_allocated_gib": p.memory.peak_allocated_gib,
            "peak_reserved_gib": p.memory.peak_reserved_gib,
            "peak_device_gib": p.memory.peak_device_gib,
            "train_hours": p.time.train_hours,
            "pretrain_hours": p.time.pretrain_hours,
            "cost_usd": p.time.cost_usd,
            "price_per_gpu_hour": p.time.price_per_gpu_hour,
        },
        "bands": p.bands,
        "warnings": list(p.warnings),
        "notes": list(p.notes),
    }


@dataclass(frozen=True)
class RunBinding:
    """Where one run's inputs and outputs live: written by `chatplan run`, read by the trainer."""

    out_dir: str
    data_dir: str
    data_source: str  # "dataset" | "sample"
    train_shards: int  # training shards the loader reads (shard_00000 ...); 0: every one present
    validation_shard: str  # file name of the validation shard in data_dir
    tokenizer_dir: str
    ranks_sha256: str | None  # the tokenizer the plan was bound to (None: bound before it was trained)


def bind(doc: dict[str, Any], binding: RunBinding) -> dict[str, Any]:
    """plan.json with its run section (a new dict; the plan's own sections are untouched)."""
    return {**doc, "run": asdict(binding)}


# --- reading plan.json ------------------------------------------------------------------------------

def _get(doc: Any, dotted: str) -> Any:
    node = doc
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise InvalidInput(f"plan.json: missing key `{dotted}`")
        node = node[part]
    return node


def _int(doc: Any, key: str, low: int = 1, high: int | None = None) -> int:
    v = _get(doc, key)
    if isinstance(v, bool) or not isinstance(v, int) or v < low or (high is not None and v > high):
        rng = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"
        raise InvalidInput(f"plan.json: `{key}` must be {rng}, got {v!r}")
    return v


def _num(doc: Any, key: str, low: float = 0.0, high: float = math.inf, *, open_low: bool = False,
         optional: bool = False) -> float | None:
    v = _get(doc, key)
    if v is None and optional:
        return None
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    if not ok or v < low or v > high or (open_low and v == low):
        lo = "(" if open_low else "["
        raise InvalidInput(f"plan.json: `{key}` must be a finite number in {lo}{low:g}, {high:g}], got {v!r}")
    return float(v)


def _str(doc: Any, key: str, choices: tuple[str, ...] | None = None) -> str:
    v = _get(doc, key)
    if not isinstance(v, str) or (choices is not None and v not in choices):
        valid = f"one of {', '.join(choices)}" if choices else "a string"
        raise InvalidInput(f"plan.json: `{key}` must be {valid}, got {v!r}")
    return v


def _bool(doc: Any, key: str) -> bool:
    v = _get(doc, key)
    if not isinstance(v, bool):
        raise InvalidInput(f"plan.json: `{key}` must be true or false, got {v!r}")
    return v


def _check_optimizer(opt: Any, want: dict[str, Any]) -> dict[str, Any]:
    """Every key the architecture's recipe has, with the same kind of value and a sane range."""
    if not isinstance(opt, dict) or not opt:
        raise InvalidInput("plan.json: `optimizer` must be a non-empty object")
    missing = [k for k in want if k not in opt]
    if missing:
        raise InvalidInput(f"plan.json: `optimizer.{missing[0]}` is missing")
    for key, ref in want.items():
        _check_like(f"optimizer.{key}", opt[key], ref)
    return {k: opt[k] for k in want}


def _check_like(key: str, v: Any, ref: Any) -> None:
    """A value of the same shape as the reference recipe's, in the range its name implies."""
    if isinstance(ref, bool) or ref is None:
        if not (isinstance(v, bool) or (ref is None and v is None)) or (ref is None and v is not None):
            raise InvalidInput(f"plan.json: `{key}` must be {'true or false' if isinstance(ref, bool) else 'null'}, "
                               f"got {v!r}")
        return
    if isinstance(ref, str):
        if not isinstance(v, str):
            raise InvalidInput(f"plan.json: `{key}` must be a string, got {v!r}")
        return
    if isinstance(ref, (list, tuple)):
        if not isinstance(v, list) or len(v) != len(ref):
            raise InvalidInput(f"plan.json: `{key}` must be a list of {len(ref)} values, got {v!r}")
        for i, (item, r) in enumerate(zip(v, ref)):
            _check_like(f"{key}[{i}]", item, r)
        return
    if isinstance(ref, dict):
        if not isinstance(v, dict):
            raise InvalidInput(f"plan.json: `{key}` must be an object, got {v!r}")
        for k, r in ref.items():
            if k not in v:
                raise InvalidInput(f"plan.json: `{key}.{k}` is missing")
            _check_like(f"{key}.{k}", v[k], r)
        return
    name = key.rsplit(".", 1)[-1]
    if isinstance(ref, int):
        low = 1 if name.endswith("ns_steps") else 0
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise InvalidInput(f"plan.json: `{key}` must be an integer >= {low}, got {v!r}")
        return
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise InvalidInput(f"plan.json: `{key}` must be a finite number, got {v!r}")
    if ("ratio" in name or "frac" in name or "beta" in name or "momentum" in name) and not 0 <= v <= 1:
        raise InvalidInput(f"plan.json: `{key}` must be in [0, 1], got {v!r}")
    if ("lr" in name or "decay" in name or "eps" in name or "clip" in name or "scale" in name) and ref >= 0 > v:
        raise InvalidInput(f"plan.json: `{key}` must be >= 0, got {v!r}")


@dataclass(frozen=True)
class PlanDoc:
    """plan.json, read and checked: what the trainer and `chatplan run` may use of it."""

    raw: dict[str, Any]  # the document as read, to write back unchanged (checkpoint metadata, binding)
    chatplan_version: str
    arch: Architecture
    shape: ModelShape
    params: dict[str, int]
    flops_per_token: int
    steps: int
    total_batch_size: int
    world_size: int
    nodes: int
    nproc_per_node: int
    device_batch_size: int
    grad_accum_steps: int
    device_type: str
    gpu: str
    precision: Precision
    optimizer: dict[str, Any]
    eval_every: int
    eval_tokens: int
    vocab_size: int  # the tokenizer's, before padding
    data_source: str
    download_shards: int
    train_shards_needed: int
    validation_shard: str
    predictions: dict[str, float | None]
    resident_bytes: int  # weights + optimizer state of every rank: one checkpoint's size
    run: RunBinding | None
    forecast: dict[str, Any] | None = None  # the capability forecast (val_bpb, core bands); None in older plans


PREDICTION_KEYS = ("tokens_per_second", "step_seconds", "mfu", "peak_flops_per_gpu", "peak_allocated_gib",
                   "peak_reserved_gib", "peak_device_gib", "train_hours", "pretrain_hours", "cost_usd",
                   "price_per_gpu_hour")


def read_plan(doc: Any) -> PlanDoc:
    """Check a plan document; raises InvalidInput with one line naming the key and the valid range."""
    if not isinstance(doc, dict):
        raise InvalidInput("plan.json is not a JSON object")
    version = doc.get("schema_version")
    if version != SCHEMA_VERSION:
        raise InvalidInput(f"plan.json has schema_version {version!r}; this chatplan reads {SCHEMA_VERSION}: "
                           f"{REGENERATE}")
    arch = get_arch(_str(doc, "arch.name"))
    m = _get(doc, "model")
    if not isinstance(m, dict):
        raise InvalidInput("plan.json: `model` must be an object")
    n_layer, n_kv = _int(doc, "model.n_layer"), _int(doc, "model.n_kv_head")
    vocab, seq_len = _int(doc, "model.vocab_size"), _int(doc, "model.sequence_len")
    # the shape is recomputed by the architecture's rule and must equal what the plan says
    shape = arch.model_shape(n_layer, _int(doc, "model.aspect_ratio"), _int(doc, "model.head_dim"), n_kv, vocab,
                             seq_len, _str(doc, "model.window_pattern"))
    for key, value in shape.to_dict().items():
        if m.get(key) != value:
            raise InvalidInput(f"plan.json: model.{key} is {m.get(key)!r}, {arch.name} computes {value!r}")
    counts = arch.param_counts(shape)
    params = _get(doc, "params")
    for key, value in counts.to_dict().items():
        if not isinstance(params, dict) or params.get(key) != value:
            got = params.get(key) if isinstance(params, dict) else None
            raise InvalidInput(f"plan.json: params.{key} is {got!r}, {arch.name} computes {value:,}")
    fpt = arch.flops_per_token(shape, counts)
    if _get(doc, "flops_per_token") != fpt:
        raise InvalidInput(f"plan.json: flops_per_token is {_get(doc, 'flops_per_token')!r}, "
                           f"{arch.name} computes {fpt:,}")
    world = _int(doc, "parallelism.world_size")
    B, accum = _int(doc, "parallelism.device_batch_size"), _int(doc, "parallelism.grad_accum_steps")
    total = _int(doc, "horizon.total_batch_size")
    if B * seq_len * world * accum != total:
        raise InvalidInput(f"plan.json: {B} x {seq_len} tokens x {world} ranks x {accum} accumulation steps is "
                           f"not the total batch {total:,}")
    steps = _int(doc, "horizon.steps")
    precision = _read_precision(doc)
    device_type = _str(doc, "device.type", ("cuda", "cpu"))
    if precision.device_type != device_type:
        raise InvalidInput(f"plan.json: precision.device_type {precision.device_type!r} disagrees with device.type "
                           f"{device_type!r}")
    want = arch.optimizer_settings(shape, total, steps)
    optimizer = _check_optimizer(_get(doc, "optimizer"), want)
    predictions = {k: _num(doc, f"predictions.{k}", optional=True) for k in PREDICTION_KEYS}
    memory = _int(doc, "memory.weights", 0) + _int(doc, "memory.optimizer_state", 0) * world
    return PlanDoc(
        raw=doc, chatplan_version=str(doc.get("chatplan_version", "")), arch=arch, shape=shape,
        params=counts.to_dict(), flops_per_token=fpt, steps=steps,
        total_batch_size=total, world_size=world, nodes=_int(doc, "parallelism.nodes"),
        nproc_per_node=_int(doc, "parallelism.nproc_per_node"), device_batch_size=B, grad_accum_steps=accum,
        device_type=device_type, gpu=_str(doc, "device.gpu"), precision=precision, optimizer=optimizer,
        eval_every=_int(doc, "eval.every", 0), eval_tokens=_int(doc, "eval.tokens"),
        vocab_size=_int(doc, "tokenizer.vocab_size"), data_source=_str(doc, "data.source", ("dataset", "sample")),
        download_shards=_int(doc, "data.download_shards", 0),
        train_shards_needed=_int(doc, "data.train_shards_needed", 0),
        validation_shard=_str(doc, "data.validation_shard"), predictions=predictions, resident_bytes=memory,
        run=_read_run(doc) if "run" in doc else None, forecast=_read_forecast(doc),
    )


def _read_forecast(doc: Any) -> dict[str, Any] | None:
    """The forecast's two bands ({value, low, high, basis}), checked; None when the plan has none."""
    f = doc.get("forecast")
    if f is None:
        return None
    for key in ("val_bpb", "core"):
        for part in ("value", "low", "high"):
            _num(doc, f"forecast.{key}.{part}", -math.inf)
    return f


def _read_precision(doc: Any) -> Precision:
    p = _get(doc, "precision")
    if not isinstance(p, dict):
        raise InvalidInput("plan.json: `precision` must be an object")
    values: dict[str, Any] = {}
    dtypes = tuple(DTYPE_BYTES)
    for f in fields(Precision):
        key = f"precision.{f.name}"
        if f.name == "device_type":
            values[f.name] = _str(doc, key, ("cuda", "cpu"))
        elif f.name.endswith("dtype"):
            values[f.name] = _str(doc, key, dtypes)
        elif f.name == "attention_kernel":
            values[f.name] = _str(doc, key, ATTENTION_KERNELS)
        else:
            values[f.name] = _bool(doc, key)
    return Precision(**values)


def _read_run(doc: Any) -> RunBinding:
    r = _get(doc, "run")
    if not isinstance(r, dict):
        raise InvalidInput("plan.json: `run` must be an object")
    return RunBinding(out_dir=_str(doc, "run.out_dir"), data_dir=_str(doc, "run.data_dir"),
                      data_source=_str(doc, "run.data_source", ("dataset", "sample")),
                      train_shards=_int(doc, "run.train_shards", 0), validation_shard=_str(doc, "run.validation_shard"),
                      tokenizer_dir=_str(doc, "run.tokenizer_dir"),
                      ranks_sha256=None if _get(doc, "run.ranks_sha256") is None else _str(doc, "run.ranks_sha256"))


def _load_json(path: str | Path, what: str) -> Any:
    """A JSON document from disk, or one line saying why not."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise InvalidInput(f"{what} not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidInput(f"cannot read {what} {path}: {e}") from None
    except json.JSONDecodeError as e:
        raise InvalidInput(f"{what} {path} is not valid JSON: {e.msg} at line {e.lineno}") from None


def load_plan(path: str | Path) -> PlanDoc:
    return read_plan(_load_json(path, "plan"))


# --- report.json ------------------------------------------------------------------------------------

def relative_error(achieved: float | None, predicted: float | None) -> float | None:
    """The one error measure of every report row: achieved / predicted - 1."""
    if achieved is None or not predicted:
        return None
    return achieved / predicted - 1.0


def pair(achieved: float | None, predicted: float | None) -> dict[str, float | None]:
    return {"achieved": achieved, "predicted": predicted, "relative_error": relative_error(achieved, predicted)}


def forecast_check(achieved: float | None, forecast_band: dict[str, Any] | None) -> dict[str, Any] | None:
    """A measured quality (final val bpb, a CORE) beside its forecast band: the error and whether it is inside."""
    if not isinstance(forecast_band, dict):
        return None
    low, high, value = forecast_band.get("low"), forecast_band.get("high"), forecast_band.get("value")
    return {"achieved": achieved, "predicted": value, "low": low, "high": high,
            "error": None if achieved is None or value is None else achieved - value,
            "within_band": None if achieved is None else bool(low <= achieved <= high)}


# (label, report key) of the forecast comparisons (chatplan_train.report adds them; CORE's achieved value comes
# from `chatplan calibrate --core`, since the CORE benchmark data is not downloaded)
FORECAST_ROWS = [("val bpb (final) vs forecast", "val_bpb_forecast"), ("CORE vs forecast", "core_forecast")]


def forecast_checks(report: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(label, report[key]) for label, key in FORECAST_ROWS if isinstance(report.get(key), dict)]


# (label, report key, format) of the rows every rendering of a report shows, in order
REPORT_ROWS = [("tokens/s", "tokens_per_second", ",.0f"), ("step time (s)", "step_seconds", ".4f"),
               ("MFU", "mfu", ".4f"), ("train hours, full horizon", "train_hours_full_horizon", ",.3f"),
               ("cost USD, full horizon", "cost_usd_full_horizon", ",.2f")]
MEMORY_ROWS = [("memory max_allocated (GiB)", "max_allocated"), ("memory max_reserved (GiB)", "max_reserved"),
               ("memory device_used (GiB)", "device_used")]


def report_pairs(report: dict[str, Any]) -> list[tuple[str, dict[str, Any], str]]:
    """(label, pair, format) of every row present in a report."""
    rows = [(label, report[key], spec) for label, key, spec in REPORT_ROWS if isinstance(report.get(key), dict)]
    memory = report.get("memory_gib") or {}
    rows += [(label, memory[key], ".2f") for label, key in MEMORY_ROWS if isinstance(memory.get(key), dict)]
    return rows


def add_run_summary(report: dict[str, Any], doc: PlanDoc, wall_seconds: float, samples: list[dict]) -> dict:
    """The runner's additions to the trainer's report: end-to-end time, the plan in short, samples."""
    return {**report, "run_wall_seconds": wall_seconds, "samples": samples,
            "plan": {"arch": doc.arch.name, "depth": doc.shape.n_layer, "gpu": doc.gpu, "world_size": doc.world_size,
                     "device_batch_size": doc.device_batch_size, "steps": doc.steps}}


@dataclass(frozen=True)
class RunSummary:
    """The end-of-run facts of a report, for the lines and Markdown that show them."""

    steps_done: int | None
    wall_seconds: float | None  # training, in the trainer
    run_wall_seconds: float | None  # end to end, in `chatplan run`
    final_loss: float | None
    final_val_bpb: float | None
    samples: list[dict]


def run_summary(report: dict[str, Any]) -> RunSummary:
    return RunSummary(steps_done=report.get("steps_done"), wall_seconds=report.get("wall_seconds"),
                      run_wall_seconds=report.get("run_wall_seconds"), final_loss=report.get("final_loss"),
                      final_val_bpb=report.get("final_val_bpb"), samples=list(report.get("samples") or []))


def achieved(report: dict[str, Any], key: str) -> float | None:
    """The achieved value of a report row (`mfu`, `tokens_per_second`, `memory_gib.max_allocated` ...)."""
    node: Any = report
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node.get("achieved") if isinstance(node, dict) else None


def load_report(path: str | Path) -> dict[str, Any]:
    report = _load_json(path, "report")
    if not isinstance(report, dict):
        raise InvalidInput(f"{path} is not a JSON object")
    return report
