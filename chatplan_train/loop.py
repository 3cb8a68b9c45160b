"""The training loop: steps, evaluation, checkpoints and the end-of-run report, read top to bottom in run().

Metrics live in metrics.py, choosing/restoring/saving checkpoints in resume.py, the process's place in
the run (Runtime) in comm.py.

One iteration of the loop at step s (s optimizer updates done so far):
  1. evaluate validation bpb when s == 0, s % eval_every == 0, or s is the last step
  2. checkpoint when s % save_every == 0, s is the last step, or a SIGTERM/SIGINT arrived
  3. stop if s is the last step (or a signal arrived)
  4. grad_accum micro-steps forward/backward, then the sharded optimizer step -> s + 1
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from chatplan.errors import InvalidInput
from chatplan_train import checkpoint as ckpt
from chatplan_train import resume
from chatplan_train.comm import Runtime, all_gather_json, broadcast_json, init_runtime  # noqa: F401 - the entry's API
from chatplan_train.config import TrainConfig
from chatplan_train.cpu_peak import cpu_peak_flops, pin_threads
from chatplan_train.loader import Prefetcher, TokenizerLike
from chatplan_train.metrics import Metrics
from chatplan_train.recipe import recipe_for
from chatplan_train.report import build_report, checked_mfu, render_report

SEED = 42
GIB = 2**30
# Threads the data loader's tokenizer encodes with: batch encoding scales to about four, and more would
# take cores from training.
TOKENIZER_THREADS = 4
EMA_BETA = 0.9
KILL_HOOK = "CHATPLAN_TEST_KILL_AFTER_CHECKPOINT"  # tests: SIGKILL right after this step's checkpoint


def autocast_for(cfg: TrainConfig, device: torch.device) -> Callable[[], contextlib.AbstractContextManager]:
    """The plan's precision: the late-2025 trainer casts its matmuls to bf16 through CUDA autocast; the
    2026 policy has autocast off (its Linear casts the weight to the activations' dtype)."""
    if device.type == "cuda" and cfg.precision.autocast:
        return lambda: torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext


@dataclass
class StepResult:
    loss: torch.Tensor  # mean loss over this rank's micro-batches
    grad_norm: torch.Tensor  # global norm of the averaged gradient, before clipping
    lr_mult: float
    position: Any  # data position after the last micro-batch (None for injected batches)


def train_step(model: torch.nn.Module, opt: Any, batches: Iterator, grad_accum: int, step: int,
               total_steps: int, autocast: Callable = contextlib.nullcontext,
               device: torch.device | None = None) -> StepResult:
    """grad_accum micro-steps (loss / grad_accum each, so the sum is the mean), then one optimizer step."""
    loss_sum = None
    position = None
    for _ in range(grad_accum):
        x, y, *rest = next(batches)
        position = rest[0] if rest else None
        if device is not None:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with autocast():
            loss = model(x, y)
        (loss / grad_accum).backward()
        loss_sum = loss.detach() if loss_sum is None else loss_sum + loss.detach()
    grad_norm, mult = opt.step(step, total_steps)
    opt.zero_grad()
    return StepResult(loss_sum / grad_accum, grad_norm, mult, position)


def sync_stats(loss: torch.Tensor, stop: bool, world_size: int) -> tuple[float, bool]:
    """Mean loss over all ranks and whether any rank was asked to stop: one small all-reduce."""
    stats = torch.stack([loss.double(), torch.tensor(float(stop), dtype=torch.float64, device=loss.device)])
    if world_size > 1:
        dist.all_reduce(stats)
        stats[0] /= world_size
    loss_value, stop_value = stats.tolist()
    return loss_value, stop_value > 0


@torch.no_grad()
def evaluate_bpb(model: torch.nn.Module, batches: list, token_bytes: torch.Tensor, world_size: int,
                 autocast: Callable = contextlib.nullcontext) -> float:
    """Bits per byte: sum(nats) / (ln 2 * sum(bytes of target tokens)). Special tokens have 0 bytes and
    their nats are left out too (nanochat's rule), so the figure does not depend on the tokenizer."""
    nats = torch.zeros((), dtype=torch.float64, device=token_bytes.device)
    nbytes = torch.zeros((), dtype=torch.float64, device=token_bytes.device)
    for x, y in batches:
        x, y = x.to(token_bytes.device), y.to(token_bytes.device)
        with autocast():
            loss = model(x, y, reduction="none")  # (B*T,)
        b = token_bytes[y.view(-1)]
        nats += (loss.double() * (b > 0)).sum()
        nbytes += b.sum()
    totals = torch.stack([nats, nbytes])
    if world_size > 1:
        dist.all_reduce(totals)
    return (totals[0] / (math.log(2) * totals[1])).item() if totals[1] > 0 else float("nan")


def _signal_flag() -> dict:
    flag: dict[str, int | None] = {"signal": None}

    def handler(signum, frame):
        flag["signal"] = signum

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, handler)
    return flag


