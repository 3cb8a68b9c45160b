"""The one list of planner inputs (`PlanRequest`) and the tiers, which are sets of overrides on it.

Every input is declared once, here, with its CLI flag, help text and group; `chatplan.commands.options`
builds the Typer options from these fields, and each command takes only the groups it uses. `None`
means "not given": the architecture (or the tier) supplies the default, so one request can be planned
under either architecture. `resolve()` turns a request into the fully specified one plan() computes
from: tier applied, defaults filled in, every value checked (type and range, one line naming it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

from chatplan.arch import DEFAULT_ARCH, get_arch
from chatplan.arch.base import Architecture
from chatplan.errors import InvalidInput
from chatplan.forecast import GPT2_CORE

DEFAULT_GPUS = "8xH100"
DEFAULT_GPUS_PER_NODE = 8
# Default inter-node link per GPU: 400 Gb/s (one NDR InfiniBand NIC per GPU, common on H100 nodes).
DEFAULT_INTER_NODE_GBPS = 400.0
# Group names, in the order help screens show them.
GROUPS = ("model", "horizon", "fleet", "precision", "money", "quality", "data", "eval")


def _in(group: str, flag: str, help: str, default: Any = None, short: str | None = None) -> Any:  # noqa: A002
    return field(default=default, metadata={"group": group, "flag": flag, "short": short, "help": help})


@dataclass(frozen=True)
class PlanRequest:
    # --- model ---
    arch: str | None = _in("model", "--arch", "Architecture: nanochat-2025 (late 2025, default) or nanochat-2026.")
    depth: int | None = _in("model", "--depth", "Model depth (layers), the one dial; width follows it.", short="-d")
    tier: str | None = _in("model", "--tier", "Preset: 100 (d20), 300 (d26), 1000 (d32), speedrun (2026 d24 fp8), "
                                              "tiny (CPU), gpt2 (= --target-core 0.256525 under --arch).")
    aspect_ratio: int | None = _in("model", "--aspect-ratio", "Model dim per layer (default 64).")
    head_dim: int | None = _in("model", "--head-dim", "Target head dim (default 128).")
    kv_heads: int | None = _in("model", "--kv-heads", "Key/value heads (GQA); default = heads.")
    vocab_size: int | None = _in("model", "--vocab-size", "Vocabulary size (default: the architecture's).")
    seq_len: int | None = _in("model", "--seq-len", "Context length T (default 2,048).")
    window_pattern: str | None = _in("model", "--window-pattern", "Attention windows per layer, tiled: S = short, "
                                                                  "L = full (nanochat-2026; default SSSL).")
    # --- horizon ---
    total_batch_size: int | None = _in("horizon", "--total-batch-size", "Tokens per optimizer step (default: the "
                                                                        "architecture's rule).")
    data_ratio: float | None = _in("horizon", "--data-ratio", "Training tokens per scaling parameter.")
    target_flops: float | None = _in("horizon", "--target-flops", "Total training FLOPs (sets the steps).")
    steps: int | None = _in("horizon", "--steps", "Optimizer steps (overrides ratio and FLOPs).")
    # --- fleet ---
    gpus: str | None = _in("fleet", "--gpus", "Fleet, COUNTxGPU: 8xH100, 16xH100, 1xA100-40GB (default 8xH100).")
    gpus_per_node: int = _in("fleet", "--gpus-per-node", "GPUs per node (nodes = GPUs / this).", DEFAULT_GPUS_PER_NODE)
    nodes: int | None = _in("fleet", "--nodes", "Nodes; must agree with --gpus / --gpus-per-node.")
    device_batch_size: int | None = _in("fleet", "--device-batch-size", "Per-GPU batch (default: the largest "
                                                                        "that fits and divides).")
    inter_node_gbps: float = _in("fleet", "--inter-node-gbps", "Inter-node Gb/s per GPU.", DEFAULT_INTER_NODE_GBPS)
    # --- precision ---
    fp8: bool = _in("precision", "--fp8", "Train the block matmuls and lm_head in fp8 (nanochat-2026, "
                                          "compute capability >= 8.9).", False)
    compile: bool | None = _in("precision", "--compile", "torch.compile the model (default: on CUDA only).")
    # --- money ---
    budget: float | None = _in("money", "--budget", "Dollars: plan the largest depth whose cost fits.")
    mfu: float | None = _in("money", "--mfu", "Override the predicted MFU (0 < MFU <= 1).")
    price: float | None = _in("money", "--price", "$ per GPU-hour (default: catalog).")
    # --- quality (the capability forecast: chatplan.forecast, chatplan.target) ---
    target_core: float | None = _in("quality", "--target-core", "The cheapest depth and ratio whose forecast CORE "
                                                                "reaches this (GPT-2 1.5B: 0.256525).")
    target_bpb: float | None = _in("quality", "--target-bpb", "The cheapest depth and ratio whose forecast "
                                                              "validation bpb is at most this.")
    # --- data ---
    chars_per_token: float | None = _in("data", "--chars-per-token", "Characters per token for shard counts.")
    chars_per_shard: float | None = _in("data", "--chars-per-shard", "Characters per data shard.")
    # --- eval ---
    eval_every: int | None = _in("eval", "--eval-every", "Steps between validation passes (0: only at the end).")
    eval_tokens: int | None = _in("eval", "--eval-tokens", "Tokens per validation pass.")

    def given(self) -> dict[str, Any]:
        """The inputs that differ from their defaults (what the user actually said)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) != f.default}

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def updated(r: PlanRequest, **changes: Any) -> PlanRequest:
    """`dataclasses.replace` for the planner's hot path: the same new frozen value, without re-running
    __init__ over thirty fields (a plan makes two or three of these; replace() cost ~6 µs each)."""
    new = object.__new__(PlanRequest)
    new.__dict__.update(r.__dict__)
    new.__dict__.update(changes)
    return new


