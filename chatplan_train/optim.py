"""Optimizers: Muon for block matrices, AdamW for the embeddings, sharded across data-parallel ranks.

Layout (the one `chatplan.layout` and the planner's memory model assume, SPEC §5):
- every rank holds the full weights and the full gradients (no DDP wrapper);
- after the last micro-step the gradients are averaged with one all-reduce per flat buffer;
- the global norm of the averaged gradient is clipped (identical on every rank, no extra traffic);
- each parameter's optimizer state lives only on its owner (`chatplan.layout.owner_map`), which
  steps it and then broadcasts the new weights to the others.

Weights and gradients are views into a few flat buffers, ordered (dtype, owner, name), so the
all-reduce and every owner's broadcast run on contiguous memory without a single copy.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist

from chatplan.layout import ADAMW_PARAMS_2025, COMM_BUCKET_ELEMENTS, owner_map
from chatplan_train.config import OptimConfig

EMBEDDINGS = ADAMW_PARAMS_2025  # AdamW; everything else is Muon
BUCKET_ELEMENTS = COMM_BUCKET_ELEMENTS  # all-reduce chunk: bounds the backend's scratch memory


def lr_multiplier(step: int, total_steps: int, warmdown_ratio: float, final_lr_frac: float,
                  warmup_ratio: float = 0.0) -> float:
    """Warmup (none by default), constant, then linear decay over the last warmdown_ratio of steps to
    final_lr_frac (nanochat's base_train rule, same rounding)."""
    warmup = round(warmup_ratio * total_steps)
    warmdown = round(warmdown_ratio * total_steps)
    if step < warmup:
        return (step + 1) / warmup
    if warmdown == 0 or step <= total_steps - warmdown:
        return 1.0
    progress = (total_steps - step) / warmdown
    return progress + (1 - progress) * final_lr_frac


def muon_momentum(step: int, cfg: OptimConfig) -> float:
    frac = min(step / cfg.muon_momentum_ramp_steps, 1.0) if cfg.muon_momentum_ramp_steps > 0 else 1.0
    return (1 - frac) * cfg.muon_momentum_start + frac * cfg.muon_momentum_end


def zeropower_via_newtonschulz(G: torch.Tensor, coefficients: tuple[float, float, float], steps: int,
                               dtype: torch.dtype) -> torch.Tensor:
    """Approximately orthogonalise each matrix of G (..., rows, cols) with the quintic Newton-Schulz
    iteration. Runs in `dtype`: bf16 on CUDA (tensor cores), fp32 on CPU (bf16 matmuls crawl there)."""
    a, b, c = coefficients
    X = G.to(dtype)
    transposed = G.size(-2) > G.size(-1)
    if transposed:  # iterate on the short side: A is rows x rows
        X = X.mT
    X = X / (torch.linalg.vector_norm(X, dim=(-2, -1), keepdim=True) + 1e-7)  # spectral norm <= 1
    for _ in range(steps):
        A = X @ X.mT
        B = torch.baddbmm(A, A, A, beta=b, alpha=c) if A.dim() == 3 else torch.addmm(A, A, A, beta=b, alpha=c)
        X = torch.baddbmm(X, B, X, beta=a) if X.dim() == 3 else torch.addmm(X, B, X, beta=a)
    return X.mT if transposed else X


class Muon(torch.optim.Optimizer):
    """MomentUm Orthogonalized by Newton-Schulz, as nanochat/Keller Jordan use it:
    buf = lerp(buf, g, 1-mu); u = lerp(g, buf, mu) (Nesterov); p -= lr * sqrt(max(1, rows/cols)) * NS(u).

    Matrices of one shape are stacked and orthogonalised together (one batched matmul per shape).
    """

    def __init__(self, params, lr: float = 0.02, momentum: float = 0.95, nesterov: bool = True,
                 ns_steps: int = 5, ns_coefficients: tuple[float, float, float] = (3.4445, -4.7750, 2.0315),
                 ns_dtype: torch.dtype = torch.float32):
        defaults = dict(lr=lr, momentum=momentum, nesterov=nesterov, ns_steps=ns_steps,
                        ns_coefficients=tuple(ns_coefficients), ns_dtype=ns_dtype)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            by_shape: dict[tuple[int, ...], list[torch.Tensor]] = {}
            for p in group["params"]:
                if p.grad is not None:
                    by_shape.setdefault(tuple(p.shape), []).append(p)
            mu = group["momentum"]
            for shape, params in by_shape.items():
                grads = [p.grad for p in params]
                bufs = []
                for p in params:
                    state = self.state[p]
                    if "momentum_buffer" not in state:
                        state["momentum_buffer"] = torch.zeros_like(p, dtype=torch.float32)
                    bufs.append(state["momentum_buffer"])
                torch._foreach_lerp_(bufs, grads, 1 - mu)
                update = torch._foreach_lerp(grads, bufs, mu) if group["nesterov"] else bufs
                ortho = zeropower_via_newtonschulz(torch.stack(update), group["ns_coefficients"],
                                                   group["ns_steps"], group["ns_dtype"])
                scale = math.sqrt(max(1.0, shape[0] / shape[1]))
                updates = list(ortho.to(params[0].dtype).unbind(0))
                torch._foreach_add_(params, updates, alpha=-group["lr"] * scale)


def _flat_views(tensors: list[torch.Tensor], flat: torch.Tensor) -> list[torch.Tensor]:
    views, offset = [], 0
    for t in tensors:
        views.append(flat[offset:offset + t.numel()].view_as(t))
        offset += t.numel()
    return views


class ShardedOptimizer:
    """AdamW + Muon with full replicas of weights and gradients and optimizer state on owners only."""

    def __init__(self, model: torch.nn.Module, cfg: OptimConfig, world_size: int = 1, rank: int = 0,
                 ns_dtype: torch.dtype = torch.float32):
        self.cfg, self.world_size, self.rank = cfg, world_size, rank
        self.params = dict(model.named_parameters())
        shapes = {n: tuple(p.shape) for n, p in self.params.items()}
        wte = self.params["transformer.wte.weight"]
        self.owners = owner_map(shapes, world_size, embedding_bytes=wte.element_size())

        # Flat buffers, one per dtype; inside, parameters grouped by owner so each owner's block is one
        # contiguous slice (one broadcast per owner and dtype). The ordering is a pure function of
        # (names, shapes, owners), hence identical on every rank.
        self.segments: list[tuple[int, torch.Tensor, torch.Tensor]] = []  # (owner, param slice, grad slice)
        self.flat_grads: list[torch.Tensor] = []
        by_dtype: dict[torch.dtype, list[str]] = {}
        for name in sorted(self.params, key=lambda n: (self.owners[n], n)):
            by_dtype.setdefault(self.params[name].dtype, []).append(name)
        for dtype, names in by_dtype.items():
            tensors = [self.params[n] for n in names]
            numel = sum(t.numel() for t in tensors)
            device = tensors[0].device
            flat_p = torch.empty(numel, dtype=dtype, device=device)
            flat_g = torch.zeros(numel, dtype=dtype, device=device)
            for n, pv, gv in zip(names, _flat_views(tensors, flat_p), _flat_views(tensors, flat_g),
                                 strict=True):
                pv.copy_(self.params[n].detach())
                self.params[n].data = pv  # the parameter now lives in the flat buffer
                self.params[n].grad = gv  # backward accumulates into it in place
            offset = 0
            for owner in range(world_size):
                size = sum(self.params[n].numel() for n in names if self.owners[n] == owner)
                if size:
                    self.segments.append((owner, flat_p[offset:offset + size], flat_g[offset:offset + size]))
                offset += size
            self.flat_grads.append(flat_g)

        mine = [n for n in self.params if self.owners[n] == rank]
        lrs = {"transformer.wte.weight": cfg.embedding_lr, "lm_head.weight": cfg.unembedding_lr}
        adam_groups = [{"params": [self.params[n]], "lr": lrs[n], "initial_lr": lrs[n], "names": [n]}
                       for n in mine if n in EMBEDDINGS]
        self.adamw = torch.optim.AdamW(adam_groups, betas=cfg.adam_betas, eps=cfg.adam_eps,
                                       weight_decay=cfg.weight_decay, fused=True) if adam_groups else None
        matrices = [n for n in mine if n not in EMBEDDINGS]
        self.muon = Muon([{"params": [self.params[n] for n in matrices], "initial_lr": cfg.matrix_lr,
                           "names": matrices}],
                         lr=cfg.matrix_lr, momentum=cfg.muon_momentum_start, nesterov=cfg.muon_nesterov,
                         ns_steps=cfg.ns_steps, ns_coefficients=cfg.ns_coefficients,
                         ns_dtype=ns_dtype) if matrices else None
        self.optimizers = [o for o in (self.adamw, self.muon) if o is not None]

    def zero_grad(self) -> None:
        for g in self.flat_grads:
            g.zero_()

    def broadcast_weights(self, src: int = 0) -> None:
        """Every rank starts from `src`'s weights (one broadcast per flat segment)."""
        for _, flat_p, _ in self.segments:
            dist.broadcast(flat_p, src=src)

    @torch.no_grad()
    def sync_and_clip(self) -> torch.Tensor:
        """Average the gradients over ranks, then clip their global norm. Returns the pre-clip norm."""
        if self.world_size > 1:
            nccl = dist.get_backend() == "nccl"
            for flat in self.flat_grads:
                for chunk in flat.split(BUCKET_ELEMENTS):
                    dist.all_reduce(chunk, op=dist.ReduceOp.AVG if nccl else dist.ReduceOp.SUM)
                if not nccl:  # gloo has no AVG
                    flat.mul_(1.0 / self.world_size)
        # Per-tensor norms, then the norm of those (as clip_grad_norm_): one fp32 reduction over a flat
        # buffer of millions of elements loses ~1e-4 relative on CPU; per tensor it stays ~1e-6.
        grads = [p.grad for p in self.params.values()]
        total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads, 2, dtype=torch.float32)))
        if self.cfg.grad_clip > 0:  # no .item(): no host sync on CUDA
            coef = torch.clamp(self.cfg.grad_clip / (total + 1e-6), max=1.0)
            for g in self.flat_grads:
                g.mul_(coef.to(g.dtype))
        return total

    @torch.no_grad()
    def step(self, step: int, total_steps: int) -> tuple[torch.Tensor, float]:
        """One optimizer step after the last micro-step's backward. Returns (pre-clip norm, lr mult)."""
        grad_norm = self.sync_and_clip()
        mult = lr_multiplier(step, total_steps, self.cfg.warmdown_ratio, self.cfg.final_lr_frac,
                             self.cfg.warmup_ratio)
        for opt in self.optimizers:
            for group in opt.param_groups:
                group["lr"] = group["initial_lr"] * mult
        if self.muon is not None:
            for group in self.muon.param_groups:
                group["momentum"] = muon_momentum(step, self.cfg)
        for opt in self.optimizers:
            opt.step()
        if self.world_size > 1:
            for owner, flat_p, _ in self.segments:
                dist.broadcast(flat_p, src=owner)
        return grad_norm, mult

    # -- checkpointing: state keyed by parameter name, so any world size can load it --------------------

    def state_shard(self) -> dict[str, dict[str, torch.Tensor]]:
        """This rank's optimizer state, {param name: {state key: tensor}}."""
        out = {}
        for opt in self.optimizers:
            for group in opt.param_groups:
                for name, p in zip(group["names"], group["params"], strict=True):
                    if opt.state.get(p):
                        out[name] = dict(opt.state[p])
        return out

    def load_state_shards(self, state: dict[str, dict[str, torch.Tensor]]) -> None:
        """Load the state of the parameters this rank owns from a union of shards (any old world size)."""
        for opt in self.optimizers:
            for group in opt.param_groups:
                for name, p in zip(group["names"], group["params"], strict=True):
                    if name not in state:
                        continue
                    entry = {}
                    for key, value in state[name].items():
                        if key == "step":  # AdamW's step count: fp32 scalar, on the param's device if fused
                            entry[key] = value.to(dtype=torch.float32, device=p.device)
                        else:  # Muon's buffer stays fp32; AdamW's moments follow the parameter's dtype
                            dtype = p.dtype if key.startswith("exp_avg") else value.dtype
                            entry[key] = value.to(dtype=dtype, device=p.device, copy=True)
                    opt.state[p] = entry
