"""The GPT: nanochat's late-2025 architecture (SPEC §6), at nanoGPT-level clarity.

- token embedding `wte` (untied from `lm_head`), parameter-free RMSNorm after it
- L pre-norm blocks: x += attn(norm(x)); x += mlp(norm(x))
- attention: q, k, v projections -> rotary (base 10,000, half split) -> QK-norm -> causal SDPA
- MLP: c_fc -> relu(x)^2 -> c_proj
- final norm -> lm_head -> soft-cap 15*tanh(z/15) -> cross-entropy in fp32
- no biases, no dropout, no learnable norm weights

Parameter names are exactly the architecture's `param_shapes` (chatplan/arch/nanochat_2025.py, nanochat's
names): the planner's parameter
counts and optimizer-state ownership describe this module tensor for tensor.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from chatplan.arch.base import ModelShape
from chatplan.layout import FUSED_LOSS_CHUNK_ELEMENTS
from chatplan.precision import Precision

ROTARY_BASE = 10_000
SOFTCAP = 15.0


def norm(x: torch.Tensor) -> torch.Tensor:
    # eps=None: F.rms_norm uses the dtype's machine epsilon, as nanochat does (fixture-exact).
    return F.rms_norm(x, (x.size(-1),))


def rotary_tables(seq_len: int, head_dim: int, device: torch.device | None = None) -> torch.Tensor:
    """cos and sin of position * 10000^(-2i/hd), stacked as (2, 1, T, 1, hd/2), stored in bf16.

    The angles are computed in fp32 and the tables rounded to bf16, as nanochat does; the reference
    fixture depends on that rounding (it moves the loss by ~5e-7). Products with them are fp32 on CPU.
    """
    channel = torch.arange(0, head_dim, 2, dtype=torch.float32, device=device)
    inv_freq = 1.0 / (ROTARY_BASE ** (channel / head_dim))
    t = torch.arange(seq_len, dtype=torch.float32, device=device)
    freqs = torch.outer(t, inv_freq)  # (T, hd/2)
    return torch.stack([freqs.cos(), freqs.sin()]).bfloat16()[:, None, :, None, :]


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the two halves of the head dim: [x1, x2] -> [x1 cos + x2 sin, -x1 sin + x2 cos]."""
    d = x.size(-1) // 2
    x1, x2 = x[..., :d], x[..., d:]  # (B, T, H, hd/2) each
    y1 = x1 * cos + x2 * sin
    y2 = x2 * cos - x1 * sin
    return torch.cat([y1, y2], dim=-1).to(x.dtype)