def request_fields(groups: tuple[str, ...] = GROUPS) -> list:
    """The dataclass fields of the given groups, in declaration order (for the CLI)."""
    return [f for f in fields(PlanRequest) if f.metadata["group"] in groups]


# --- tiers: named sets of overrides ------------------------------------------------------------------

@dataclass(frozen=True)
class Tier:
    name: str
    arch: str | None  # None: follows --arch (the tiny preset exists for both)
    depth: int
    gpus: str
    budget_usd: float  # the tier's nominal end-to-end budget
    budget_hours: float  # ... and its wall time on one 8xH100 node at $24/h
    overrides: tuple[tuple[str, Any], ...] = ()  # fixed inputs (a conflicting explicit value is refused)
    defaults: tuple[tuple[str, Any], ...] = ()  # inputs the tier sets unless the user gives them
    one_micro_batch: bool = False  # total batch = one device batch on every rank (accumulation 1)
    data_source: str = "dataset"  # "dataset" (the architecture's corpus) | "sample" (the embedded corpus)
    cpu_only: bool = False
    note: str = ""


# The nanochat tiers, all on one 8xH100 node at $3/GPU-hour (SPEC.md §5; nanochat README's speedrun for
# 2026). "tiny" is a laptop-CPU preset: small enough that 200 steps on two cores take minutes, trained on
# the embedded sample corpus with its own 8,192-token tokenizer (depth 2, d = 128, one head of 128).
TIERS: dict[str, Tier] = {
    "100": Tier("100", "nanochat-2025", 20, "8xH100", 100.0, 4.0),
    "300": Tier("300", "nanochat-2025", 26, "8xH100", 300.0, 12.0),
    "1000": Tier("1000", "nanochat-2025", 32, "8xH100", 1000.0, 41.6),
    # nanochat's current GPT-2-grade recipe (runs/speedrun.sh): d24 in fp8 at ratio 8; README: "~$48
    # (~2 hours of 8XH100 GPU node)" end to end. The device batch is chosen automatically.
    "speedrun": Tier("speedrun", "nanochat-2026", 24, "8xH100", 48.0, 2.0,
                     defaults=(("fp8", True), ("data_ratio", 8.0)), note="GPT-2 grade, runs/speedrun.sh"),
    "tiny": Tier("tiny", None, 2, "1xCPU", 0.0, 0.0,
                 overrides=(("seq_len", 256), ("vocab_size", 8_192), ("device_batch_size", 8), ("eval_every", 25),
                            ("compile", False)),
                 defaults=(("steps", 200),), one_micro_batch=True, data_source="sample", cpu_only=True),
}


# Tiers that name a quality, not a model: the target search (chatplan.target) chooses depth and ratio.
TARGET_TIERS: dict[str, float] = {"gpt2": GPT2_CORE}


def target_tier(name: str | int | None) -> float | None:
    """The target CORE a tier name stands for (`--tier gpt2`), or None."""
    return None if name is None else TARGET_TIERS.get(normalise_tier_name(name))


def expand_target_tier(request: PlanRequest) -> PlanRequest:
    """`--tier gpt2` written out: the request with its target CORE and no tier."""
    value = target_tier(request.tier)
    if value is None:
        return request
    if request.target_core is not None and request.target_core != value:
        raise InvalidInput(f"--tier {request.tier} means --target-core {value}; drop one of them")
    return updated(request, tier=None, target_core=value)


def wants_target(request: PlanRequest) -> bool:
    """Whether plan() searches for the cheapest plan that reaches a forecast quality."""
    return request.target_core is not None or request.target_bpb is not None or target_tier(request.tier) is not None


def normalise_tier_name(name: str | int) -> str:
    """'$300', '300', ' Tiny ' and '$tiny' all name one tier."""
    return str(name).strip().lstrip("$").strip().lower()


def get_tier(name: str | int) -> Tier:
    tier = TIERS.get(normalise_tier_name(name))
    if tier is None:
        if target_tier(name) is not None:  # only plan() (through chatplan.target) reads a quality tier
            raise InvalidInput(f"--tier {name} names a quality, not a model: use it with estimate, compare or run")
        raise InvalidInput(f"unknown tier {name!r}: valid tiers are {', '.join([*TIERS, *TARGET_TIERS])}")
    return tier


