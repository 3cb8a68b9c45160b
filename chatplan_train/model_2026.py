"""The GPT of today's nanochat (`nanochat-2026`, commit 92d63d4; SPEC-2026 §8), at nanoGPT-level clarity.

What changed since late 2025 (chatplan_train/model.py), in forward order:
- `x = norm(wte[idx])`, then the smear: each position adds a gated share of the previous position,
  the gate reading the current position's first 24 channels; x0 is the post-smear value
- before every block `x = resid_λ[i]·x + x0_λ[i]·x0`
- attention: value embeddings on alternate layers (mixed into v with a 3·σ gate that reads the normed
  block input's first 12 channels), RoPE base 100,000, QK-norm then ×1.2, and a per-layer sliding window
  (key j is visible to query i iff 0 <= i - j <= w: w + 1 keys); the last layer is always full
- the output of block L//2 is cached and `backout_λ` times it subtracted before the final norm
- logits cropped to the true vocabulary before the fp32 soft-cap 15·tanh(z/15) and the cross-entropy

Precision follows the plan (chatplan.precision): no autocast; a Linear casts its fp32 master weight to
the activation dtype (bf16 on CUDA, fp32 on CPU); wte, the value embeddings and the rotary tables are
stored in the compute dtype. The attention kernel is the plan's `precision.attention_kernel`:
- "sdpa-causal":     full causal SDPA (every window covers the context)
- "sdpa-masked":     SDPA with a boolean window mask (CPU) — what nanochat's fallback does
- "sdpa-dense-mask": the same on a GPU without a windowed flash kernel
- "flash-windowed":  torch's FlexAttention with a block-sparse window mask (CUDA, compiled), which skips
                     the blocks the window masks — torch's own counterpart of nanochat's FA3 windows

Parameter names and order are exactly the architecture's `param_shapes` (chatplan/arch/nanochat_2026.py),
so the planner's counts, groups and memory layout describe this module tensor for tensor.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn as nn
import torch.nn.functional as F

from chatplan.arch.base import ModelShape
from chatplan.arch.nanochat_2026 import SMEAR_GATE_CHANNELS, VE_GATE_CHANNELS
from chatplan.precision import Precision
from chatplan_train.model import LinearSoftcapCrossEntropy, ReLUSquared, apply_rotary, chunked_softcap_nll, norm

ROTARY_BASE = 100_000
SOFTCAP = 15.0
QK_SCALE = 1.2  # q and k are multiplied by this after their RMSNorm (§8)
VE_GATE_RANGE = 3.0  # value-embedding gate: 3·σ(...) in (0, 3)


class Linear(nn.Linear):
    """No bias; the fp32 master weight is cast to the input's dtype (nanochat's Linear since 1076f97)."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__(in_features, out_features, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight.to(x.dtype))


def rotary_tables(seq_len: int, head_dim: int, dtype: torch.dtype, device: torch.device | None = None) -> torch.Tensor:
    """cos and sin of position · 100000^(-2i/hd), (2, 1, T, 1, hd/2), kept in the compute dtype (§8)."""
    channel = torch.arange(0, head_dim, 2, dtype=torch.float32, device=device)
    inv_freq = 1.0 / (ROTARY_BASE ** (channel / head_dim))
    angle = torch.outer(torch.arange(seq_len, dtype=torch.float32, device=device), inv_freq)
    return torch.stack([angle.cos(), angle.sin()]).to(dtype)[:, None, :, None, :]


@lru_cache(maxsize=64)
def window_mask(seq_len: int, window: int, device: str) -> torch.Tensor:
    """(T, T) bool, True = attend: key j <= query i and i - j <= window (window + 1 keys)."""
    i = torch.arange(seq_len, device=device)[:, None]
    j = torch.arange(seq_len, device=device)[None, :]
    return (j <= i) & (i - j <= window)


@lru_cache(maxsize=64)
def flex_block_mask(seq_len: int, window: int, device: str):
    from torch.nn.attention.flex_attention import create_block_mask

    def mask_mod(b, h, q_idx, kv_idx):
        return (kv_idx <= q_idx) & (q_idx - kv_idx <= window)

    return create_block_mask(mask_mod, B=None, H=None, Q_LEN=seq_len, KV_LEN=seq_len, device=device)


@lru_cache(maxsize=1)
def _compiled_flex():
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=False)


