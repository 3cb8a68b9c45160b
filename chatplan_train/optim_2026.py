"""MuonAdamW as nanochat-2026 runs it (SPEC-2026 §7, §10), sharded the way the planner's memory model assumes.

The groups, learning rates, betas, decays and schedules come from plan.json's `optimizer` section
(written by chatplan/arch/nanochat_2026.py); the schedules are the planner's own functions. Nothing
here re-types a hyper-parameter.

Layout across W data-parallel ranks (no DDP; every rank backpropagates into full-size gradients):
- AdamW tensors under 1,024 elements: gradients all-reduced, state replicated on every rank;
- larger AdamW tensors: gradients reduce-scattered along dim 0, each rank keeps exp_avg/exp_avg_sq (in
  the parameter's dtype) for its 1/W slice of rows, updates that slice, then the slices are all-gathered;
- Muon: each shape group's K gradients are stacked, zero-padded to ceil(K/W)·W and reduce-scattered, so
  a rank owns ceil(K/W) matrices (fp32 momentum + NorMuon's factored second moment), updates them, and the
  stacked new weights are all-gathered.
The state is checkpointed by parameter name (AdamW slices by row range), so a resume on another world
size re-slices it.

Every scalar hyper-parameter is rounded to fp32 before use (nanochat fills 0-D fp32 tensors), so
expressions like 1 - β are evaluated in fp32 as there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from chatplan.arch.nanochat_2026 import ADAMW_SCATTER_MIN_NUMEL, lr_multiplier, muon_momentum, muon_weight_decay

EPS_NORM = 1e-6  # MuonEq's row-norm floor, the normalisation's epsilon and Muon+'s floor (nanochat)
EPS_SECOND_MOMENT = 1e-10  # NorMuon: rsqrt(max(S, eps)) and the renormalisation's floor
POLAR_EXPRESS_SAFETY = 1.01  # X = U / (1.01·‖U‖_F + eps): spectral norm safely below 1


def f32(x: float) -> float:
    """x rounded to fp32, as a Python float. One fp32 operation equals the same operation in double
    rounded to fp32, so f32(1 - f32(b)) is exactly the fp32 expression nanochat evaluates."""
    return torch.tensor(x, dtype=torch.float32).item()


@dataclass
class AdamWParam:
    name: str
    param: torch.Tensor
    lr: float
    betas: tuple[float, float]
    eps: float
    weight_decay: float
    rows: tuple[int, int]  # the slice of dim 0 this rank updates (all rows when replicated)
    sliced: bool
    state: dict[str, torch.Tensor] = field(default_factory=dict)  # exp_avg, exp_avg_sq
    step: int = 0  # a host integer: no device sync for the bias corrections (the checkpoint stores it)


@dataclass
class MuonGroup:
    name: str
    names: list[str]
    params: list[torch.Tensor]
    lr: float
    shape_factor: float  # sqrt(max(1, rows/cols)): multiplies the update and the decay
    beta2: float
    owned: range  # indices (into names) this rank updates
    chunk: int  # ceil(K / W): matrices per rank after padding
    state: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)  # by name


def polar_express(X: torch.Tensor, coefficients: list[list[float]]) -> torch.Tensor:
    """Orthogonalise each (rows, cols) matrix of X (k, rows, cols), already scaled below spectral norm 1."""
    tall = X.size(-2) > X.size(-1)
    for a, b, c in coefficients:
        if tall:
            A = X.mT @ X
            X = a * X + X @ (b * A + c * (A @ A))
        else:
            A = X @ X.mT
            X = a * X + (b * A + c * (A @ A)) @ X
    return X


def muon_direction(G: torch.Tensor, M: torch.Tensor, S: torch.Tensor, momentum: float, beta2: float,
                   coefficients: list[list[float]], ns_dtype: torch.dtype) -> torch.Tensor:
    """The Muon update direction for stacked gradients G (k, rows, cols); updates M and S in place.

    Nesterov -> MuonEq (row equilibration) -> Polar Express -> Muon+ (Frobenius renormalisation to
    sqrt(min(rows, cols))) -> NorMuon (factored second moment; the Frobenius norm is kept).
    """
    rows, cols = G.shape[-2:]
    mu = f32(momentum)
    M.lerp_(G, f32(1 - mu))
    U = G.lerp(M, mu).to(ns_dtype)
    tau = torch.linalg.vector_norm(U, dim=(-2, -1), keepdim=True) / math.sqrt(rows)
    U = U * (tau / torch.linalg.vector_norm(U, dim=-1, keepdim=True).clamp_min(EPS_NORM))
    X = U / (POLAR_EXPRESS_SAFETY * torch.linalg.vector_norm(U, dim=(-2, -1), keepdim=True) + EPS_NORM)
    X = polar_express(X, coefficients).float()
    X = X * (math.sqrt(min(rows, cols)) / torch.linalg.vector_norm(X, dim=(-2, -1), keepdim=True).clamp_min(EPS_NORM))
    dim = -1 if rows >= cols else -2  # per row for tall/square matrices, per column for wide ones
    n = X.size(dim)
    q = (X * X).mean(dim=dim, keepdim=True)
    nu = (n * q.sum(dim=(-2, -1), keepdim=True)).sqrt()
    S.lerp_(q, f32(1 - f32(beta2)))
    s = S.clamp_min(EPS_SECOND_MOMENT).rsqrt()
    nu2 = (n * q * s * s).sum(dim=(-2, -1), keepdim=True).sqrt()
    return X * s * (nu / nu2.clamp_min(EPS_SECOND_MOMENT))


class MuonAdamW:
    """nanochat's MuonAdamW over a model's named parameters, with the plan's groups."""

    def __init__(self, model: torch.nn.Module, settings: dict, world_size: int = 1, rank: int = 0,
                 ns_dtype: torch.dtype = torch.float32):
        self.settings, self.world_size, self.rank, self.ns_dtype = settings, world_size, rank, ns_dtype
        self.params = dict(model.named_parameters())
        for p in self.params.values():
            p.grad = torch.zeros_like(p)  # full-size gradients on every rank, accumulated in place
        W = world_size
        self.adamw: list[AdamWParam] = []
        for g in settings["adamw_groups"]:
            for name in g["params"]:
                p = self.params[name]
                sliced = p.numel() >= ADAMW_SCATTER_MIN_NUMEL and W > 1
                if sliced and p.size(0) % W:
                    raise ValueError(f"{name}: {p.size(0)} rows do not split over {W} ranks")
                per = p.size(0) // W if sliced else p.size(0)
                lo = rank * per if sliced else 0
                self.adamw.append(AdamWParam(name, p, g["lr"], tuple(g["betas"]), g["eps"], g["weight_decay"],
                                             (lo, lo + per), sliced))
        self.muon: list[MuonGroup] = []
        for g in settings["muon_groups"]:
            k = len(g["params"])
            chunk = -(-k // W)
            owned = range(min(rank * chunk, k), min((rank + 1) * chunk, k))
            self.muon.append(MuonGroup(g["name"], list(g["params"]), [self.params[n] for n in g["params"]],
                                       g["lr"], g["lr_shape_factor"], g["beta2"], owned, chunk))
        self.coefficients = settings["polar_express_coefficients"]
        # where each tensor's state lives, for the checkpoint's meta (the planner's layout, §10)
        self.owners = {a.name: "sliced" if a.sliced else "replicated" for a in self.adamw}
        for grp in self.muon:
            for i, n in enumerate(grp.names):
                self.owners[n] = i // grp.chunk

    def zero_grad(self) -> None:
        for p in self.params.values():
            p.grad.zero_()

    def broadcast_weights(self, src: int = 0) -> None:
        for p in self.params.values():
            dist.broadcast(p.data, src=src)

    # -- the step -------------------------------------------------------------------------------------

    def _reduce_scatter(self, full: torch.Tensor, out: torch.Tensor) -> None:
        dist.reduce_scatter_tensor(out, full, op=dist.ReduceOp.SUM)
        out.mul_(1.0 / self.world_size)  # the mean over ranks (gloo has no AVG)

    @torch.no_grad()
    def step(self, step: int, total_steps: int) -> tuple[torch.Tensor, float]:
        """One optimizer step after the last micro-step's backward. Returns (gradient norm, lr multiplier)."""
        s = self.settings
        lrm = lr_multiplier(step, total_steps, s["warmup_steps"], s["warmdown_ratio"], s["final_lr_frac"])
        momentum = muon_momentum(step, total_steps, s["warmdown_ratio"])
        wd_t = muon_weight_decay(step, total_steps, s["muon_weight_decay"])
        W = self.world_size
        sq = torch.zeros((), dtype=torch.float32, device=next(iter(self.params.values())).device)
        for a in self.adamw:
            g = a.param.grad
            if a.sliced:
                lo, hi = a.rows
                mine = torch.empty_like(g[lo:hi])
                self._reduce_scatter(g, mine)
                g = mine
            elif W > 1:
                dist.all_reduce(g)
                g.mul_(1.0 / W)
            if a.sliced or self.rank == 0:  # replicated gradients counted once
                sq += g.float().pow(2).sum()
            self._adamw_update(a, g, a.lr * lrm)
            if a.sliced:
                lo, hi = a.rows
                dist.all_gather_into_tensor(a.param.data, a.param.data[lo:hi].clone())
        for grp in self.muon:
            sq += self._muon_step(grp, grp.lr * lrm, momentum, wd_t)
        if W > 1:
            dist.all_reduce(sq)
        return sq.sqrt(), lrm

    def _adamw_update(self, a: AdamWParam, g: torch.Tensor, lr: float) -> None:
        lo, hi = a.rows
        p = a.param.data[lo:hi]
        st = a.state
        if not st:
            st["exp_avg"] = torch.zeros_like(p)
            st["exp_avg_sq"] = torch.zeros_like(p)
        a.step += 1
        t = a.step
        lr_t, wd, eps = f32(lr), f32(a.weight_decay), f32(a.eps)
        b1, b2 = f32(a.betas[0]), f32(a.betas[1])
        p.mul_(f32(1 - f32(lr_t * wd)))  # decoupled decay on the pre-update value, with the scheduled lr
        m, v = st["exp_avg"], st["exp_avg_sq"]
        m.lerp_(g, f32(1 - b1))
        v.lerp_(g * g, f32(1 - b2))
        bias1, bias2 = f32(1 - f32(b1 ** t)), f32(1 - f32(b2 ** t))
        denom = (v / bias2).sqrt() + eps
        p.add_(m / denom, alpha=-f32(lr_t / bias1))

    def _muon_step(self, grp: MuonGroup, lr: float, momentum: float, wd: float) -> torch.Tensor:
        """Reduce-scatter the stacked gradients, update the owned matrices, all-gather. Returns the squared
        norm of the owned (averaged) gradients."""
        W = self.world_size
        ref = grp.params[0]
        rows, cols = ref.shape
        if W > 1:
            stacked = torch.zeros((grp.chunk * W, rows, cols), dtype=ref.grad.dtype, device=ref.device)
            torch.stack([p.grad for p in grp.params], out=stacked[:len(grp.params)])
            G = torch.empty((grp.chunk, rows, cols), dtype=ref.grad.dtype, device=ref.device)
            self._reduce_scatter(stacked, G)
            G = G[:len(grp.owned)]
        else:
            G = torch.stack([p.grad for p in grp.params])
        P = torch.stack([grp.params[i].data for i in grp.owned]) if len(grp.owned) else G.new_zeros((0, rows, cols))
        sq = G.float().pow(2).sum()
        if len(grp.owned):
            M, S = self._muon_state(grp, rows, cols, G)
            X = muon_direction(G.float(), M, S, momentum, grp.beta2, self.coefficients, self.ns_dtype)
            eta = f32(lr * grp.shape_factor)
            mask = (X * P >= 0).to(P.dtype)  # cautious: decay only where the update agrees in sign
            P = P - (eta * X + f32(eta * f32(wd)) * P * mask)
            self._store_muon_state(grp, M, S)
        if W > 1:
            out = torch.zeros((grp.chunk * W, rows, cols), dtype=ref.dtype, device=ref.device)
            mine = torch.zeros((grp.chunk, rows, cols), dtype=ref.dtype, device=ref.device)
            mine[:len(grp.owned)] = P
            dist.all_gather_into_tensor(out, mine)
            for i, p in enumerate(grp.params):
                p.data.copy_(out[i])
        else:
            for i, p in zip(grp.owned, P.unbind(0)):
                grp.params[i].data.copy_(p)
        return sq

    def _muon_state(self, grp: MuonGroup, rows: int, cols: int, G: torch.Tensor):
        second = (rows, 1) if rows >= cols else (1, cols)
        ms, ss = [], []
        for i in grp.owned:
            st = grp.state.setdefault(grp.names[i], {})
            if not st:
                st["momentum_buffer"] = torch.zeros((rows, cols), dtype=torch.float32, device=G.device)
                st["second_momentum_buffer"] = torch.zeros(second, dtype=torch.float32, device=G.device)
            ms.append(st["momentum_buffer"])
            ss.append(st["second_momentum_buffer"])
        return torch.stack(ms), torch.stack(ss)

    @staticmethod
    def _store_muon_state(grp: MuonGroup, M: torch.Tensor, S: torch.Tensor) -> None:
        for j, i in enumerate(grp.owned):
            st = grp.state[grp.names[i]]
            st["momentum_buffer"].copy_(M[j])
            st["second_momentum_buffer"].copy_(S[j])

    # -- checkpointing: by parameter name (AdamW slices by row range), so any world size can load it ---

    def resident_state(self) -> list[torch.Tensor]:
        """Every optimizer-state tensor this rank holds (replicated AdamW state included): what the
        planner's optimizer_state_per_rank counts."""
        tensors = [t for a in self.adamw for t in a.state.values()]
        return tensors + [t for grp in self.muon for st in grp.state.values() for t in st.values()]

    def state_shard(self) -> dict[str, dict[str, torch.Tensor]]:
        out: dict[str, dict[str, torch.Tensor]] = {}
        for a in self.adamw:
            if a.state:  # replicated state on every rank too: a same-size resume reads only its own file
                lo, hi = a.rows
                out[f"{a.name}@{lo}:{hi}"] = {"step": torch.tensor(float(a.step)), **a.state}
        for grp in self.muon:
            for i in grp.owned:
                if grp.names[i] in grp.state:
                    out[grp.names[i]] = dict(grp.state[grp.names[i]])
        return out

    def load_state_shards(self, state: dict[str, dict[str, torch.Tensor]]) -> None:
        """Load this rank's state from a union of shards written by any world size."""
        for a in self.adamw:
            pieces = {}  # first row -> (last row, state): the saved slices of this tensor, any world size
            for key, value in state.items():
                name, _, rows = key.partition("@")
                if name == a.name and rows:
                    lo_k, hi_k = (int(x) for x in rows.split(":"))
                    pieces[lo_k] = (hi_k, value)
            if not pieces:
                continue
            lo, hi = a.rows
            first = next(iter(pieces.values()))[1]
            a.step = int(first["step"].item())
            a.state = {}
            for key in ("exp_avg", "exp_avg_sq"):
                mine = torch.empty((hi - lo, *a.param.shape[1:]), dtype=a.param.dtype, device=a.param.device)
                covered = 0
                for lo_k, (hi_k, value) in pieces.items():  # copy the rows of [lo, hi) each slice holds
                    a0, a1 = max(lo, lo_k), min(hi, hi_k)
                    if a0 < a1:
                        mine[a0 - lo:a1 - lo].copy_(value[key][a0 - lo_k:a1 - lo_k])
                        covered += a1 - a0
                if covered != hi - lo:
                    raise ValueError(f"{a.name}: the checkpoint holds {covered} of rows {lo}:{hi}")
                a.state[key] = mine
        for grp in self.muon:
            for i in grp.owned:
                entry = state.get(grp.names[i])
                if entry is not None:
                    grp.state[grp.names[i]] = {k: v.to(dtype=torch.float32, device=grp.params[i].device, copy=True)
                                               for k, v in entry.items()}
