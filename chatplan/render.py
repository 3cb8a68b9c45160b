"""Rendering: Rich tables in a terminal, Markdown/plain through tabulate, JSON.

Rich and tabulate are imported inside the functions that need them, so the `--json` path stays fast.
Numbers follow nanochat's conventions where it has one (FLOPs as `1.207960e+10`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from chatplan.memory import GIB
from chatplan.plan import Plan
from chatplan.validate import Check

Section = tuple[str, list[tuple[str, str]]]


def console():
    """A Rich console on stdout whose broken pipe (`chatplan ... | head`) reaches the CLI edge as
    BrokenPipeError (Rich itself would exit 1, which `check` uses for "limit exceeded")."""
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:
            self.quiet = True
            raise BrokenPipeError

    return _Console()


def sci(x: float) -> str:
    return f"{x:e}"


def gib(n: float) -> str:
    return f"{n / GIB:,.2f} GiB"


def hours(h: float) -> str:
    return f"{h:,.2f} h" if h < 48 else f"{h:,.1f} h ({h / 24:,.1f} days)"


def _pm(p: Plan, figure: str, unit: str, prefix: str = "", digits: int = 2) -> str:
    """' ± 6.62 GiB': half the width of a figure's error band (chatplan.accuracy), to the figure's digits."""
    b = p.bands.get(figure)
    return f" ± {prefix}{(b['high'] - b['low']) / 2:,.{digits}f}{unit}" if b else ""


def plan_sections(p: Plan) -> list[Section]:
    s, c, h, m, t, d, f = p.shape, p.params, p.horizon, p.memory, p.time, p.data, p.fleet
    gpu = f.gpu
    sections: list[Section] = []
    sample = p.data_source == "sample"
    if sample and p.tier is not None:
        sections.append((f"Tier {p.tier.name}", [
            ("preset", f"depth {p.depth}, context {s.sequence_len}, vocab {s.vocab_size:,}, batch "
                       f"{p.parallelism.device_batch_size}, fp32, on {f.label}"),
            ("data", "the embedded sample corpus (chatplan data sample): no download"),
            ("predicted time", hours(t.pretrain_hours)),
        ]))
    elif p.tier is not None:
        sections.append((f"Tier ${p.tier.name}", [
            ("preset", f"depth {p.tier.depth} on {p.tier.gpus}" + (f" ({p.tier.note})" if p.tier.note else "")),
            ("predicted pretraining cost", f"${t.cost_usd:,.0f} ({hours(t.pretrain_hours)})"),
            ("tier budget (end to end)", f"${p.tier.budget_usd:,.0f} (~{p.tier.budget_hours:g} h)"),
            ("difference", f"${p.tier.budget_usd - t.cost_usd:,.0f}: stages chatplan does not run "
                           "(tokenizer, SFT, evals)"),
        ]))
    if p.budget is not None:
        b = p.budget
        nxt = (f"depth {b.next_depth} would cost ${b.next_cost_usd:,.0f}" if b.next_depth and b.next_cost_usd
               else "no deeper model fits in memory")
        sections.append((f"Budget ${b.usd:,.0f}", [
            ("largest depth within budget", f"{b.chosen_depth} (${b.chosen_cost_usd:,.0f})"),
            ("next valid depth", nxt),
        ]))
    if p.target is not None:
        tg = p.target
        sections.append(("Target quality", [
            ("wanted", tg.describe()),
            ("cheapest on the grid", f"depth {tg.chosen_depth}, data ratio {tg.chosen_ratio:g}: "
                                     f"${tg.chosen_cost_usd:,.2f} ({hours(t.pretrain_hours)})"),
            ("searched", f"depths {tg.depths[0]}-{tg.depths[1]} x ratios {tg.ratios[0]:g}-{tg.ratios[1]:g} "
                         f"({tg.plans_evaluated} plans)"),
        ]))
    if p.forecast is not None:
        sections.append(("Capability forecast (published nanochat runs)", forecast_rows(p.forecast)))
    model = [
        ("architecture", f"{p.arch.name} (nanochat {p.arch.nanochat_commit})"),
        ("depth (layers)", f"{s.n_layer}"),
        ("model dim", f"{s.n_embd:,}"),
        ("heads / kv heads / head dim", f"{s.n_head} / {s.n_kv_head} / {s.head_dim}"),
        ("MLP hidden", f"{s.mlp_hidden:,}"),
        ("vocab / context", f"{s.vocab_size:,} / {s.sequence_len:,}"
         + (f" (padded to {s.padded_vocab_size:,})" if s.padded_vocab_size != s.vocab_size else "")),
    ]
    if s.window_pattern != "L":
        short = min(s.window_sizes)
        model.append(("attention windows", f"{s.window_pattern}: {s.window_sizes.count(short)} layers of {short:,}, "
                                           f"{len(s.window_sizes) - s.window_sizes.count(short)} full"))
    if s.value_embed_layers:
        model.append(("value-embedding layers", f"{len(s.value_embed_layers)} of {s.n_layer}"))
    sections.append(("Model", model))
    sections.append(("Parameters", [(key.replace("_", " "), f"{n:,}") for key, n in c.groups]
                     + ([("scaling (what the ratio counts)", f"{c.scaling:,}")] if c.scaling != c.total else [])))
    sections.append(("Compute and horizon", [
        ("FLOPs per token", sci(p.flops_per_token)),
        ("steps", f"{h.steps:,} (from {h.source.replace('_', ' ')})"),
        ("total batch", f"{h.total_batch_size:,} tokens" + (" (automatic)" if p.total_batch_source == "auto"
                                                            and p.arch.name != "nanochat-2025" else "")),
        ("tokens", f"{h.tokens:,}"),
        ("tokens : params", f"{h.tokens_per_param:.2f}"),
        ("total FLOPs", sci(h.total_flops)),
    ]))
    par = p.parallelism
    pr = p.precision
    sections.append(("Precision", [
        ("compute / matmuls", f"{pr.compute_dtype} / {pr.matmul_dtype}"),
        ("embeddings / masters", f"{pr.embedding_dtype} / {pr.master_dtype}"),
        ("loss", "fused chunked cross-entropy" if pr.fused_loss else "soft-capped cross-entropy on fp32 logits"),
        ("compile / attention", f"{'torch.compile' if pr.compile else 'eager'} / {pr.attention_kernel}"),
    ]))
    sections.append(("Fleet and batch", [
        ("fleet", f"{f.num_gpus} x {gpu.name} ({f.nodes} node{'s' if f.nodes > 1 else ''} x "
                  f"{f.gpus_per_node})"),
        ("GPU", f"{gpu.description}: {gpu.peak_flops / 1e12:,.0f} TFLOP/s dense bf16, "
                f"{gpu.memory_gib:.2f} GiB torch-visible"),
        ("device batch size", f"{par.device_batch_size} ({par.batch_source}; largest power of two not oom)"
         if par.batch_source == "auto" else f"{par.device_batch_size} (user)"),
        ("grad accumulation", f"{par.grad_accum_steps}"),
    ]))
    if p.optimizer.get("facts"):
        sections.append(("Optimizer (as nanochat prints it)", [
            (key.replace("_line", "").replace("_", " "), value) for key, value in p.optimizer["facts"].items()
            if key.endswith("_line") or key == "wardown" or key == "warmdown"]))
    sections.append(("Memory per GPU (most-loaded rank)", [
        ("weights", gib(m.weights)),
        ("gradients (full on every rank)", gib(m.gradients)),
        ("optimizer state (this rank's shard)", gib(m.optimizer_state)),
        ("low-precision weight copies", gib(m.autocast_weight_copies)),
        ("activations saved for backward", gib(m.activations)),
        ("logits path (loss)", gib(m.logits)),
        ("optimizer-step transient", gib(m.optimizer_step_transient)),
        ("allocator reserve", gib(m.allocator_reserve)),
        ("CUDA context", gib(m.cuda_context)),
        ("peak allocated (max_memory_allocated)" if f.gpu.device_type == "cuda" else "peak allocated (tensors)",
         f"{m.peak_allocated_gib:,.2f} GiB at {m.peak_moment}"),
        ("peak device (nvidia-smi)" if f.gpu.device_type == "cuda" else "peak per process (of its RAM share)",
         f"{m.peak_device_gib:,.2f} GiB{_pm(p, 'peak_device_gib', '')} of {m.capacity_gib:,.2f}"),
        ("verdict", f"{m.verdict} (headroom {m.headroom_gib:,.2f} GiB; tight within {m.margin_gib:.2f})"),
    ]))
    st = p.step
    sections.append(("Time and cost", [
        ("calibration", p.calibration.status),
        ("MFU", f"{t.mfu:.4f} ({t.mfu_source}" + (
            f"; model: compute {st.compute_s * 1e3:,.0f} ms + memory-bound {st.memory_s * 1e3:,.0f} + "
            f"overhead {st.overhead_s * 1e3:,.0f} + optimizer {st.optimizer_s * 1e3:,.0f} + "
            f"intra-node sync {st.intra_node_comm_s * 1e3:,.0f} ms/step)" if t.mfu_source == "predicted"
            else f"; the model alone predicts {st.mfu:.4f})")),
        ("step time", f"{t.step_seconds * 1e3:,.0f} ms"),
        ("throughput", f"{t.tokens_per_second:,.0f} tok/s"),
        ("train", hours(t.train_hours) + _pm(p, "train_hours", " h", digits=2 if t.train_hours < 48 else 1)),
        ("eval", f"{hours(t.eval_hours)} ({t.eval_passes} passes of {p.eval_tokens:,} tokens)"),
        ("inter-node communication", hours(t.communication_hours)),
        ("pretraining", hours(t.pretrain_hours)),
        ("GPU-hours", f"{t.gpu_hours:,.1f}"),
        ("price", f"${t.price_per_gpu_hour:,.2f}/GPU-h ({gpu.price_note()})"
         if p.request.price is None else f"${t.price_per_gpu_hour:,.2f}/GPU-h (user)"),
        ("cost", f"${t.cost_usd:,.2f}" + _pm(p, "cost_usd", "", "$")),
    ]))
    published = f" (published recipe: {d.published_download})" if d.published_download else ""
    if sample:
        return sections
    sections.append(("Data", [
        ("training shards needed", f"{d.train_shards_needed:,}"),
        ("recommended download", f"{d.download_shards:,} + validation {d.validation_shard}{published}"),
        ("characters", f"{d.characters:.3e} at {d.chars_per_token} chars/token"),
        ("download size", f"{d.download_bytes / 1e9:,.1f} GB"),
        ("epochs over the dataset", f"{d.epochs:.3f}"),
    ]))
    return sections


def forecast_rows(fc) -> list[tuple[str, str]]:
    """A plan's forecast: the two figures with their bands, the nearest published run, where it extrapolates."""
    from chatplan.forecast import GPT2_CORE

    near = fc.nearest()
    rows = [("val bpb", f"{fc.val_bpb:.4f} \u00b1 {fc.bpb_half:.4f} ({fc.fit.groups[fc.group].dataset} val shard)"),
            ("CORE", f"{fc.core:.4f} \u00b1 {fc.core_half:.4f} (GPT-2 1.5B: {GPT2_CORE}; "
                     f"{'reaches it' if fc.core >= GPT2_CORE else 'below it'})"),
            ("nearest published", near.describe() if near else "-")]
    notes = fc.extrapolation()
    rows += [("extrapolates", n + (f" (band x{fc.widen:.2f})" if i == 0 else "")) for i, n in enumerate(notes)]
    if not notes:
        rows.append(("range", f"inside the published {fc.fit.groups[fc.group].dataset} runs"))
    return rows


