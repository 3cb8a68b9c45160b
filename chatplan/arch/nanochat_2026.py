"""nanochat as of mid-2026 (SPEC-2026.md; nanochat commit 92d63d4, 2026-07-03): the exact formulas.

- width `ceil(L·aspect / head_dim)·head_dim` (head dim exactly 128, odd depths take the next even
  depth's width), vocabulary 32,768 padded to a multiple of 64, context 2,048;
- attention windows tiled from "SSSL" (short = T/4 rounded up to 128, the last layer always full);
- value embeddings on alternating layers (the last one included) with a 12-channel gate each, the
  smear gate, backout and the per-layer resid / x0 lambdas;
- parameters: nanochat's five printed groups; a ratio multiplies the *scaling* params
  (transformer_matrices + lm_head); FLOPs are 6 per Linear weight plus the windowed attention term;
- batch: the automatic Power-Lines rule `B ∝ D^0.383` rounded to a power of two;
- optimizer: MuonAdamW (six AdamW groups, Muon per matrix shape with Polar Express and NorMuon),
  LRs scaled by sqrt(B / 2^19), AdamW LRs by (d / 768)^-0.5, Muon weight decay by the T_epoch rule.

Everything here is arithmetic on shapes (SPEC-2026 §4: never count FLOPs from module types, which
is how nanochat's own `--fp8` FLOPs figure goes wrong at 92d63d4). Where this module repeats one
of nanochat's float computations (auto batch size, weight decay, schedules) it does so in the same
operation order, so that Python's round-half-to-even and the printed digits come out identically.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from types import MappingProxyType

from chatplan.arch import nanochat_2026_terms as terms
from chatplan.arch.base import Architecture, Dataset, Defaults, MemoryTerms, ModelShape, ParamCounts, StepTerms
from chatplan.errors import InvalidInput
from chatplan.precision import Precision

# --- constants of nanochat at 92d63d4 (SPEC-2026 section in brackets) ---------------------------------
VOCAB_PAD_MULTIPLE = 64  # GPT(pad_vocab_size_to=64) (§1)
FA3_TILE = 128  # the short window is rounded up to this (§1)
VE_GATE_CHANNELS = 12  # ve_gate reads x[..., :12] (§2, §8)
SMEAR_GATE_CHANNELS = 24  # smear_gate = Linear(24, 1) reads x[..., :24] (§2, §8)
REFERENCE_DEPTH = 12  # the d12 model every scaling rule refers to (§6, §7)
B_REF = 2**19  # 524,288 tokens: the d12 optimal batch (§6)
BATCH_EXPONENT = 0.383  # Power Lines: B_opt ∝ D^0.383 (§6)
DMODEL_REF = 768  # AdamW LRs scale as (d / 768)^-0.5 (§7)

MATRIX_LR = 0.02  # --matrix-lr (Muon)
EMBEDDING_LR = 0.3  # --embedding-lr (wte; value embeddings get half)
UNEMBEDDING_LR = 0.008  # --unembedding-lr (lm_head)
SCALAR_LR = 0.5  # --scalar-lr (x0_lambdas; resid_lambdas get 0.01 of it)
SMEAR_LR = 0.2  # smear_gate / smear_lambda / backout_lambda: fixed, never scaled (§7)
WEIGHT_DECAY = 0.28  # --weight-decay: Muon's λ at d12, before the T_epoch scaling
ADAM_EPS = 1e-10

NS_STEPS = 5
MUON_BETA2 = 0.9  # NorMuon's factored second moment
# nanochat/optim.py `polar_express_coeffs` (num_iters=5, safety_factor=2e-2, cushion=2), one (a, b, c) per step
POLAR_EXPRESS_COEFFS: tuple[tuple[float, float, float], ...] = (
    (8.156554524902461, -22.48329292557795, 15.878769915207462),
    (4.042929935166739, -2.808917465908714, 0.5000178451051316),
    (3.8916678022926607, -2.772484153217685, 0.5060648178503393),
    (3.285753657755655, -2.3681294933425376, 0.46449024233003106),
    (2.3465413258596377, -1.7097828382687081, 0.42323551169305323),
)
MUON_MOMENTUM_START = 0.85
MUON_MOMENTUM_PEAK = 0.97
MUON_MOMENTUM_RAMP_STEPS = 400
MUON_MOMENTUM_END = 0.90

WARMUP_STEPS = 40
WARMDOWN_RATIO = 0.65
FINAL_LR_FRAC = 0.05

# The AdamW reduce-scatter only runs for tensors of at least this many elements (§10, optim.py)
ADAMW_SCATTER_MIN_NUMEL = 1_024

# ClimbMix (§11). chars_per_token is an assumption (SPEC-2026 gives none), derived from the data set:
# Nemotron-ClimbMix holds ~400B GPT-2 tokens and was re-cut, whole, into 6,543 shards of >= 250M
# characters, i.e. ~1.64e12 chars / 400e9 = ~4.09 characters per GPT-2 (50,257-entry) token. The
# 32,768 tokenizer is trained on this very data (in-domain gains roughly offset by the smaller
# vocabulary: the 2025 65,536 tokenizer got 4.8 on FineWeb-Edu, where GPT-2 gets ~4.56 = 1,823 shards
# x 250M / 100B), so ~4.1. Cross-check: the speedrun's 5.84B tokens / 0.65 kept x 4.1 / 250M = 147
# shards, the LOG's "approx 150 data shards ... needed for GPT-2 capability". `--chars-per-token` or
# the measured tokenizer value override it.
CLIMBMIX = Dataset(
    name="ClimbMix (karpathy/climbmix-400b-shuffle)",
    base_url="https://huggingface.co/datasets/karpathy/climbmix-400b-shuffle/resolve/main",
    num_train_shards=6_542,  # shard_00000 ... shard_06541 (nanochat/dataset.py MAX_SHARD = 6542)
    validation_shard_index=6_542,  # always downloaded, always the validation split
    chars_per_shard=250e6,  # cut at >= 250,000,000 characters (dev/repackage_data_reference.py)
    shard_download_bytes=100e6,  # ~100 MB each (zstd-3)
    chars_per_token=4.1,  # assumption, see above
    kept_token_fraction=0.65,  # the BOS-aligned best-fit loader crops ~35 % (measured on FineWeb-Edu)
    # runs/speedrun.sh: `dataset -n 8` for the tokenizer, then `dataset -n 170` (shards 0-169, the
    # first 8 included, plus the validation shard) for the d24 run
    published_downloads=((24, 170),),
    local_dir="base_data_climbmix",  # nanochat's $NANOCHAT_BASE_DIR/base_data_climbmix
    tokenizer_dir="tokenizer_climbmix",  # the 32,768-token tokenizer trained on ClimbMix (§11)
)


# --- shape helpers (§1) ---------------------------------------------------------------------------------
def padded_vocab_size(vocab_size: int) -> int:
    """Embedding / lm_head rows: the vocabulary rounded up to a multiple of 64; logits are cropped back."""
    return -(-vocab_size // VOCAB_PAD_MULTIPLE) * VOCAB_PAD_MULTIPLE


def short_window(seq_len: int) -> int:
    """The S window, nanochat's `-(-T // 4 // 128) * 128` (512 at T = 2048, 128 at T = 512).

    Python's `-x // 4 // 128` floors twice on the negated value, which equals ceil(T / 512)·128, i.e.
    T/4 rounded up to the 128 tile. It never goes below 128: at T = 256 it is 128 (half the context)
    and at T <= 128 it is >= T, so nothing is truncated. The value is kept as nanochat passes it to
    the kernel; the FLOPs use min(window, T).
    """
    return -(-seq_len // 4 // FA3_TILE) * FA3_TILE


def normalize_window_pattern(pattern: str) -> str:
    """nanochat upper-cases the pattern and asserts it only holds S and L; an empty pattern would
    divide by zero while tiling, so it is refused here too."""
    if not isinstance(pattern, str) or not pattern.strip():
        raise InvalidInput(f"window pattern {pattern!r} is empty: use S (short window) and L (full context), "
                           "e.g. SSSL or L")
    upper = pattern.strip().upper()
    bad = sorted(set(upper) - {"S", "L"})
    if bad:
        raise InvalidInput(f"window pattern {pattern!r} has {', '.join(map(repr, bad))}: use only S (short window) "
                           "and L (full context), e.g. SSSL or L")
    return upper


def window_sizes(n_layer: int, seq_len: int, pattern: str) -> tuple[int, ...]:
    """Left window of each layer: the pattern tiled over the layers, the last layer always L (= T)."""
    pattern = normalize_window_pattern(pattern)
    by_char = {"L": seq_len, "S": short_window(seq_len)}
    sizes = [by_char[pattern[i % len(pattern)]] for i in range(n_layer)]
    if sizes:
        sizes[-1] = seq_len
    return tuple(sizes)


def value_embed_layers(n_layer: int) -> tuple[int, ...]:
    """nanochat's `has_ve`: layers with i % 2 == (L - 1) % 2, alternating with the last one included."""
    return tuple(i for i in range(n_layer) if i % 2 == (n_layer - 1) % 2)