def _chunk_rows(vocab_size: int) -> int:
    return max(1, FUSED_LOSS_CHUNK_ELEMENTS // vocab_size)  # ~8 MB of fp32 logits per chunk: stays in cache


class LinearSoftcapCrossEntropy(torch.autograd.Function):
    """mean CE(15 tanh((x W^T) / 15), y) and its gradients in one chunked pass (the CPU path).

    The (N, V) logits never exist: per chunk of rows, logits -> soft-cap -> softmax -> gradient ->
    the two matmuls for dx and dW, while the chunk is still in cache; backward only scales the saved
    gradients. Same FLOPs as the plain path, ~20 fewer passes over N x V floats. Two identities make
    the elementwise part cheap: tanh(u) = 2 sigmoid(2u) - 1 (torch's CPU sigmoid is ~4x faster than
    its tanh, same fp32 accuracy), so with s = sigmoid(2z/15) the logit is 30 s - 15 and
    d(logit)/dz = 1 - tanh^2 = 4 s (1 - s); and |logit| <= 15, so exp() needs no max-shift.
    dLoss/dz = (softmax - onehot(y)) / n * 4 s (1 - s).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        N = x.size(0)
        valid = targets != -1
        n = valid.sum().clamp(min=1).to(torch.float32)
        dx, dW = torch.empty_like(x), torch.zeros_like(weight)
        loss = torch.zeros((), dtype=torch.float32, device=x.device)
        step = _chunk_rows(weight.size(0))
        for i in range(0, N, step):  # chunks of c rows, laid out transposed: (V, c) is the faster mm
            xs, ys, vs = x[i:i + step], targets[i:i + step], valid[i:i + step]
            cols, y = torch.arange(xs.size(0), device=x.device), ys.clamp(min=0)
            s = torch.mm(weight, xs.t()).mul_(2 / SOFTCAP).sigmoid_()  # (V, c): sigmoid(2 z / 15)
            p = torch.mul(s, 2 * SOFTCAP).sub_(SOFTCAP).exp_()  # exp(logits) <= e^15
            sum_p = p.sum(dim=0)  # (c,)
            loss += ((sum_p.log() - (2 * SOFTCAP * s[y, cols] - SOFTCAP)) * vs).sum()
            p.mul_(4 * vs / (sum_p * n))  # 4 softmax / n; ignored rows -> 0
            p[y, cols] -= 4 * vs / n
            p.mul_(s.addcmul_(s, s, value=-1.0))  # * s (1 - s): now dLoss/dz, transposed
            torch.mm(p.t(), weight, out=dx[i:i + step])
            dW.addmm_(p, xs)
        ctx.save_for_backward(dx, dW)
        return loss / n

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        dx, dW = ctx.saved_tensors
        return dx * grad, dW * grad, None


@torch.no_grad()
def chunked_softcap_nll(x: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-row loss (N,) of the soft-capped logits, chunked, no gradient (evaluation on CPU)."""
    out = torch.empty(x.size(0), dtype=torch.float32, device=x.device)
    step = _chunk_rows(weight.size(0))
    for s in range(0, x.size(0), step):
        logits = SOFTCAP * torch.tanh(torch.mm(x[s:s + step], weight.t()).float() / SOFTCAP)
        out[s:s + step] = F.cross_entropy(logits, targets[s:s + step], ignore_index=-1, reduction="none")
    return out


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: ModelShape):
        super().__init__()
        self.n_head, self.n_kv_head, self.head_dim = cfg.n_head, cfg.n_kv_head, cfg.head_dim
        assert cfg.n_embd % cfg.n_head == 0 and cfg.n_head % cfg.n_kv_head == 0 and self.head_dim % 2 == 0
        self.c_q = nn.Linear(cfg.n_embd, cfg.n_head * self.head_dim, bias=False)
        self.c_k = nn.Linear(cfg.n_embd, cfg.n_kv_head * self.head_dim, bias=False)
        self.c_v = nn.Linear(cfg.n_embd, cfg.n_kv_head * self.head_dim, bias=False)
        self.c_proj = nn.Linear(cfg.n_head * self.head_dim, cfg.n_embd, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        B, T, C = x.size()
        q = self.c_q(x).view(B, T, self.n_head, self.head_dim)  # (B, T, H, hd)
        k = self.c_k(x).view(B, T, self.n_kv_head, self.head_dim)  # (B, T, KV, hd)
        v = self.c_v(x).view(B, T, self.n_kv_head, self.head_dim)
        cos, sin = cos.to(q.dtype), sin.to(q.dtype)  # bf16 tables, exactly representable in fp32
        q, k = norm(apply_rotary(q, cos, sin)), norm(apply_rotary(k, cos, sin))  # rotary, then QK-norm
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, H, T, hd)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                           enable_gqa=self.n_kv_head != self.n_head)  # scale 1/sqrt(hd)
        y = y.transpose(1, 2).reshape(B, T, C)  # (B, T, H*hd)
        return self.c_proj(y)