def windowed_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int, kernel: str) -> torch.Tensor:
    """Causal attention of (B, H, T, hd) tensors where each query sees its `window` predecessors."""
    T = q.size(2)
    gqa = k.size(1) != q.size(1)
    if window >= T or kernel == "sdpa-causal":  # the window covers the whole context
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
    if kernel == "flash-windowed":
        from torch.nn.attention.flex_attention import flex_attention

        # FlexAttention is a fused kernel only when compiled: an eager model (--no-compile) on a GPU still
        # calls the compiled function, never the reference path that materialises every T x T score
        fn = _compiled_flex() if q.is_cuda and not torch.compiler.is_compiling() else flex_attention
        return fn(q, k, v, block_mask=flex_block_mask(T, window, str(q.device)), enable_gqa=gqa)
    # compiled, the mask is traced into the graph (built from iotas, no cache); eager, it is built once
    mask = (window_mask.__wrapped__ if torch.compiler.is_compiling() else window_mask)(T, window, str(q.device))
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: ModelShape, layer: int, kernel: str):
        super().__init__()
        self.n_head, self.n_kv_head, self.head_dim = cfg.n_head, cfg.n_kv_head, cfg.head_dim
        self.window, self.kernel = cfg.window_sizes[layer], kernel
        # registration order = nanochat's named_parameters order: c_q, c_k, c_v, c_proj, ve_gate
        self.c_q = Linear(cfg.n_embd, cfg.n_head * cfg.head_dim)
        self.c_k = Linear(cfg.n_embd, cfg.kv_dim)
        self.c_v = Linear(cfg.n_embd, cfg.kv_dim)
        self.c_proj = Linear(cfg.n_embd, cfg.n_embd)
        self.ve_gate = Linear(VE_GATE_CHANNELS, cfg.n_kv_head) if layer in cfg.value_embed_layers else None

    def forward(self, h: torch.Tensor, ve: torch.Tensor | None, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        B, T, _ = h.size()
        q = self.c_q(h).view(B, T, self.n_head, self.head_dim)
        k = self.c_k(h).view(B, T, self.n_kv_head, self.head_dim)
        v = self.c_v(h).view(B, T, self.n_kv_head, self.head_dim)
        if ve is not None:  # value embedding: the raw table row, gated per kv head by the normed input
            gate = VE_GATE_RANGE * torch.sigmoid(self.ve_gate(h[..., :VE_GATE_CHANNELS]))  # (B, T, KV)
            v = v + gate.unsqueeze(-1) * ve.view(B, T, self.n_kv_head, self.head_dim)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)  # rotary, then QK-norm (nanochat's order)
        q, k = norm(q) * QK_SCALE, norm(k) * QK_SCALE
        y = windowed_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), self.window, self.kernel)
        return self.c_proj(y.transpose(1, 2).reshape(B, T, -1))