# --- scaling rules (§6, §7), in nanochat's float operation order ----------------------------------------
def auto_total_batch_size(scaling_params: int, reference_scaling_params: int, ratio: float = 12.0) -> int:
    """base_train's `--total-batch-size -1`: 2**round(log2(2^19 · (target_tokens / D_REF)**0.383)).

    target_tokens = int(ratio·N_s) and D_REF = ratio·N_s(d12): the ratio cancels (up to the int()
    truncation), so B depends only on N_s(L) / N_s(d12). Python's round() on the same float nanochat
    computes: d32 sits only 0.005 above the 20.5 boundary (fixture table), so the order matters.
    """
    target_tokens = int(ratio * scaling_params)
    d_ref = ratio * reference_scaling_params
    predicted = B_REF * (target_tokens / d_ref) ** BATCH_EXPONENT
    exponent = round(math.log2(predicted))
    return 2 ** max(exponent, 0)  # a negative exponent would need N_s ~2^-50 of d12's: unreachable


def batch_lr_scale(total_batch_size: int) -> float:
    """sqrt(B / 2^19); base_train leaves it at exactly 1.0 when B = 2^19."""
    ratio = total_batch_size / B_REF
    return 1.0 if ratio == 1.0 else ratio**0.5


def dmodel_lr_scale(n_embd: int) -> float:
    """setup_optimizer's (d / 768)^-0.5 for the lm_head, wte and value-embedding LRs."""
    return (n_embd / DMODEL_REF) ** -0.5