class ReLUSquared(torch.autograd.Function):
    """relu(x)^2 with a one-pass backward (2 * relu(x) * grad): autograd's relu-then-square keeps two
    tensors and runs three elementwise kernels; this keeps one and runs one."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        r = torch.relu(x)
        ctx.save_for_backward(r)
        return r * r

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (r,) = ctx.saved_tensors
        return torch.mul(grad, r).mul_(2)


class MLP(nn.Module):
    def __init__(self, cfg: ModelShape):
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, cfg.mlp_hidden, bias=False)
        self.c_proj = nn.Linear(cfg.mlp_hidden, cfg.n_embd, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(ReLUSquared.apply(self.c_fc(x)))  # (B, T, 4d) -> relu^2 -> (B, T, d)


class Block(nn.Module):
    def __init__(self, cfg: ModelShape):
        super().__init__()
        self.attn = CausalSelfAttention(cfg)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(norm(x), cos, sin)
        return x + self.mlp(norm(x))


class GPT(nn.Module):
    def __init__(self, cfg: ModelShape):
        super().__init__()
        self.cfg = cfg
        self.transformer = nn.ModuleDict({
            "wte": nn.Embedding(cfg.padded_vocab_size, cfg.n_embd),
            "h": nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer)),
        })
        self.lm_head = nn.Linear(cfg.n_embd, cfg.padded_vocab_size, bias=False)
        # CPU: the chunked loss (LinearSoftcapCrossEntropy). CUDA keeps nanochat's plain path: eager it
        # materialises fp32 logits; compiled, inductor keeps the bf16 logits only (what the planner counts).
        self.fused_loss = False
        # Not a parameter and not saved: recomputed from the config (so meta-device builds stay free).
        self.register_buffer("rotary", rotary_tables(cfg.sequence_len, cfg.head_dim), persistent=False)

    @torch.no_grad()
    def init_weights(self) -> None:
        """SPEC §6 init: Normal(0, 1/sqrt(fan_in) * min(1, sqrt(fan_out/fan_in))) for linears,
        Normal(0, 1) for the embedding, zeros for lm_head and both output projections."""
        for name, p in self.named_parameters():
            if name == "transformer.wte.weight":
                p.normal_(0.0, 1.0)
            elif name == "lm_head.weight" or name.endswith("c_proj.weight"):
                p.zero_()
            else:
                fan_out, fan_in = p.shape
                p.normal_(0.0, 1.0 / math.sqrt(fan_in) * min(1.0, math.sqrt(fan_out / fan_in)))

    def hidden(self, idx: torch.Tensor) -> torch.Tensor:
        """Final normalised hidden states (B, T, d) for token ids (B, T)."""
        T = idx.size(1)
        cos, sin = self.rotary[0, :, :T], self.rotary[1, :, :T]  # (1, T, 1, hd/2)
        x = norm(self.transformer.wte(idx))  # (B, T, d)
        for block in self.transformer.h:
            x = block(x, cos, sin)
        return norm(x)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None,
                reduction: str = "mean") -> torch.Tensor:
        """Logits (B, T, V) without targets; with targets the fp32 cross-entropy (mean, or per token
        with reduction="none", flattened to (B*T,))."""
        x = self.hidden(idx)  # (B, T, d)
        if targets is not None and self.fused_loss and x.dtype == torch.float32:
            x2, y = x.view(-1, x.size(-1)), targets.view(-1)  # (B*T, d), (B*T,)
            if reduction == "none" or not torch.is_grad_enabled():
                losses = chunked_softcap_nll(x2, self.lm_head.weight, y)
                return losses if reduction == "none" else losses.sum() / (y != -1).sum().clamp(min=1)
            return LinearSoftcapCrossEntropy.apply(x2, self.lm_head.weight, y)
        logits = self.lm_head(x).float()  # (B, T, V) in fp32 for the loss
        logits = SOFTCAP * torch.tanh(logits / SOFTCAP)
        if targets is None:
            return logits
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1,
                               reduction=reduction)


def build_model(cfg: ModelShape, device: torch.device | str = "cpu", init: bool = True,
                precision: Precision | None = None) -> GPT:
    """Build on the meta device (free, any size), then materialise on `device` and initialise.

    The plan's precision decides the loss path and the stored embedding dtype; without one (tests,
    sampling) the CPU's fp32 policy applies: the fused loss on the CPU, fp32 everywhere.
    """
    with torch.device("meta"):
        model = GPT(cfg)
    if str(device) == "meta":
        return model
    model = model.to_empty(device=device)
    model.fused_loss = precision.fused_loss if precision is not None else torch.device(device).type == "cpu"
    model.rotary = rotary_tables(cfg.sequence_len, cfg.head_dim, device=torch.device(device))
    if init:
        model.init_weights()
    if precision is not None and precision.embedding_dtype == "bfloat16":
        model.transformer.wte.to(dtype=torch.bfloat16)  # stored in bf16: it is only ever read (SPEC §5)
    return model
