"""What every nanochat generation must say about itself: the shape of a model, its parameter tensors
and groups, the FLOPs convention, the horizon and batch rules, the optimizer recipe, and the terms the
generic memory and time models read.

An `Architecture` is a value (a frozen dataclass with methods); `chatplan.arch.get_arch(name)` selects
one and plan.json records its name and the nanochat commit it follows. Nothing outside `chatplan/arch/`
knows a nanochat constant: memory.py, timing.py, horizon.py and dataplan.py are generic and ask the
architecture for its terms.
"""

from __future__ import annotations

import functools
import math
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass

from chatplan.errors import InvalidInput
from chatplan.precision import Precision

MAX_DEPTH = 1_024  # a sanity bound for searches and inputs, far above anything trainable today


@dataclass(frozen=True)
class ModelShape:
    """Every dimension of one model, whatever its generation."""

    arch: str
    n_layer: int
    n_embd: int  # model dim d
    n_head: int
    n_kv_head: int
    head_dim: int
    vocab_size: int  # the tokenizer's vocabulary
    padded_vocab_size: int  # the embedding and lm_head rows (nanochat pads to a multiple of 64 since 2026)
    sequence_len: int  # context T
    mlp_hidden: int
    window_sizes: tuple[int, ...]  # attention window of each layer (T everywhere = full attention)
    value_embed_layers: tuple[int, ...]  # layers with a value embedding (none before 2026)
    aspect_ratio: int  # the inputs the shape was derived from, so a reader can re-derive it
    window_pattern: str

    @property
    def kv_dim(self) -> int:
        return self.n_kv_head * self.head_dim

    def __hash__(self) -> int:
        # shapes key the architecture's caches (a dozen look-ups per plan): hash the tuples once
        h = self.__dict__.get("_hash")
        if h is None:
            h = hash(tuple(self.__dict__[f] for f in _SHAPE_FIELDS))
            object.__setattr__(self, "_hash", h)
        return h

    def to_dict(self) -> dict:
        d = asdict(self)
        d["window_sizes"] = list(self.window_sizes)
        d["value_embed_layers"] = list(self.value_embed_layers)
        return d


_SHAPE_FIELDS = tuple(f for f in ModelShape.__dataclass_fields__)


@dataclass(frozen=True)
class ParamCounts:
    """Parameters by group, in the order and under the names nanochat prints them.

    `groups` is what plan.json's `params` section shows (the architecture decides the keys, totals
    included); the typed fields are what the generic models need.
    """

    groups: tuple[tuple[str, int], ...]
    total: int
    scaling: int  # what a tokens:params ratio multiplies
    matmul: int  # parameters that cost 6 FLOPs per token (the FLOPs convention)
    lookup: int  # embedding tables: read, not multiplied (wte, value embeddings)

    def __getitem__(self, name: str) -> int:
        for key, value in self.groups:
            if key == name:
                return value
        raise KeyError(name)

    def to_dict(self) -> dict:
        return dict(self.groups)


@dataclass(frozen=True)
class Defaults:
    """The architecture's defaults for inputs a user may leave out."""

    aspect_ratio: int
    head_dim: int
    vocab_size: int
    seq_len: int
    data_ratio: float
    window_pattern: str  # "L" = full attention everywhere
    eval_every: int
    eval_tokens: int


@dataclass(frozen=True)
class Dataset:
    """The pretraining corpus a generation downloads (facts of the public dataset)."""

    name: str
    base_url: str
    num_train_shards: int  # shard_00000 ... shard_{n-1}
    validation_shard_index: int
    chars_per_shard: float
    shard_download_bytes: float
    chars_per_token: float  # of the generation's default tokenizer on this data
    kept_token_fraction: float  # what the loader keeps (the best-fit loader crops ~35 %)
    published_downloads: tuple[tuple[int, int], ...]  # (depth, shards) the published recipes fetch
    local_dir: str = "base_data"  # folder under $CHATPLAN_HOME (nanochat's name for it)
    tokenizer_dir: str = "tokenizer"  # where this generation's tokenizer is trained to

    def shard_filename(self, index: int) -> str:
        return f"shard_{index:05d}.parquet"

    @property
    def validation_shard(self) -> str:
        return self.shard_filename(self.validation_shard_index)