def scaled_muon_weight_decay(total_batch_size: int, scaling_params: int, reference_scaling_params: int,
                             ratio: float = 12.0, weight_decay: float = WEIGHT_DECAY) -> float:
    """T_epoch rule λ = λ_ref · sqrt(B / 2^19) · D_REF / target_tokens (≈ 0.28·sqrt(B/2^19)·N_s(12)/N_s).

    base_train computes target_tokens = int(ratio·N_s) and D_REF = ratio·N_s(d12) from
    `--target-param-data-ratio` even when `--num-iterations` or `--target-flops` sets the horizon, so
    λ never depends on the number of steps: only the schedule below does.
    """
    target_tokens = int(ratio * scaling_params)
    d_ref = ratio * reference_scaling_params
    return weight_decay * math.sqrt(total_batch_size / B_REF) * (d_ref / target_tokens)


def warmdown_steps(num_iterations: int, warmdown_ratio: float = WARMDOWN_RATIO) -> int:
    """round(0.65·n), Python's half-to-even round as base_train uses."""
    return round(warmdown_ratio * num_iterations)


def lr_multiplier(it: int, num_iterations: int, warmup_steps: int = WARMUP_STEPS,
                  warmdown_ratio: float = WARMDOWN_RATIO, final_lr_frac: float = FINAL_LR_FRAC) -> float:
    """base_train's get_lr_multiplier: linear warmup (it+1)/40 first, flat, then linear to 0.05."""
    warmdown = warmdown_steps(num_iterations, warmdown_ratio)
    if it < warmup_steps:
        return (it + 1) / warmup_steps
    if it <= num_iterations - warmdown:
        return 1.0
    progress = (num_iterations - it) / warmdown
    return progress * 1.0 + (1 - progress) * final_lr_frac