def run(cfg: TrainConfig, rt: Runtime, tokenizer: TokenizerLike, train_paths: list[Path],
        val_path: Path | None) -> tuple[dict | None, int]:
    """Train as the plan says. Returns (report or None on ranks > 0, exit code)."""
    t_wall = time.perf_counter()
    device, W = rt.device, rt.world_size
    # Intra-op threads pinned by one rule before any compute (cpu_peak's docstring): the thread split of a
    # CPU matmul changes its fp32 sums, so a resume must compute with what the run it continues used.
    local_threads = pin_threads(int(os.environ.get("LOCAL_WORLD_SIZE") or W))
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.cuda.reset_peak_memory_stats(device)
    flag = _signal_flag()
    out_dir = cfg.out_dir
    if rt.master:
        out_dir.mkdir(parents=True, exist_ok=True)

    # Peak FLOP/s for MFU. CPU: measured by rank 0 with all ranks' threads (at most the CPUs) while the
    # others wait; the measurement restores rank 0's pinned thread count.
    threads = local_threads
    if W > 1:
        t = torch.tensor([threads])
        dist.all_reduce(t)
        threads = int(t.item())
    if device.type == "cpu":
        peak = cpu_peak_flops(threads) if rt.master else {"flops": 0.0, "method": "", "threads": 0}
        if W > 1:
            peak = broadcast_json(peak)
        peak_flops, peak_method = peak["flops"], f"{peak['method']}, {peak['threads']} threads"
        if peak.get("rejected_cache") and rt.master:
            print(f"note: re-measured the CPU peak: {peak['rejected_cache']}", flush=True)
    else:
        per_gpu = cfg.doc.predictions["peak_flops_per_gpu"]
        peak_flops = per_gpu * W if per_gpu else 0.0
        peak_method = f"plan predictions.peak_flops_per_gpu x {W} GPUs"

    # Model and optimizer of the plan's architecture. Same seed everywhere, then rank 0's weights
    # broadcast to be sure.
    recipe = recipe_for(cfg.doc.arch.name)
    torch.manual_seed(SEED)
    model = recipe.build_model(cfg.shape, device=device, precision=cfg.precision)
    ns_dtype = getattr(torch, cfg.precision.newton_schulz_dtype)
    opt = recipe.make_optimizer(model, cfg, W, rt.rank, ns_dtype)
    if W > 1:
        opt.broadcast_weights()

    start, position, loop_state = 0, recipe.start, {}
    say = print if rt.master else (lambda text: None)
    if cfg.resume:
        d = resume.choose_checkpoint(rt, out_dir, say)
        if d is None:
            say(f"no complete checkpoint in {out_dir / ckpt.CHECKPOINTS}: starting from step 0")
        else:
            start, position, loop_state = resume.restore(cfg, rt, d, model, opt, say)
            say(f"resumed from {d} (step {start})")
            saved_threads = loop_state.get("threads_per_rank")
            if saved_threads is not None and saved_threads != local_threads:
                say(f"note: this resume computes with {local_threads} intra-op threads per rank, the checkpoint "
                    f"was written with {saved_threads}: the run continues, but not bit for bit (OMP_NUM_THREADS)")
        if start > cfg.steps:
            raise InvalidInput(f"the checkpoint is at step {start}, past this run's {cfg.steps} steps")
    metrics = Metrics(out_dir / "metrics.jsonl", rt.master, cfg.steps, start, resume=cfg.resume)
    fwd = torch.compile(model) if cfg.compile else model
    autocast = autocast_for(cfg, device)

    B, T, accum = cfg.device_batch_size, cfg.seq_len, cfg.grad_accum_steps
    threads_tok = max(1, min(TOKENIZER_THREADS, os.cpu_count() or 1))
    source = recipe.train_batches(tokenizer, train_paths, B, T, rt.rank, W, start=position, num_threads=threads_tok)
    if device.type == "cuda":
        source = ((x.pin_memory(), y.pin_memory(), p) for x, y, p in source)
    batches = Prefetcher(source, depth=max(2, accum))
    token_bytes = torch.tensor(tokenizer.token_bytes, dtype=torch.int64, device=device)
    val_batches = None
    fpt = cfg.doc.flops_per_token
    tokens_per_step = cfg.tokens_per_step

    metrics.log({"type": "start", "start_step": start, "steps": cfg.steps, "world_size": W,
                 "device": str(device), "threads": threads, "threads_per_rank": local_threads,
                 "compile": cfg.compile,
                 "peak_flops": peak_flops, "peak_method": peak_method,
                 "predicted": cfg.doc.predictions})
    ema = loop_state.get("ema", 0.0)
    step_seconds: list[float] = []
    last_loss, last_bpb, exit_code = loop_state.get("last_loss"), loop_state.get("last_bpb"), 0
    stop = False
    step = start
    try:
        while True:
            last = step == cfg.steps
            evaluate = cfg.eval_every > 0 and (step % cfg.eval_every == 0 or last) and val_path is not None
            if evaluate and not stop:
                if val_batches is None:
                    val_batches = recipe.validation_batches(tokenizer, val_path, B, T, rt.rank, W, cfg.eval_tokens,
                                                            num_threads=threads_tok)
                t0 = time.perf_counter()
                fwd.eval()
                last_bpb = evaluate_bpb(fwd, val_batches, token_bytes, W, autocast)
                fwd.train()
                metrics.log({"type": "eval", "step": step, "val_bpb": last_bpb,
                             "seconds": time.perf_counter() - t0})
                metrics.say(f"step {step:>6}/{cfg.steps} | val bpb {last_bpb:.4f}")
            if step > start and (last or stop or (cfg.save_every > 0 and step % cfg.save_every == 0)):
                resume.save(cfg, rt, out_dir, step, model, opt, position, {"ema": ema, "last_loss": last_loss,
                                                                       "last_bpb": last_bpb,
                                                                       "threads_per_rank": local_threads})
                metrics.log({"type": "checkpoint", "step": step})
                if os.environ.get(KILL_HOOK) == str(step):
                    os.kill(os.getpid(), signal.SIGKILL)
            if last or stop:
                break

            t0 = time.perf_counter()
            result = train_step(fwd, opt, batches, accum, step, cfg.steps, autocast, device)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            loss, stop = sync_stats(result.loss, flag["signal"] is not None, W)
            dt = time.perf_counter() - t0
            position = result.position
            step_seconds.append(dt)
            ema = EMA_BETA * ema + (1 - EMA_BETA) * loss
            ema_debiased = ema / (1 - EMA_BETA ** (step + 1))
            tok_s = tokens_per_step / dt
            last_loss = loss
            row = {"type": "step", "step": step, "loss": loss, "ema_loss": ema_debiased,
                   "lr_mult": result.lr_mult, "grad_norm": result.grad_norm.item(), "ms": dt * 1000,
                   "tok_per_s": tok_s, "mfu": checked_mfu(fpt * tok_s, peak_flops)[0],
                   "tokens": (step + 1) * tokens_per_step}
            if device.type == "cuda":
                row["max_allocated_gib"] = torch.cuda.max_memory_allocated(device) / GIB
            if not math.isfinite(loss):
                metrics.step(row)
                raise FloatingPointError(f"loss is {loss} at step {step}")
            metrics.step(row)
            step += 1
        if stop:
            sig = flag["signal"]
            saved = "checkpoint saved" if step > start else "nothing new to checkpoint"
            metrics.say(f"stopped by {signal.Signals(sig).name if sig else 'a signal on another rank'} "
                        f"at step {step}; {saved}")
            exit_code = 130
    finally:
        batches.close()

    memory = None
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        memory = {"max_allocated_gib": torch.cuda.max_memory_allocated(device) / GIB,
                  "max_reserved_gib": torch.cuda.max_memory_reserved(device) / GIB,
                  "device_used_gib": (total - free) / GIB}
    report = build_report(cfg.doc, step_seconds=step_seconds, tokens_per_step=tokens_per_step,
                          flops_per_token=fpt, peak_flops=peak_flops, peak_method=peak_method, world_size=W,
                          wall_seconds=time.perf_counter() - t_wall, steps_done=step, memory=memory,
                          final_val_bpb=last_bpb, final_loss=last_loss)
    # Best-fit packing (2026) throws away the cropped tails: the report says how much, summed over ranks.
    packing = None
    if hasattr(position, "tokens_cropped"):
        # taken: tokens that left the document buffer (into rows, or cropped away); the buffer still holds
        # up to 1,000 documents read ahead, which are neither
        taken, cropped = position.tokens_taken, position.tokens_cropped
        if W > 1:
            pairs = all_gather_json([taken, cropped])
            taken, cropped = sum(p[0] for p in pairs), sum(p[1] for p in pairs)
        packing = {"method": "best-fit, BOS-aligned", "tokens_taken": taken, "tokens_cropped": cropped,
                   "cropped_fraction": cropped / taken if taken else 0.0}
        report["packing"] = packing
    # Every rank's weights must be identical after the broadcasts: the report shows each rank's hash.
    digest = ckpt.sha256_tensors(dict(model.named_parameters()))
    report["weights_sha256_per_rank"] = all_gather_json(digest) if W > 1 else [digest]
    if rt.master:
        metrics.log({"type": "report", **report})
        ckpt.save_json(report, out_dir / "report.json")
        for line in render_report(report):
            metrics.say(line)
        if packing is not None:
            metrics.say(f"packing: {packing['tokens_cropped']:,} of {packing['tokens_taken']:,} tokens taken from "
                        f"documents were cropped ({packing['cropped_fraction']:.1%}; nanochat measured 34.6% on "
                        "FineWeb-EDU at T=2048)")
    metrics.close()
    return (report if rt.master else None), exit_code