@dataclass(frozen=True)
class MemoryTerms:
    """What the architecture's trainer allocates, for the generic memory model (bytes)."""

    weights: int
    gradients: int  # full on every rank
    optimizer_state_per_rank: tuple[int, ...]
    weight_copies: int  # low-precision casts of the matmul weights, saved for backward
    optimizer_workspace: int  # the optimizer step's temporaries on the busiest rank
    comm_scratch: int  # collective buffers alive during the step
    activation_bytes_per_token: float  # saved for backward, per token of a micro-batch
    loss_bytes_per_token: float  # the loss path's B x T x V tensors at the peak (saved, + the gradient in eager)
    loss_fixed_bytes: int  # loss-path memory that does not scale with the batch


@dataclass(frozen=True)
class StepTerms:
    """What one training step does, for the generic time model."""

    timed_flops_per_token: float  # matmul FLOPs weighted by how fast their kernels run (attention slower)
    memory_bytes_per_token: float  # memory-bound traffic (norms, rotary, residuals, activations, softcap)
    optimizer_flops_busiest_rank: float  # Newton-Schulz / Polar Express of the matrices the busiest rank owns
    sync_bytes_per_rank: float  # gradient reduction + weight distribution per optimizer step


class Architecture(ABC):
    """One nanochat generation. Subclasses are frozen dataclasses holding their constants."""

    name: str
    nanochat_commit: str
    summary: str
    defaults: Defaults
    dataset: Dataset
    fp8_supported: bool

    # --- shape ---------------------------------------------------------------------------------------
    @abstractmethod
    def dims(self, depth: int, aspect_ratio: int, head_dim: int, kv_heads: int | None) -> tuple[int, int, int]:
        """(model dim, heads, kv heads) for a depth, before validation."""

    @abstractmethod
    def shape_problem(self, n_embd: int, n_head: int, n_kv_head: int) -> str | None:
        """Why a (dim, heads, kv heads) triple is invalid, or None when it is valid."""

    @abstractmethod
    def build_shape(self, depth: int, n_embd: int, n_head: int, n_kv_head: int, vocab_size: int, seq_len: int,
                    window_pattern: str, aspect_ratio: int) -> ModelShape:
        """The shape once the dims are valid (the aspect ratio is recorded: widths are rounded, so it
        cannot be read back from them, and 2026's batch rule rebuilds a d12 with it)."""

    def is_valid_depth(self, depth: int, aspect_ratio: int | None = None, head_dim: int | None = None,
                       kv_heads: int | None = None) -> bool:
        aspect_ratio = self.defaults.aspect_ratio if aspect_ratio is None else aspect_ratio
        head_dim = self.defaults.head_dim if head_dim is None else head_dim
        return depth >= 1 and self.shape_problem(*self.dims(depth, aspect_ratio, head_dim, kv_heads)) is None

    def nearest_valid_depths(self, depth: int, aspect_ratio: int | None = None, head_dim: int | None = None,
                             kv_heads: int | None = None) -> tuple[int | None, int | None]:
        """The closest valid depths strictly below and above `depth` (None where there is none)."""

        def ok(d: int) -> bool:
            return self.is_valid_depth(d, aspect_ratio, head_dim, kv_heads)

        below = next((d for d in range(min(depth - 1, MAX_DEPTH), 0, -1) if ok(d)), None)
        above = next((d for d in range(max(depth + 1, 1), MAX_DEPTH + 1) if ok(d)), None)
        return below, above

    @functools.lru_cache(maxsize=1024)  # noqa: B019 - pure, and the architecture is an immortal value
    def model_shape(self, depth: int, aspect_ratio: int | None = None, head_dim: int | None = None,
                    kv_heads: int | None = None, vocab_size: int | None = None, seq_len: int | None = None,
                    window_pattern: str | None = None) -> ModelShape:
        """Shape for a depth; raises InvalidInput naming the reason and the nearest valid depths."""
        d = self.defaults
        aspect_ratio = d.aspect_ratio if aspect_ratio is None else aspect_ratio
        head_dim = d.head_dim if head_dim is None else head_dim
        vocab_size = d.vocab_size if vocab_size is None else vocab_size
        seq_len = d.seq_len if seq_len is None else seq_len
        window_pattern = d.window_pattern if window_pattern is None else window_pattern
        for name, value in [("depth", depth), ("aspect ratio", aspect_ratio), ("head dim", head_dim),
                            ("vocab size", vocab_size), ("sequence length", seq_len)]:
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InvalidInput(f"{name} must be a positive integer, got {value!r}")
        if depth > MAX_DEPTH:
            raise InvalidInput(f"depth {depth} is above the supported maximum {MAX_DEPTH}")
        if kv_heads is not None and (not isinstance(kv_heads, int) or kv_heads < 1):
            raise InvalidInput(f"kv heads must be a positive integer, got {kv_heads!r}")
        n_embd, n_head, n_kv_head = self.dims(depth, aspect_ratio, head_dim, kv_heads)
        problem = self.shape_problem(n_embd, n_head, n_kv_head)
        if problem:
            below, above = self.nearest_valid_depths(depth, aspect_ratio, head_dim, kv_heads)
            near = " and ".join(str(x) for x in (below, above) if x is not None) or "none"
            raise InvalidInput(f"depth {depth} is invalid: {problem}; nearest valid depths: {near}")
        return self.build_shape(depth, n_embd, n_head, n_kv_head, vocab_size, seq_len, window_pattern, aspect_ratio)

    # --- parameters and FLOPs ------------------------------------------------------------------------
    @abstractmethod
    def param_shapes(self, shape: ModelShape) -> dict[str, tuple[int, ...]]:
        """Every parameter tensor by its trainer name (nanochat's names); the trainer builds exactly these."""

    @abstractmethod
    def param_counts(self, shape: ModelShape) -> ParamCounts:
        """Parameters by group (nanochat's printed groups)."""

    @abstractmethod
    def attention_flops_per_token(self, shape: ModelShape) -> int:
        """The attention term of the FLOPs convention (scores and values, no causal halving)."""

    def flops_per_token(self, shape: ModelShape, counts: ParamCounts | None = None) -> int:
        """Training FLOPs per token: 6 per matmul parameter plus the attention term, from shapes only."""
        counts = counts or self.param_counts(shape)
        return 6 * counts.matmul + self.attention_flops_per_token(shape)

    # --- horizon, batch, optimizer -------------------------------------------------------------------
    @abstractmethod
    def default_total_batch_size(self, shape: ModelShape) -> int:
        """Tokens per optimizer step when the user gives none (a constant, or nanochat's automatic rule)."""

    @abstractmethod
    def optimizer_settings(self, shape: ModelShape, total_batch_size: int, steps: int) -> dict:
        """The optimizer recipe of this generation, already scaled for width and batch (plan.json)."""

    def plan_notes(self, shape: ModelShape, world_size: int) -> list[str]:
        """What a user of this generation should know about a plan (shown with it)."""
        return []

    def check_world_size(self, shape: ModelShape, world_size: int) -> str | None:
        """Why a world size cannot train this shape (a rule of the optimizer's sharding), or None."""
        return None

    # --- the terms the generic memory and time models read ------------------------------------------
    def memory_terms(self, shape: ModelShape, world_size: int, precision: Precision) -> MemoryTerms:
        """The trainer's tensors for this shape, world size and precision (each architecture defines it)."""
        raise NotImplementedError(f"{self.name} has no memory model")

    def step_terms(self, shape: ModelShape, world_size: int, precision: Precision) -> StepTerms:
        """The work of one step for the time model (each architecture defines it)."""
        raise NotImplementedError(f"{self.name} has no time model")


def ceil_to(x: int, multiple: int) -> int:
    return math.ceil(x / multiple) * multiple