class MLP(nn.Module):
    def __init__(self, cfg: ModelShape):
        super().__init__()
        self.c_fc = Linear(cfg.n_embd, cfg.mlp_hidden)
        self.c_proj = Linear(cfg.mlp_hidden, cfg.n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(ReLUSquared.apply(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, cfg: ModelShape, layer: int, kernel: str):
        super().__init__()
        self.attn = CausalSelfAttention(cfg, layer, kernel)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, ve: torch.Tensor | None, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(norm(x), ve, cos, sin)
        return x + self.mlp(norm(x))


class GPT(nn.Module):
    def __init__(self, cfg: ModelShape, kernel: str = "sdpa-masked"):
        super().__init__()
        self.cfg = cfg
        L, v = cfg.n_layer, cfg.padded_vocab_size
        # the GPT's own parameters first: that is nanochat's named_parameters order
        self.resid_lambdas = nn.Parameter(torch.ones(L))
        self.x0_lambdas = nn.Parameter(torch.zeros(L))
        self.smear_lambda = nn.Parameter(torch.zeros(1))
        self.backout_lambda = nn.Parameter(torch.zeros(1))
        self.transformer = nn.ModuleDict({
            "wte": nn.Embedding(v, cfg.n_embd),
            "h": nn.ModuleList(Block(cfg, i, kernel) for i in range(L)),
        })
        self.lm_head = Linear(cfg.n_embd, v)
        self.smear_gate = Linear(SMEAR_GATE_CHANNELS, 1)
        self.value_embeds = nn.ModuleDict({str(i): nn.Embedding(v, cfg.kv_dim) for i in cfg.value_embed_layers})
        # CPU: the chunked loss; CUDA: the plain path (compiled, bf16 logits only: what the planner counts)
        self.fused_loss = False
        self.compute_dtype = torch.float32
        self.register_buffer("rotary", rotary_tables(cfg.sequence_len, cfg.head_dim, torch.float32), persistent=False)

    @torch.no_grad()
    def init_weights(self) -> None:
        """SPEC-2026 §8: wte N(0, 0.8), lm_head N(0, 0.001); c_q/c_k/c_v and the value embeddings uniform
        with std 1/√d, c_fc 0.4× that; both projections zero; the gates U(0, 0.02); the lambdas' ramps."""
        cfg = self.cfg
        bound = math.sqrt(3.0) / math.sqrt(cfg.n_embd)  # uniform(-a, a) has std a/√3
        span = max(cfg.n_layer - 1, 1)
        for name, p in self.named_parameters():
            if name == "transformer.wte.weight":
                p.normal_(0.0, 0.8)
            elif name == "lm_head.weight":
                p.normal_(0.0, 0.001)
            elif name.endswith(("attn.c_q.weight", "attn.c_k.weight", "attn.c_v.weight")) or name.startswith(
                    "value_embeds."):
                p.uniform_(-bound, bound)
            elif name.endswith("mlp.c_fc.weight"):
                p.uniform_(-0.4 * bound, 0.4 * bound)
            elif name.endswith("c_proj.weight"):
                p.zero_()
            elif name.endswith(("ve_gate.weight", "smear_gate.weight")):
                p.uniform_(0.0, 0.02)
        layer = torch.arange(cfg.n_layer, dtype=torch.float32, device=self.resid_lambdas.device)
        self.resid_lambdas.copy_(1.15 - 0.10 * layer / span)
        self.x0_lambdas.copy_(0.20 - 0.15 * layer / span)
        self.backout_lambda.fill_(0.2)
        self.smear_lambda.zero_()

    def hidden(self, idx: torch.Tensor) -> torch.Tensor:
        """Final normalised hidden states (B, T, d) for token ids (B, T)."""
        T, dt = idx.size(1), self.compute_dtype
        cos, sin = self.rotary[0, :, :T], self.rotary[1, :, :T]
        x = norm(self.transformer.wte(idx).to(dt))
        # smear: position t adds smear_λ·σ(gate(x[t, :24]))·x[t-1], all from the pre-smear x
        gate = torch.sigmoid(self.smear_gate(x[:, 1:, :SMEAR_GATE_CHANNELS]))  # (B, T-1, 1)
        x = torch.cat([x[:, :1], x[:, 1:] + self.smear_lambda.to(dt) * gate * x[:, :-1]], dim=1)
        x0, backout = x, None
        resid, mix = self.resid_lambdas.to(dt), self.x0_lambdas.to(dt)
        for i, block in enumerate(self.transformer.h):
            x = resid[i] * x + mix[i] * x0
            ve = self.value_embeds[str(i)](idx).to(dt) if str(i) in self.value_embeds else None
            x = block(x, ve, cos, sin)
            if i == self.cfg.n_layer // 2:
                backout = x
        x = x - self.backout_lambda.to(dt) * backout
        return norm(x)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None,
                reduction: str = "mean") -> torch.Tensor:
        """Logits (B, T, V) without targets; with targets the fp32 cross-entropy (mean, or per token with
        reduction="none", flattened to (B*T,)). Padding rows of lm_head never reach the loss."""
        x = self.hidden(idx)
        V = self.cfg.vocab_size
        weight = self.lm_head.weight[:V]  # (V, d): the crop, before the soft-cap
        if targets is not None and self.fused_loss and x.dtype == torch.float32:
            x2, y = x.reshape(-1, x.size(-1)), targets.reshape(-1)
            if reduction == "none" or not torch.is_grad_enabled():
                losses = chunked_softcap_nll(x2, weight, y)
                return losses if reduction == "none" else losses.sum() / (y != -1).sum().clamp(min=1)
            return LinearSoftcapCrossEntropy.apply(x2, weight, y)
        # through the module (all padded rows, then the crop, as nanochat does), so that --fp8's converted
        # lm_head is the one that runs
        logits = self.lm_head(x)[..., :V].float()
        logits = SOFTCAP * torch.tanh(logits / SOFTCAP)
        if targets is None:
            return logits
        return F.cross_entropy(logits.view(-1, V), targets.reshape(-1), ignore_index=-1, reduction=reduction)


def build_model(cfg: ModelShape, device: torch.device | str = "cpu", init: bool = True,
                precision: Precision | None = None) -> GPT:
    """Build on the meta device (free at any size), materialise on `device`, initialise, and store the
    lookup tables in the compute dtype (the plan's precision; CPU fp32 without one)."""
    kernel = precision.attention_kernel if precision is not None else "sdpa-masked"
    with torch.device("meta"):
        model = GPT(cfg, kernel)
    if str(device) == "meta":
        return model
    device = torch.device(device)
    model = model.to_empty(device=device)
    compute = getattr(torch, precision.compute_dtype) if precision is not None else torch.float32
    model.compute_dtype = compute
    model.fused_loss = precision.fused_loss if precision is not None else device.type == "cpu"
    model.rotary = rotary_tables(cfg.sequence_len, cfg.head_dim, compute, device=device)
    if init:
        model.init_weights()
    embedding = getattr(torch, precision.embedding_dtype) if precision is not None else torch.float32
    if embedding != torch.float32:
        model.transformer.wte.to(dtype=embedding)
        model.value_embeds.to(dtype=embedding)
    if precision is not None and precision.fp8:
        enable_fp8(model)
    return model


def enable_fp8(model: GPT) -> None:
    """Tensorwise fp8 training for the Linears nanochat converts (dims multiples of 16, min >= 128: the
    block matrices and lm_head), through torchao's maintained float8 training, not a hand-written matmul."""
    from chatplan.arch.nanochat_2026_terms import is_fp8_linear
    from chatplan.errors import InvalidInput

    try:
        from torchao.float8 import Float8LinearConfig, convert_to_float8_training
    except ImportError as e:
        raise InvalidInput("--fp8 needs torchao, which provides the float8 training Linear: "
                           "pip install \"chatplan[train]\" (or torchao)") from e

    def convert(module: nn.Module, fqn: str) -> bool:
        return isinstance(module, nn.Linear) and is_fp8_linear(fqn + ".weight", tuple(module.weight.shape))

    convert_to_float8_training(model, config=Float8LinearConfig.from_recipe_name("tensorwise"),
                               module_filter_fn=convert)