def muon_momentum(it: int, num_iterations: int, warmdown_ratio: float = WARMDOWN_RATIO) -> float:
    """base_train's get_muon_momentum: 0.85 -> 0.97 over 400 steps, 0.97, then -> 0.90 over the warmdown.
    The ramp branch comes first, so a run shorter than 400 steps never reaches its warmdown branch."""
    warmdown = warmdown_steps(num_iterations, warmdown_ratio)
    start = num_iterations - warmdown
    if it < MUON_MOMENTUM_RAMP_STEPS:
        frac = it / MUON_MOMENTUM_RAMP_STEPS
        return (1 - frac) * MUON_MOMENTUM_START + frac * MUON_MOMENTUM_PEAK
    if it >= start:
        progress = (it - start) / warmdown
        return MUON_MOMENTUM_PEAK * (1 - progress) + MUON_MOMENTUM_END * progress
    return MUON_MOMENTUM_PEAK


def muon_weight_decay(it: int, num_iterations: int, weight_decay: float) -> float:
    """base_train's get_weight_decay: λ·½(1 + cos(π·it/n)), a cosine from λ to 0 over the run."""
    return weight_decay * 0.5 * (1 + math.cos(math.pi * it / num_iterations))


# --- parameter tensors ----------------------------------------------------------------------------------
SCALAR_TENSORS = ("resid_lambdas", "x0_lambdas", "smear_gate.weight", "smear_lambda", "backout_lambda")


def is_linear_weight(name: str) -> bool:
    """Tensors that are the weight of one of nanochat's `Linear`s (matmuls with the token stream):
    every block tensor, lm_head and smear_gate. Decided by name and shape, not by module type (§4)."""
    return name.startswith("transformer.h.") or name in ("lm_head.weight", "smear_gate.weight")


def is_muon_tensor(name: str) -> bool:
    """setup_optimizer: `transformer.h.parameters()` go to Muon, everything else to AdamW."""
    return name.startswith("transformer.h.")


def _numel(dims: tuple[int, ...]) -> int:
    return math.prod(dims)