def render_sections(sections: Sequence[Section], fmt: str, title: str, warnings: Sequence[str] = (),
                    notes: Sequence[str] = ()) -> None:
    if fmt == "rich":
        from rich.table import Table

        table = Table(title=title, show_header=False, title_justify="left", expand=False)
        table.add_column(style="bold")
        table.add_column()
        for i, (name, rows) in enumerate(sections):
            table.add_row(f"[cyan]{name}[/cyan]", "", end_section=False)
            for j, (label, value) in enumerate(rows):
                table.add_row(f"  {label}", value, end_section=(j == len(rows) - 1 and i < len(sections) - 1))
        out = console()
        out.print(table)
        for n in notes:
            out.print(f"[bold]note:[/bold] {n}")
        for w in warnings:
            out.print(f"[bold yellow]warning:[/bold yellow] {w}")
        return
    from tabulate import tabulate

    tablefmt = "github" if fmt == "markdown" else "plain"
    out = [f"# {title}" if fmt == "markdown" else title, ""]
    for name, rows in sections:
        out.append(f"## {name}" if fmt == "markdown" else f"[{name}]")
        out.append(tabulate(rows, headers=["item", "value"] if fmt == "markdown" else (), tablefmt=tablefmt))
        out.append("")
    out.extend(f"note: {n}" for n in notes)
    out.extend(f"warning: {w}" for w in warnings)
    sys.stdout.write("\n".join(out).rstrip() + "\n")