def apply_tier(request: PlanRequest) -> tuple[PlanRequest, Tier | None]:
    """The request with its tier's depth, fleet and overrides filled in (and the tier)."""
    if request.tier is None:
        return request, None
    tier = get_tier(request.tier)
    if request.depth is not None and request.depth != tier.depth:
        raise InvalidInput(f"--tier {tier.name} means depth {tier.depth}; drop --depth {request.depth} or the tier")
    if tier.arch is not None and request.arch is not None and request.arch != tier.arch:
        raise InvalidInput(f"--tier {tier.name} is a {tier.arch} recipe; drop --arch {request.arch} or the tier")
    changes: dict[str, Any] = {"tier": tier.name, "depth": tier.depth, "gpus": request.gpus or tier.gpus}
    if tier.arch is not None:
        changes["arch"] = tier.arch
    for name, value in tier.overrides:
        given = getattr(request, name)
        if given is not None and given != value:
            raise InvalidInput(f"--tier {tier.name} fixes {name.replace('_', ' ')} at {value}, got {given}: "
                               "use --depth for a custom model")
        changes[name] = value
    for name, value in tier.defaults:
        field_default = next(f.default for f in fields(PlanRequest) if f.name == name)
        if getattr(request, name) in (None, field_default):
            changes[name] = value
    return updated(request, **changes), tier


# --- checking and defaults ---------------------------------------------------------------------------

def _check_int(name: str, value: Any, low: int) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InvalidInput(f"{name} must be {'a positive' if low == 1 else 'a non-negative'} integer, got {value!r}")


def _check_float(name: str, value: Any, *, zero_ok: bool = False, upper: float | None = None) -> None:
    if value is None:
        return
    ok_type = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok_type or not math.isfinite(value) or not (value >= 0 if zero_ok else value > 0):
        raise InvalidInput(f"{name} must be a {'non-negative' if zero_ok else 'positive'} finite number, "
                           f"got {value!r}")
    if upper is not None and value > upper:
        raise InvalidInput(f"{name} must be at most {upper}, got {value!r}")


# the numeric inputs, with the words an error names them by (and the float checks' options)
_POSITIVE_INTS = tuple((name, name.replace("_", " ")) for name in (
    "depth", "aspect_ratio", "head_dim", "kv_heads", "vocab_size", "seq_len", "total_batch_size", "steps",
    "gpus_per_node", "nodes", "device_batch_size", "eval_tokens"))
_FLOATS = (("mfu", "MFU", {"upper": 1.0}), ("price", "price", {"zero_ok": True}),
           ("inter_node_gbps", "inter-node bandwidth", {}), ("budget", "budget", {}), ("data_ratio", "data ratio", {}),
           ("target_flops", "target FLOPs", {}), ("target_core", "target CORE", {"upper": 1.0}),
           ("target_bpb", "target bpb", {}), ("chars_per_token", "chars per token", {}),
           ("chars_per_shard", "chars per shard", {}))


def check_request(r: PlanRequest) -> None:
    """Types and ranges of every input, one line naming the value (shape rules are the architecture's).
    Most inputs are None (not given): they are skipped before any call, the planner's hot path."""
    for name, label in _POSITIVE_INTS:
        if (value := getattr(r, name)) is not None:
            _check_int(label, value, 1)
    _check_int("eval every", r.eval_every, 0)
    for name, label, options in _FLOATS:
        if (value := getattr(r, name)) is not None:
            _check_float(label, value, **options)
    if r.chars_per_shard is not None and r.chars_per_shard < 1:
        raise InvalidInput(f"chars per shard must be a finite number >= 1, got {r.chars_per_shard}")
    if r.gpus is not None and not r.gpus.strip():
        raise InvalidInput("--gpus is empty: expected COUNTxGPU, e.g. 8xH100")


def with_defaults(r: PlanRequest, arch: Architecture) -> PlanRequest:
    """Every input the architecture has a default for, filled in (the batch rule needs the shape: plan())."""
    d, ds = arch.defaults, arch.dataset
    fill = {"aspect_ratio": d.aspect_ratio, "head_dim": d.head_dim, "vocab_size": d.vocab_size,
            "seq_len": d.seq_len, "window_pattern": d.window_pattern, "data_ratio": d.data_ratio,
            "chars_per_token": ds.chars_per_token, "chars_per_shard": ds.chars_per_shard,
            "eval_every": d.eval_every, "eval_tokens": d.eval_tokens, "gpus": DEFAULT_GPUS}
    return updated(r, arch=arch.name, **{k: v for k, v in fill.items() if getattr(r, k) is None})


def resolve(request: PlanRequest) -> tuple[PlanRequest, Architecture, Tier | None]:
    """Tier applied, values checked, defaults of the chosen architecture filled in."""
    request, tier = apply_tier(request)
    check_request(request)
    arch = get_arch(request.arch or DEFAULT_ARCH)
    return with_defaults(request, arch), arch, tier