@dataclass(frozen=True)
class Nanochat2026(Architecture):
    name: str = "nanochat-2026"
    nanochat_commit: str = "92d63d4"  # 2026-07-03, "clean up fragile code" (SPEC-2026.md)
    summary: str = ("mid-2026 nanochat: 128-wide heads, SSSL sliding windows, value embeddings, 32,768 vocab, "
                    "ratio 12 over scaling params, automatic batch, MuonAdamW")
    defaults: Defaults = field(default_factory=lambda: Defaults(
        aspect_ratio=64, head_dim=128, vocab_size=32_768, seq_len=2_048, data_ratio=12.0, window_pattern="SSSL",
        eval_every=250, eval_tokens=80 * B_REF))
    dataset: Dataset = CLIMBMIX
    fp8_supported: bool = True

    # --- shape (§1) ----------------------------------------------------------------------------------
    def dims(self, depth: int, aspect_ratio: int, head_dim: int, kv_heads: int | None) -> tuple[int, int, int]:
        # build_model_meta: the width is nudged *up* to a multiple of head_dim, so heads are exactly head_dim
        n_embd = -(-depth * aspect_ratio // head_dim) * head_dim
        n_head = n_embd // head_dim
        return n_embd, n_head, n_head if kv_heads is None else kv_heads

    def shape_problem(self, n_embd: int, n_head: int, n_kv_head: int) -> str | None:
        if n_head < 1 or n_embd % n_head:
            return f"model dim {n_embd:,} is not divisible by {n_head} heads"
        if (n_embd // n_head) % 2:
            return f"head dim {n_embd // n_head} is odd (rotary embeddings rotate halves)"
        if n_kv_head < 1 or n_kv_head > n_head or n_head % n_kv_head:
            return f"{n_head} heads are not divisible by {n_kv_head} kv heads"
        if n_embd < SMEAR_GATE_CHANNELS:
            # forward() feeds x[..., :24] to Linear(24, 1): narrower models fail with a shape error
            return f"model dim {n_embd} is below the smear gate's {SMEAR_GATE_CHANNELS} input channels"
        return None

    def build_shape(self, depth: int, n_embd: int, n_head: int, n_kv_head: int, vocab_size: int, seq_len: int,
                    window_pattern: str, aspect_ratio: int) -> ModelShape:
        if seq_len < 2:
            # forward() asserts T > 1 in training (the smear mixes position t-1 into t)
            raise InvalidInput(f"sequence length {seq_len} is too short: {self.name} trains on T > 1")
        pattern = normalize_window_pattern(window_pattern)
        return ModelShape(
            arch=self.name, n_layer=depth, n_embd=n_embd, n_head=n_head, n_kv_head=n_kv_head,
            head_dim=n_embd // n_head, vocab_size=vocab_size, padded_vocab_size=padded_vocab_size(vocab_size),
            sequence_len=seq_len, mlp_hidden=4 * n_embd, window_sizes=window_sizes(depth, seq_len, pattern),
            value_embed_layers=value_embed_layers(depth), aspect_ratio=aspect_ratio, window_pattern=pattern)

    # --- parameters and FLOPs (§2, §4) ---------------------------------------------------------------
    @functools.lru_cache(maxsize=512)  # noqa: B019 - the architecture is a frozen, immortal value
    def param_shapes(self, shape: ModelShape) -> dict[str, tuple[int, ...]]:
        """Every tensor by nanochat's name, in `model.named_parameters()` order (the GPT module's own
        parameters, then transformer.wte, the blocks, lm_head, smear_gate, value_embeds). Linear
        weights are (out_features, in_features)."""
        d, L, v = shape.n_embd, shape.n_layer, shape.padded_vocab_size
        q_dim, kv_dim = shape.n_head * shape.head_dim, shape.kv_dim
        ve = set(shape.value_embed_layers)
        shapes: dict[str, tuple[int, ...]] = {
            "resid_lambdas": (L,),
            "x0_lambdas": (L,),
            "smear_lambda": (1,),
            "backout_lambda": (1,),
            "transformer.wte.weight": (v, d),
        }
        for i in range(L):
            block = f"transformer.h.{i}."
            shapes[block + "attn.c_q.weight"] = (q_dim, d)
            shapes[block + "attn.c_k.weight"] = (kv_dim, d)
            shapes[block + "attn.c_v.weight"] = (kv_dim, d)
            shapes[block + "attn.c_proj.weight"] = (d, d)  # Linear(n_embd, n_embd)
            if i in ve:
                shapes[block + "attn.ve_gate.weight"] = (shape.n_kv_head, VE_GATE_CHANNELS)
            shapes[block + "mlp.c_fc.weight"] = (shape.mlp_hidden, d)
            shapes[block + "mlp.c_proj.weight"] = (d, shape.mlp_hidden)
        shapes["lm_head.weight"] = (v, d)
        shapes["smear_gate.weight"] = (1, SMEAR_GATE_CHANNELS)
        for i in shape.value_embed_layers:
            shapes[f"value_embeds.{i}.weight"] = (v, kv_dim)
        return MappingProxyType(shapes)  # cached and shared: read-only

    @functools.lru_cache(maxsize=512)  # noqa: B019
    def param_counts(self, shape: ModelShape) -> ParamCounts:
        """num_scaling_params()'s groups and keys, in its printed order, summed from the tensor shapes."""
        shapes = self.param_shapes(shape)

        def count(pred) -> int:
            return sum(_numel(dims) for name, dims in shapes.items() if pred(name))

        wte = count(lambda n: n == "transformer.wte.weight")
        value_embeds = count(lambda n: n.startswith("value_embeds."))
        lm_head = count(lambda n: n == "lm_head.weight")
        matrices = count(lambda n: n.startswith("transformer.h."))
        scalars = count(lambda n: n in SCALAR_TENSORS)
        total = wte + value_embeds + lm_head + matrices + scalars
        assert total == sum(_numel(dims) for dims in shapes.values())  # nanochat asserts the same
        groups = (("wte", wte), ("value_embeds", value_embeds), ("lm_head", lm_head),
                  ("transformer_matrices", matrices), ("scalars", scalars), ("total", total))
        return ParamCounts(
            groups=groups, total=total,
            scaling=matrices + lm_head,  # what --target-param-data-ratio multiplies (§5)
            matmul=count(is_linear_weight),  # 12·L·d² + V_pad·d + ve_gates + 24 at the defaults (§4)
            lookup=wte + value_embeds)

    @functools.lru_cache(maxsize=512)  # noqa: B019
    def attention_flops_per_token(self, shape: ModelShape) -> int:
        # Σ_layers 12·H·hd·min(w_i, T): each layer's own window, no causal halving (§4)
        per_position = 12 * shape.n_head * shape.head_dim
        return sum(per_position * min(w, shape.sequence_len) for w in shape.window_sizes)

    # --- the d12 reference the batch and weight-decay rules scale from (§6) -------------------------
    @functools.lru_cache(maxsize=512)  # noqa: B019
    def reference_scaling_params(self, shape: ModelShape) -> int:
        """N_s of base_train's build_model_meta(12): the same aspect ratio, head dim, vocabulary, context
        and window pattern, kv = heads (base_train never sets GQA). Context and pattern change no
        parameter; they are passed along only to build the same model."""
        n_embd, n_head, _ = self.dims(REFERENCE_DEPTH, shape.aspect_ratio, shape.head_dim, None)
        reference = self.build_shape(REFERENCE_DEPTH, n_embd, n_head, n_head, shape.vocab_size, shape.sequence_len,
                                     shape.window_pattern, shape.aspect_ratio)
        return self.param_counts(reference).scaling

    # --- horizon, batch, optimizer (§6, §7) ----------------------------------------------------------
    @functools.lru_cache(maxsize=512)  # noqa: B019
    def default_total_batch_size(self, shape: ModelShape) -> int:
        """§6: 2**round(log2(2^19·(N_s(L)/N_s(d12))**0.383)); the horizon ratio cancels, so the default
        ratio is used (independent of --target-param-data-ratio / steps / target FLOPs)."""
        scaling, reference = self.param_counts(shape).scaling, self.reference_scaling_params(shape)
        return auto_total_batch_size(scaling, reference, self.defaults.data_ratio)

    def optimizer_settings(self, shape: ModelShape, total_batch_size: int, steps: int) -> dict:
        """§7: MuonAdamW's groups as base_train + setup_optimizer build them, and the schedules.

        LRs are the groups' `initial_lr` (before the schedule's multiplier); the Muon kernel further
        multiplies its group's LR by `lr_shape_factor` = sqrt(max(1, rows/cols)), which also scales its
        decay (p -= lr·g + lr·wd·p·mask). The Muon weight decay λ does not depend on `steps` (see
        `scaled_muon_weight_decay`); `steps` sets the warmdown and the cosine decay of λ.
        """
        for label, value in (("total batch size", total_batch_size), ("steps", steps)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InvalidInput(f"{label} must be a positive integer, got {value!r}")
        scaling, reference = self.param_counts(shape).scaling, self.reference_scaling_params(shape)
        bs = batch_lr_scale(total_batch_size)
        dm = dmodel_lr_scale(shape.n_embd)
        wd = scaled_muon_weight_decay(total_batch_size, scaling, reference, self.defaults.data_ratio)
        # base_train passes these to setup_optimizer (every CLI LR times the batch scale)
        matrix_lr, embedding_lr = MATRIX_LR * bs, EMBEDDING_LR * bs
        unembedding_lr, scalar_lr = UNEMBEDDING_LR * bs, SCALAR_LR * bs
        warmdown = warmdown_steps(steps)
        return {
            "optimizer": "MuonAdamW",
            "total_batch_size": total_batch_size,
            "reference_batch_size": B_REF,
            "batch_lr_scale": bs,
            "dmodel_lr_scale": dm,
            "matrix_lr": matrix_lr,
            "embedding_lr": embedding_lr,
            "unembedding_lr": unembedding_lr,
            "scalar_lr": scalar_lr,
            "adamw_groups": self._adamw_groups(self.value_embed_names(shape), unembedding_lr, embedding_lr,
                                               scalar_lr, dm),
            "muon_groups": self._muon_groups(self.muon_members(shape), matrix_lr, wd),
            "adamw_weight_decay": "decoupled, p *= 1 - lr_t*wd before the moment update (scheduled lr, constant wd)",
            "muon_weight_decay": wd,
            "muon_weight_decay_schedule": "cosine to 0: wd * 0.5 * (1 + cos(pi * step / num_iterations))",
            "muon_weight_decay_kind": "cautious: only where update * param >= 0",
            "muon_nesterov": True,
            "muon_ns_steps": NS_STEPS,
            "polar_express_coefficients": [list(c) for c in POLAR_EXPRESS_COEFFS],
            "muon_beta2": MUON_BETA2,
            "muon_momentum_start": MUON_MOMENTUM_START,
            "muon_momentum_peak": MUON_MOMENTUM_PEAK,
            "muon_momentum_ramp_steps": MUON_MOMENTUM_RAMP_STEPS,
            "muon_momentum_end": MUON_MOMENTUM_END,
            "num_iterations": steps,
            "warmup_steps": WARMUP_STEPS,
            "warmdown_ratio": WARMDOWN_RATIO,
            "warmdown_steps": warmdown,
            "warmdown_start": steps - warmdown,
            "final_lr_frac": FINAL_LR_FRAC,
            "grad_clip": None,  # deleted from nanochat on 2026-01-08
            "facts": self._facts(shape, total_batch_size, bs, dm, wd, steps, warmdown),
        }

    @functools.lru_cache(maxsize=512)  # noqa: B019
    def value_embed_names(self, shape: ModelShape) -> tuple[str, ...]:
        """The value-embedding tables, in registration order (one AdamW group)."""
        return tuple(n for n in self.param_shapes(shape) if n.startswith("value_embeds."))

    @staticmethod
    def _adamw_groups(value_embeds: tuple[str, ...], unembedding_lr: float, embedding_lr: float,
                      scalar_lr: float, dm: float) -> list[dict]:
        """setup_optimizer's six AdamW groups, in param_groups order, with its exact LR expressions."""

        def group(name: str, params: list[str], lr: float, betas: tuple[float, float], weight_decay: float) -> dict:
            return {"name": name, "params": params, "lr": lr, "betas": list(betas), "eps": ADAM_EPS,
                    "weight_decay": weight_decay}

        return [
            group("lm_head", ["lm_head.weight"], unembedding_lr * dm, (0.8, 0.96), 0.01),
            group("wte", ["transformer.wte.weight"], embedding_lr * dm, (0.8, 0.995), 0.001),
            group("value_embeds", list(value_embeds), embedding_lr * dm * 0.5, (0.8, 0.995), 0.01),
            group("resid_lambdas", ["resid_lambdas"], scalar_lr * 0.01, (0.8, 0.95), 0.05),
            group("x0_lambdas", ["x0_lambdas"], scalar_lr, (0.96, 0.95), 0.0),
            group("smear", ["smear_gate.weight", "smear_lambda", "backout_lambda"], SMEAR_LR, (0.8, 0.95), 0.0),
        ]

    @functools.lru_cache(maxsize=512)  # noqa: B019
    def muon_members(self, shape: ModelShape) -> tuple[tuple[tuple[int, ...], tuple[str, ...]], ...]:
        """Muon's shape groups, sorted by shape as setup_optimizer does, members in registration order."""
        shapes = self.param_shapes(shape)
        return tuple((dims, tuple(n for n, d in shapes.items() if is_muon_tensor(n) and d == dims))
                     for dims in sorted({d for n, d in shapes.items() if is_muon_tensor(n)}))

    @staticmethod
    def _muon_groups(members, matrix_lr: float, weight_decay: float) -> list[dict]:
        """One Muon group per block-matrix shape."""
        groups = []
        for dims, names in members:
            rows, cols = dims
            factor = max(1.0, rows / cols) ** 0.5
            groups.append({
                "name": f"muon_{rows}x{cols}", "shape": [rows, cols],
                "params": list(names),
                "lr": matrix_lr, "lr_shape_factor": factor, "effective_lr": matrix_lr * factor,
                "ns_steps": NS_STEPS, "beta2": MUON_BETA2, "weight_decay": weight_decay,
                # NorMuon keeps per-row statistics for tall/square matrices, per-column for wide ones
                "second_moment_shape": [rows, 1] if rows >= cols else [1, cols],
            })
        return groups

    @staticmethod
    def _facts(shape: ModelShape, total_batch_size: int, bs: float, dm: float, wd: float, steps: int,
               warmdown: int) -> dict:
        """The values users compare with nanochat's log, formatted as base_train prints them."""
        return {
            "batch_lr_scale": f"{bs:.4f}",
            "batch_lr_scale_line": f"Scaling LRs by {bs:.4f} for batch size {total_batch_size:,} "
                                   f"(reference: {B_REF:,})",
            "weight_decay_scaling": f"{WEIGHT_DECAY:.6f} -> {wd:.6f}",
            "weight_decay_line": f"Scaling weight decay from {WEIGHT_DECAY:.6f} to {wd:.6f} for depth {shape.n_layer}",
            "dmodel_lr_scale": f"{dm:.6f}",
            "dmodel_lr_scale_line": f"Scaling the LR for the AdamW parameters ∝1/√({shape.n_embd}/768) = {dm:.6f}",
            "warmdown": f"{warmdown:,} steps starting at step {steps - warmdown:,} of {steps:,}",
        }

    def plan_notes(self, shape: ModelShape, world_size: int) -> list[str]:
        return ["nanochat itself resumes a checkpoint only on the same world size (its optimizer files are "
                "per rank); chatplan's trainer re-shards them"]

    # --- the terms of the generic memory and time models (nanochat_2026_terms.py) -------------------
    def memory_terms(self, shape: ModelShape, world_size: int, precision: Precision) -> MemoryTerms:
        return terms.memory_terms(self.param_shapes(shape), shape, world_size, precision, is_muon_tensor,
                                  is_linear_weight)

    def step_terms(self, shape: ModelShape, world_size: int, precision: Precision) -> StepTerms:
        return terms.step_terms(self.param_shapes(shape), shape, world_size, precision, is_muon_tensor,
                                is_linear_weight, self.attention_flops_per_token(shape))

    @functools.lru_cache(maxsize=512)  # noqa: B019
    def check_world_size(self, shape: ModelShape, world_size: int) -> str | None:
        """MuonAdamW reduce-scatters every AdamW tensor of >= 1,024 elements along dim 0 and asserts
        shape[0] % world_size == 0 (§10): wte, value_embeds and lm_head (V_pad rows), and the lambdas
        only at depth >= 1,024. Muon pads its stacks, so it imposes nothing."""
        if world_size < 1:
            return f"world size {world_size} is not a positive number of ranks"
        if world_size == 1:
            return None
        scattered = {name: dims for name, dims in self.param_shapes(shape).items()
                     if not is_muon_tensor(name) and _numel(dims) >= ADAMW_SCATTER_MIN_NUMEL}
        rows = sorted({dims[0] for dims in scattered.values()})
        bad = [r for r in rows if r % world_size]
        if not bad:
            return None
        tensors = _group_names(n for n, dims in scattered.items() if dims[0] == bad[0])
        g = math.gcd(*rows)
        valid = [w for w in range(1, min(g, 128) + 1) if g % w == 0]
        more = ", ..." if g > 128 else ""
        return (f"world size {world_size} does not divide the {bad[0]:,} rows of {tensors}: nanochat's AdamW "
                f"reduce-scatters them along dim 0 and asserts shape[0] % world_size == 0; valid world sizes "
                f"divide {g:,}: {', '.join(map(str, valid))}{more}")


def _group_names(names) -> str:
    """Tensor names folded to their printed group (value_embeds.3.weight -> value_embeds)."""
    folded: list[str] = []
    for name in names:
        short = {"transformer.wte.weight": "wte", "lm_head.weight": "lm_head"}.get(name, name.split(".")[0])
        if short not in folded:
            folded.append(short)
    return ", ".join(folded)


NANOCHAT_2026 = Nanochat2026()