def render_grid(headers: list[str], rows: list[list[str]], fmt: str, title: str, note: str = "") -> None:
    if fmt == "rich":
        from rich.table import Table

        table = Table(title=title, title_justify="left", caption=note or None, caption_justify="left")
        for h in headers:
            table.add_column(h, justify="right" if h != headers[0] else "left")
        for row in rows:
            table.add_row(*[_colour(v) for v in row])
        console().print(table)
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



def fit_table(grid: dict) -> tuple[list[str], list[list[str]], str, str]:
    """The `fit` grid as (headers, rows, title, note)."""
    batches = [c["device_batch_size"] for c in grid["fleets"][0]["batches"]] if grid["fleets"] else []
    headers = ["GPU (GiB)"] + [f"B={b}" for b in batches]
    rows = [[f"{r['gpu']} ({r['capacity_gib']:.1f})"]
            + [f"{c['peak_device_gib']:.1f} {c['verdict']}" + ("" if c["divides_total_batch"] else "*")
               for c in r["batches"]] for r in grid["fleets"]]
    title = f"chatplan fit: d{grid['depth']} ({grid['arch']}), T {grid['seq_len']:,}, {grid['assumption']}"
    note = ("peak_device_gib (nvidia-smi comparable) per GPU; * = batch does not divide "
            f"{grid['total_batch_size']:,} tokens / (T x GPUs)")
    return headers, rows, title, note


