"""Rendering: Rich tables in a terminal, Markdown/plain through tabulate, JSON.

Rich and tabulate are imported inside the functions that need them, so the `--json` path stays fast.
Numbers follow nanochat's conventions where it has one (FLOPs as `1.207960e+10`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from chatplan.memory import GIB
from chatplan.plan import Plan

Section = tuple[str, list[tuple[str, str]]]


def sci(x: float) -> str:
    return f"{x:e}"


def gib(n: float) -> str:
    return f"{n / GIB:,.2f} GiB"


def hours(h: float) -> str:
    return f"{h:,.2f} h" if h < 48 else f"{h:,.1f} h ({h / 24:,.1f} days)"


def plan_sections(p: Plan) -> list[Section]:
    s, c, h, m, t, d, f = p.shape, p.params, p.horizon, p.memory, p.time, p.data, p.fleet
    gpu = f.gpu
    sections: list[Section] = []
    tiny = p.tier is not None and p.tier.name == "tiny"
    if tiny:
        sections.append(("Tier tiny", [
            ("preset", f"depth {p.depth}, context {s.sequence_len}, vocab {s.vocab_size:,}, batch "
                       f"{p.parallelism.device_batch_size}, fp32, on {f.label}"),
            ("data", "the embedded sample corpus (chatplan data sample): no download"),
            ("predicted time", hours(t.pretrain_hours)),
        ]))
    elif p.tier is not None:
        sections.append((f"Tier ${p.tier.name}", [
            ("preset", f"depth {p.tier.depth} on {p.tier.gpus}"),
            ("predicted pretraining cost", f"${t.cost_usd:,.0f} ({hours(t.pretrain_hours)})"),
            ("tier budget (end to end)", f"${p.tier.budget_usd:,.0f} (~{p.tier.budget_hours:g} h)"),
            ("difference", f"${p.tier.budget_usd - t.cost_usd:,.0f}: stages chatplan does not run "
                           "(tokenizer, midtraining, SFT, evals)"),
        ]))
    if p.budget is not None:
        b = p.budget
        nxt = (f"depth {b['next_depth']} would cost ${b['next_cost_usd']:,.0f}" if b["next_depth"]
               else "no deeper model fits in memory")
        sections.append((f"Budget ${b['usd']:,.0f}", [
            ("largest depth within budget", f"{b['chosen_depth']} (${b['chosen_cost_usd']:,.0f})"),
            ("next valid depth", nxt),
        ]))
    sections.append(("Model", [
        ("depth (layers)", f"{s.n_layer}"),
        ("model dim", f"{s.n_embd:,}"),
        ("heads / kv heads / head dim", f"{s.n_head} / {s.n_kv_head} / {s.head_dim}"),
        ("MLP hidden", f"{s.mlp_hidden:,}"),
        ("vocab / context", f"{s.vocab_size:,} / {s.sequence_len:,}"),
    ]))
    sections.append(("Parameters", [
        ("wte (embedding)", f"{c.wte:,}"),
        ("lm_head (untied)", f"{c.lm_head:,}"),
        ("attention q / k / v / out", f"{c.attn_q:,} / {c.attn_k:,} / {c.attn_v:,} / {c.attn_out:,}"),
        ("MLP in / out", f"{c.mlp_in:,} / {c.mlp_out:,}"),
        ("non-embedding (all but wte)", f"{c.non_embedding:,}"),
        ("total", f"{c.total:,}"),
    ]))
    sections.append(("Compute and horizon", [
        ("FLOPs per token", sci(p.flops_per_token)),
        ("steps", f"{h.steps:,} (from {h.source.replace('_', ' ')})"),
        ("total batch", f"{h.total_batch_size:,} tokens"),
        ("tokens", f"{h.tokens:,}"),
        ("tokens : params", f"{h.tokens_per_param:.2f}"),
        ("total FLOPs", sci(h.total_flops)),
    ]))
    par = p.parallelism
    sections.append(("Fleet and batch", [
        ("fleet", f"{f.num_gpus} x {gpu.name} ({f.nodes} node{'s' if f.nodes > 1 else ''} x "
                  f"{f.gpus_per_node})"),
        ("GPU", f"{gpu.description}: {gpu.peak_flops / 1e12:,.0f} TFLOP/s dense bf16, "
                f"{gpu.memory_gib:.2f} GiB torch-visible"),
        ("device batch size", f"{par.device_batch_size} ({par.batch_source}; largest power of two not oom)"
         if par.batch_source == "auto" else f"{par.device_batch_size} (user)"),
        ("grad accumulation", f"{par.grad_accum_steps}"),
    ]))
    sections.append(("Memory per GPU (most-loaded rank)", [
        ("weights", gib(m.weights)),
        ("gradients (full on every rank)", gib(m.gradients)),
        ("optimizer state (this rank's shard)", gib(m.optimizer_state)),
        ("autocast bf16 weight copies", gib(m.autocast_weight_copies)),
        ("activations saved for backward", gib(m.activations)),
        ("logits path (loss)", gib(m.logits)),
        ("optimizer-step transient", gib(m.optimizer_step_transient)),
        ("allocator reserve", gib(m.allocator_reserve)),
        ("CUDA context", gib(m.cuda_context)),
        ("peak allocated (max_memory_allocated)" if f.gpu.device_type == "cuda" else "peak allocated (tensors)",
         f"{m.peak_allocated_gib:,.2f} GiB at {m.peak_moment}"),
        ("peak device (nvidia-smi)" if f.gpu.device_type == "cuda" else "peak per process (of its RAM share)",
         f"{m.peak_device_gib:,.2f} GiB of {m.capacity_gib:,.2f}"),
        ("verdict", f"{m.verdict} (headroom {m.headroom_gib:,.2f} GiB; tight within {m.margin_gib:.2f})"),
    ]))
    st = p.step
    sections.append(("Time and cost", [
        ("calibration", (p.calibration or {}).get("status", "uncalibrated")),
        ("MFU", f"{t.mfu:.4f} ({t.mfu_source}" + (
            f"; model: compute {st.compute_s * 1e3:,.0f} ms + memory-bound {st.memory_s * 1e3:,.0f} + "
            f"overhead {st.overhead_s * 1e3:,.0f} + optimizer {st.optimizer_s * 1e3:,.0f} + "
            f"intra-node sync {st.intra_node_comm_s * 1e3:,.0f} ms/step)" if t.mfu_source == "predicted"
            else f"; the model alone predicts {st.mfu:.4f})")),
        ("step time", f"{t.step_seconds * 1e3:,.0f} ms"),
        ("throughput", f"{t.tokens_per_second:,.0f} tok/s"),
        ("train", hours(t.train_hours)),
        ("eval", f"{hours(t.eval_hours)} ({t.eval_passes} passes of {p.eval_tokens:,} tokens)"),
        ("inter-node communication", hours(t.communication_hours)),
        ("pretraining", hours(t.pretrain_hours)),
        ("GPU-hours", f"{t.gpu_hours:,.1f}"),
        ("price", f"${t.price_per_gpu_hour:,.2f}/GPU-h ({gpu.price_note()})"
         if p.inputs.get("price") is None else f"${t.price_per_gpu_hour:,.2f}/GPU-h (user)"),
        ("cost", f"${t.cost_usd:,.2f}"),
    ]))
    published = f" (published recipe: {d.published_download})" if d.published_download else ""
    if tiny:
        return sections
    sections.append(("Data", [
        ("training shards needed", f"{d.train_shards_needed:,}"),
        ("recommended download", f"{d.download_shards:,} + validation {d.validation_shard}{published}"),
        ("characters", f"{d.characters:.3e} at {d.chars_per_token} chars/token"),
        ("download size", f"{d.download_bytes / 1e9:,.1f} GB"),
        ("epochs over the dataset", f"{d.epochs:.3f}"),
    ]))
    return sections


def render_sections(sections: Sequence[Section], fmt: str, title: str, warnings: Sequence[str] = ()) -> None:
    if fmt == "rich":
        from rich.console import Console
        from rich.table import Table

        table = Table(title=title, show_header=False, title_justify="left", expand=False)
        table.add_column(style="bold")
        table.add_column()
        for i, (name, rows) in enumerate(sections):
            table.add_row(f"[cyan]{name}[/cyan]", "", end_section=False)
            for j, (label, value) in enumerate(rows):
                table.add_row(f"  {label}", value, end_section=(j == len(rows) - 1 and i < len(sections) - 1))
        console = Console()
        console.print(table)
        for w in warnings:
            console.print(f"[bold yellow]warning:[/bold yellow] {w}")
        return
    from tabulate import tabulate

    tablefmt = "github" if fmt == "markdown" else "plain"
    out = [f"# {title}" if fmt == "markdown" else title, ""]
    for name, rows in sections:
        out.append(f"## {name}" if fmt == "markdown" else f"[{name}]")
        out.append(tabulate(rows, headers=["item", "value"] if fmt == "markdown" else (), tablefmt=tablefmt))
        out.append("")
    out.extend(f"warning: {w}" for w in warnings)
    sys.stdout.write("\n".join(out).rstrip() + "\n")


def render_grid(headers: list[str], rows: list[list[str]], fmt: str, title: str, note: str = "") -> None:
    if fmt == "rich":
        from rich.console import Console
        from rich.table import Table

        table = Table(title=title, title_justify="left", caption=note or None, caption_justify="left")
        for h in headers:
            table.add_column(h, justify="right" if h != headers[0] else "left")
        for row in rows:
            table.add_row(*[_colour(v) for v in row])
        Console().print(table)
        return
    from tabulate import tabulate

    tablefmt = "github" if fmt == "markdown" else "plain"
    text = tabulate(rows, headers=headers, tablefmt=tablefmt, disable_numparse=True)
    head = f"# {title}" if fmt == "markdown" else title
    sys.stdout.write(f"{head}\n\n{text}\n" + (f"\n{note}\n" if note else ""))


def _colour(value: str) -> str:
    for word, style in (("oom", "red"), ("tight", "yellow"), ("fits", "green")):
        if word in value:
            return f"[{style}]{value}[/{style}]"
    return value


def print_json(doc: object) -> None:
    sys.stdout.write(json.dumps(doc, indent=2) + "\n")