def compare_table(docs: list[dict], by: str, max_hours: float | None) -> tuple[list[str], list[list[str]], str]:
    """The `compare` ranking as (headers, rows, title)."""
    depths = sorted({d["depth"] for d in docs if "depth" in d})
    model = f"d{depths[0]}" if len(depths) == 1 else "the depth each fleet's budget or target chooses"
    title = f"chatplan compare: {model} by {by}" + (f", done within {max_hours:g} h first" if max_hours else "")
    table = []
    for rank, d in enumerate(docs, 1):
        if "cost_usd" not in d:
            table.append([str(rank), d["fleet"], "-", "-", d["verdict"], "-", "-", "-", "-", d["problem"][:60]])
            continue
        late = max_hours is not None and d["pretrain_hours"] > max_hours
        fc = d["forecast"]
        core = "-" if fc is None else (f"{fc['core']['value']:.3f} \u00b1 "
                                       f"{(fc['core']['high'] - fc['core']['low']) / 2:.3f}"
                                       + ("*" if fc["extrapolates"] else ""))
        table.append([str(rank), d["fleet"], str(d["depth"]), f"{d['data_ratio']:g}", d["verdict"],
                      f"{d['device_batch_size']} x {d['grad_accum_steps']}",
                      f"{d['pretrain_hours']:,.2f}" + (" (late)" if late else ""), f"${d['cost_usd']:,.0f}", core,
                      f"MFU {d['mfu']:.3f}"])
    return ["#", "fleet", "depth", "ratio", "verdict", "batch x accum", "hours", "cost", "CORE (forecast)", "note"], \
        table, title


def validation_table(checks: list[Check], bars: bool = True) -> tuple[list[str], list[list[str]], str]:
    """`validate`'s rows: run, figure, predicted, measured, relative error, verdict (FIELD's bar; without
    `bars`, for the held-out runs, whether that bar would hold)."""
    def fmt(v):
        return v if isinstance(v, str) else f"{v:,.1f}"

    def verdict(c: Check) -> str:
        if not bars:
            if c.bar is None:
                return "same" if c.ok else "differs"
            return ("within" if c.ok else "outside") + f" ±{c.bar:.0%}"
        return ("ok" if c.ok else "MISS") + (f" (±{c.bar:.0%})" if c.bar else "")

    rows = [[c.row, c.figure, fmt(c.predicted), fmt(c.measured),
             "-" if c.relative_error is None else f"{c.relative_error:+.1%}", verdict(c)] for c in checks]
    return ["run", "figure", "predicted", "measured", "error", "verdict"], rows, "chatplan validate: FIELD runs"
