"""The `chatplan` command line: thin Typer commands; the planner computes, render.py prints.

Every error reaches the user as one line on stderr and an exit code (see chatplan.errors).
"""

import functools
import inspect
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from chatplan.catalog import DEFAULT_GPUS_PER_NODE
from chatplan.dataplan import DEFAULT_CHARS_PER_SHARD, DEFAULT_CHARS_PER_TOKEN
from chatplan.errors import (
    EXIT_INTERRUPTED,
    EXIT_INVALID,
    EXIT_REQUIREMENT,
    ChatplanError,
    InvalidInput,
)
from chatplan.files import write_json_atomic
from chatplan.horizon import DEFAULT_DATA_RATIO, DEFAULT_TOTAL_BATCH_SIZE
from chatplan.shape import DEFAULT_ASPECT_RATIO, DEFAULT_HEAD_DIM, DEFAULT_SEQ_LEN, DEFAULT_VOCAB_SIZE
from chatplan.timing import DEFAULT_INTER_NODE_GBPS

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Plan, train and check nanochat-style GPT runs: exact sizes, memory fit, time and cost.",
)

FORMATS = ("rich", "markdown", "plain")


def _opt(*names: str, help: str, **kw: Any) -> Any:  # noqa: A002 - typer's own keyword
    return typer.Option(*names, help=help, **kw)


# The planner options, declared once and added to every command that plans (estimate, fit, check,
# compare, run) by `planner_options` below.
PLAN_OPTIONS: list[tuple[str, Any, Any]] = [
    ("depth", int | None, _opt("--depth", "-d", help="Model depth (layers); d = 64 x depth.")),
    ("tier", str | None, _opt("--tier", help="Preset: 100 (d20), 300 (d26), 1000 (d32) on 8xH100.")),
    ("budget", float | None, _opt("--budget", help="Dollars: plan the largest depth whose cost fits.")),
    ("gpus", str | None, _opt("--gpus", help="Fleet, COUNTxGPU: 8xH100, 16xH100, 1xA100-40GB.")),
    ("gpus_per_node", int, _opt("--gpus-per-node", help="GPUs per node (nodes = GPUs / this).")),
    ("nodes", int | None, _opt("--nodes", help="Nodes; must agree with --gpus / --gpus-per-node.")),
    ("aspect_ratio", int, _opt("--aspect-ratio", help="Model dim per layer.")),
    ("head_dim", int, _opt("--head-dim", help="Target head dim (heads = ceil(d / this)).")),
    ("kv_heads", int | None, _opt("--kv-heads", help="Key/value heads (GQA); default = heads.")),
    ("vocab_size", int, _opt("--vocab-size", help="Vocabulary size.")),
    ("seq_len", int, _opt("--seq-len", help="Context length T.")),
    ("total_batch_size", int, _opt("--total-batch-size", help="Tokens per optimizer step.")),
    ("data_ratio", float, _opt("--data-ratio", help="Training tokens per parameter (Chinchilla 20).")),
    ("target_flops", float | None, _opt("--target-flops", help="Total training FLOPs (sets steps).")),
    ("steps", int | None, _opt("--steps", help="Optimizer steps (overrides ratio and FLOPs).")),
    ("device_batch_size", int | None, _opt("--device-batch-size", help="Per-GPU batch (default auto).")),
    ("mfu", float | None, _opt("--mfu", help="Override the predicted MFU (0 < MFU <= 1).")),
    ("price", float | None, _opt("--price", help="$ per GPU-hour (default: catalog).")),
    ("chars_per_token", float, _opt("--chars-per-token", help="Characters per token for shard counts.")),
    ("chars_per_shard", float, _opt("--chars-per-shard", help="Characters per data shard.")),
    ("inter_node_gbps", float, _opt("--inter-node-gbps", help="Inter-node Gb/s per GPU (default 400).")),
    ("gpu_catalog", Path | None, _opt("--gpu-catalog", help="Extra GPU catalog (JSON/TOML); "
                                         "also $CHATPLAN_GPU_CATALOG.")),
    ("calibration", str | None, _opt("--calibration", help="Calibration file, or 'none' (default: "
                                     "$CHATPLAN_CALIBRATION or ~/.config/chatplan/calibration.json).")),
    ("tokenizer", Path | None, _opt("--tokenizer", help="Tokenizer dir: use its measured chars/token")),
]
# Defaults come from the modules that own them (one source of truth); None means "not given".
PLAN_DEFAULTS: dict[str, Any] = {
    "depth": None, "tier": None, "budget": None, "gpus": None, "gpus_per_node": DEFAULT_GPUS_PER_NODE,
    "nodes": None, "aspect_ratio": DEFAULT_ASPECT_RATIO, "head_dim": DEFAULT_HEAD_DIM, "kv_heads": None,
    "vocab_size": DEFAULT_VOCAB_SIZE, "seq_len": DEFAULT_SEQ_LEN, "total_batch_size": DEFAULT_TOTAL_BATCH_SIZE,
    "data_ratio": DEFAULT_DATA_RATIO, "target_flops": None, "steps": None, "device_batch_size": None, "mfu": None,
    "price": None, "chars_per_token": DEFAULT_CHARS_PER_TOKEN, "chars_per_shard": DEFAULT_CHARS_PER_SHARD,
    "inter_node_gbps": DEFAULT_INTER_NODE_GBPS, "gpu_catalog": None, "calibration": None, "tokenizer": None,
}


def planner_options(func):
    """Add the planner options to a command; the command receives them as `plan_args: dict`."""
    sig = inspect.signature(func)
    own = [p for p in sig.parameters.values() if p.name != "plan_args"]
    extra = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=PLAN_DEFAULTS[name],
                          annotation=Annotated[typ, option])
        for name, typ, option in PLAN_OPTIONS
    ]

    @functools.wraps(func)
    def wrapper(**kwargs: Any) -> Any:
        plan_args = {name: kwargs.pop(name) for name, _, _ in PLAN_OPTIONS}
        return func(plan_args=plan_args, **kwargs)

    wrapper.__signature__ = sig.replace(parameters=own + extra)  # type: ignore[attr-defined]
    return wrapper


def make_plan(plan_args: dict, calibration_must_exist: bool = True):
    """Load the catalog (and tokenizer figure) at the edge, then call the pure planner."""
    from chatplan.plan import plan

    return plan(**edge_inputs(plan_args, calibration_must_exist))


def edge_inputs(args: dict, calibration_must_exist: bool = True) -> dict:
    """Turn the file-ish CLI options into the values plan() takes: catalog, calibration, chars/token."""
    from chatplan.calibration import load_calibration
    from chatplan.catalog import load_catalog

    args = dict(args)
    args["catalog"] = load_catalog(args.pop("gpu_catalog"))
    args["calibration"] = load_calibration(args.pop("calibration"), calibration_must_exist)
    tokenizer_dir = args.pop("tokenizer")
    if tokenizer_dir is not None:
        args["chars_per_token"] = measured_chars_per_token(tokenizer_dir)
    return args


def measured_chars_per_token(tokenizer_dir: Path) -> float:
    """The figure `chatplan tokenizer eval` saved beside the tokenizer."""
    from chatplan.tokenizer.evaluate import EVAL_FILE

    path = Path(tokenizer_dir) / EVAL_FILE
    try:
        return float(json.loads(path.read_text())["chars_per_token"])
    except (OSError, KeyError, ValueError):
        raise InvalidInput(f"--tokenizer {str(tokenizer_dir)!r} has no measured chars/token ({path.name}); "
                           "run `chatplan tokenizer eval` first") from None


def output_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise InvalidInput(f"--format {fmt!r} is not one of {', '.join(FORMATS)}")
    return fmt


FormatOpt = Annotated[str, typer.Option("--format", help="rich (terminal table), markdown or plain.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


@app.command()
@planner_options
def estimate(
    plan_args: dict,
    json_out: JsonOpt = False,
    fmt: FormatOpt = "rich",
    save_plan: Annotated[Path | None, typer.Option("--save-plan", help="Write plan.json here.")] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 when the chosen batch is predicted oom.")]
    = False,
) -> None:
    """The plan: exact sizes, FLOPs, horizon, data, memory fit, time and cost."""
    fmt = output_format(fmt)
    p = make_plan(plan_args)
    doc = p.to_dict() if (json_out or save_plan) else None
    if save_plan is not None:
        write_json_atomic(save_plan, doc)
    if json_out:
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    else:
        from chatplan.render import plan_sections, render_sections

        title = f"chatplan: d{p.depth} on {p.fleet.label}"
        render_sections(plan_sections(p), fmt, title, p.warnings)
    for w in p.warnings if json_out else ():
        sys.stderr.write(f"warning: {w}\n")
    if strict and p.memory.verdict == "oom":
        raise ChatplanError(f"device batch size {p.parallelism.device_batch_size} is predicted oom "
                            f"({p.memory.peak_device_gib:.1f} GiB > {p.memory.capacity_gib:.2f} GiB)",
                            EXIT_REQUIREMENT)


FIT_BATCHES = [2**i for i in range(9)]  # 1 ... 256


@app.command()
@planner_options
def fit(plan_args: dict, json_out: JsonOpt = False, fmt: FormatOpt = "rich") -> None:
    """What fits where: peak device memory per GPU for batch 1..256 across GPU types."""
    from chatplan.catalog import check_batch_divides, load_catalog, parse_fleet
    from chatplan.memory import default_mode, estimate_memory
    from chatplan.plan import get_tier
    from chatplan.shape import model_shape

    fmt = output_format(fmt)
    args = dict(plan_args)
    catalog = load_catalog(args["gpu_catalog"])
    depth, gpus = args["depth"], args["gpus"]
    if args["tier"] is not None:
        tier = get_tier(args["tier"])
        if tier.name == "tiny":
            raise InvalidInput("fit compares GPUs; the tiny tier runs on the CPU: use estimate --tier tiny")
        depth, gpus = tier.depth, gpus or tier.gpus
    if depth is None:
        raise InvalidInput("give a depth (--depth D) or a tier (--tier 100|300|1000)")
    shape = model_shape(depth, args["aspect_ratio"], args["head_dim"], args["kv_heads"], args["vocab_size"],
                        args["seq_len"])
    if gpus:
        fleet = parse_fleet(gpus, catalog, args["gpus_per_node"], args["nodes"])
        fleets = [fleet]
        header = f"on the given fleet {fleet.label}"
    else:
        fleets = [parse_fleet(f"8x{g.name}", catalog) for g in catalog.gpus if g.device_type == "cuda"]
        header = "assuming one node of 8 GPUs of each type (pass --gpus to choose)"
    if args["total_batch_size"] < 1:
        raise InvalidInput(f"total batch size must be a positive number of tokens, got {args['total_batch_size']}")
    if gpus:
        check_batch_divides(args["total_batch_size"], shape.sequence_len, fleets[0].num_gpus)
    seqs_per_step = args["total_batch_size"] // args["seq_len"]
    result = []
    for fleet in fleets:
        world = fleet.num_gpus
        mode = default_mode(fleet.gpu.device_type)
        per_rank = max(1, seqs_per_step // world)
        cells = []
        for b in FIT_BATCHES:
            accum = max(1, per_rank // b)
            est = estimate_memory(shape, b, accum, world, fleet.rank_capacity_gib, mode)
            cells.append({"device_batch_size": b, "grad_accum_steps": accum,
                          "divides_total_batch": per_rank % b == 0 and b <= per_rank,
                          "peak_allocated_gib": est.peak_allocated_gib,
                          "peak_device_gib": est.peak_device_gib,
                          "verdict": est.verdict})
        result.append({"gpu": fleet.gpu.name, "num_gpus": world, "capacity_gib": fleet.rank_capacity_gib,
                       "batches": cells})
    if json_out:
        sys.stdout.write(json.dumps({"depth": depth, "seq_len": shape.sequence_len, "assumption": header,
                                     "compares": "peak_device_gib against torch-visible capacity",
                                     "fleets": result}, indent=2) + "\n")
        return
    from chatplan.render import render_grid

    headers = ["GPU (GiB)"] + [f"B={b}" for b in FIT_BATCHES]
    rows = [[f"{r['gpu']} ({r['capacity_gib']:.1f})"]
            + [f"{c['peak_device_gib']:.1f} {c['verdict']}" + ("" if c["divides_total_batch"] else "*")
               for c in r["batches"]] for r in result]
    render_grid(headers, rows, fmt, f"chatplan fit: d{depth}, T {shape.sequence_len:,}, {header}",
                note="peak_device_gib (nvidia-smi comparable) per GPU; * = batch does not divide "
                     f"{args['total_batch_size']:,} tokens / (T x GPUs)")


@app.command()
@planner_options
def check(
    plan_args: dict,
    max_cost: Annotated[float | None, typer.Option("--max-cost", help="Fail above this pretraining cost (USD).")]
    = None,
    max_hours: Annotated[float | None, typer.Option("--max-hours", help="Fail above this pretraining time.")] = None,
    max_gpu_memory_frac: Annotated[float | None, typer.Option(
        "--max-gpu-memory-frac", help="Fail above this share of GPU memory (peak_device_gib / capacity).")] = None,
    min_headroom_gib: Annotated[float | None, typer.Option(
        "--min-headroom-gib", help="Fail with less free GPU memory than this (capacity - peak_device_gib).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """CI budget gate: exit 0 when every limit holds, 1 when any is exceeded, 2 on bad input."""
    from chatplan.checks import run_checks

    p = make_plan(plan_args)
    checks = run_checks(p, max_cost, max_hours, max_gpu_memory_frac, min_headroom_gib)
    failed = [c for c in checks if not c.ok]
    if json_out:
        sys.stdout.write(json.dumps({"plan": {"depth": p.depth, "fleet": p.fleet.label,
                                              "device_batch_size": p.parallelism.device_batch_size},
                                     "checks": [c.to_dict() for c in checks], "ok": not failed}, indent=2) + "\n")
    else:
        for c in checks:
            sys.stdout.write(c.line() + "\n")
        if len(checks) == 1:
            sys.stdout.write("(only the memory fit was checked: add --max-cost, --max-hours, "
                             "--max-gpu-memory-frac or --min-headroom-gib)\n")
    for c in failed:
        sys.stderr.write(f"chatplan: check failed: {c.line()}\n")
    if failed:
        raise typer.Exit(EXIT_REQUIREMENT)


@app.command()
@planner_options
def compare(
    plan_args: dict,
    by: Annotated[str, typer.Option("--by", help="Rank by cost or time.")] = "cost",
    max_hours: Annotated[float | None, typer.Option("--max-hours", help="Fleets done in time rank first.")]
    = None,
    counts: Annotated[str, typer.Option("--counts", help="GPU counts to try, comma separated.")] = "1,8,16,32,64",
    gpu_types: Annotated[str | None, typer.Option("--gpu-types", help="GPU types, comma separated (default: all)")]
    = None,
    json_out: JsonOpt = False,
    fmt: FormatOpt = "rich",
) -> None:
    """Fleets (GPU types x counts) for one model, ranked by cost or time: every row is plan(depth, fleet)."""
    from chatplan.checks import compare_fleets

    fmt = output_format(fmt)
    if plan_args["gpus"] is not None:
        raise InvalidInput("compare tries many fleets: use --gpu-types and --counts instead of --gpus")
    args = edge_inputs({k: v for k, v in plan_args.items() if k != "gpus"})
    try:
        count_list = tuple(int(c) for c in counts.split(","))
    except ValueError:
        raise InvalidInput(f"--counts {counts!r} must be comma-separated integers, e.g. 1,8,16") from None
    names = [g.strip() for g in gpu_types.split(",")] if gpu_types else None
    rows = compare_fleets(by=by, gpu_names=names, counts=count_list, max_hours=max_hours, **args)
    docs = [r.to_dict() for r in rows]
    if json_out:
        sys.stdout.write(json.dumps({"by": by, "max_hours": max_hours, "rows": docs}, indent=2) + "\n")
        return
    from chatplan.render import render_grid

    depths = sorted({d["depth"] for d in docs if "depth" in d})
    model = f"d{depths[0]}" if len(depths) == 1 else "the largest depth each fleet's budget buys"
    title = f"chatplan compare: {model} by {by}" + (f", done within {max_hours:g} h first" if max_hours else "")
    table = []
    for rank, d in enumerate(docs, 1):
        if "cost_usd" not in d:
            table.append([str(rank), d["fleet"], "-", d["verdict"], "-", "-", "-", d["problem"][:60]])
            continue
        late = max_hours is not None and d["pretrain_hours"] > max_hours
        table.append([str(rank), d["fleet"], str(d["depth"]), d["verdict"],
                      f"{d['device_batch_size']} x {d['grad_accum_steps']}",
                      f"{d['pretrain_hours']:,.2f}" + (" (late)" if late else ""), f"${d['cost_usd']:,.0f}",
                      f"MFU {d['mfu']:.3f}"])
    render_grid(["#", "fleet", "depth", "verdict", "batch x accum", "hours", "cost", "note"], table, fmt, title)


@app.command(name="run")
@planner_options
def run_cmd(
    plan_args: dict,
    device: Annotated[str | None, typer.Option("--device", help="cpu or cuda (default: cuda; cpu for tiny).")]
    = None,
    nproc: Annotated[int | None, typer.Option("--nproc", help="Processes per node (default: GPUs per node).")]
    = None,
    node_rank: Annotated[int, typer.Option("--node-rank", help="This node's rank in a multi-node fleet.")] = 0,
    rdzv_endpoint: Annotated[str | None, typer.Option("--rdzv-endpoint", help="HOST:PORT of node 0 (multi-node).")]
    = None,
    out: Annotated[Path | None, typer.Option("--out", help="Run directory (default: runs/d<depth>-<fleet>).")]
    = None,
    data: Annotated[str | None, typer.Option("--data", help="'sample' (embedded corpus) or a shard directory.")]
    = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Start without asking about the predicted cost.")]
    = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan and every node's command; run nothing.")]
    = False,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the newest complete checkpoint.")] = False,
) -> None:
    """Resolve the plan, prepare data and tokenizer, launch the trainer (torchrun), report and calibrate."""
    import time

    from chatplan import run as runner
    from chatplan.calibration import CALIBRATION_ENV, default_calibration_path, point_from_run, record_point
    from chatplan.data import DEFAULT_DATA_DIR, DEFAULT_TOKENIZER_DIR
    from chatplan.render import plan_sections, render_sections

    started = time.perf_counter()
    args = dict(plan_args)
    tiny = str(args["tier"]) == "tiny"
    device = device or ("cpu" if tiny else "cuda")
    if device not in ("cpu", "cuda"):
        raise InvalidInput(f"--device {device!r} is not one of cpu, cuda")
    if nproc is not None and nproc < 1:
        raise InvalidInput(f"--nproc must be at least 1, got {nproc}")
    if device == "cpu":
        if args["gpus"] is None:
            args["gpus"] = f"{nproc or 1}xCPU"
            args["gpus_per_node"] = nproc or 1
        elif nproc is not None:
            args["gpus_per_node"] = nproc
    elif tiny:
        raise InvalidInput("--tier tiny is a CPU preset: use --device cpu (or leave --device out)")
    plan_inputs = edge_inputs(args, calibration_must_exist=False)  # the run itself may create the file
    p_catalog = plan_inputs["catalog"]
    from chatplan.plan import plan as make

    p = make(**plan_inputs)
    if (p.fleet.gpu.device_type == "cpu") != (device == "cpu"):
        raise InvalidInput(f"--device {device} does not match the fleet {p.fleet.label}")
    if nproc is not None and nproc != p.fleet.gpus_per_node:
        raise InvalidInput(f"--nproc {nproc} disagrees with {p.fleet.label} at {p.fleet.gpus_per_node} per node")
    if not 0 <= node_rank < p.fleet.nodes:
        raise InvalidInput(f"--node-rank {node_rank} is outside 0..{p.fleet.nodes - 1}")
    sample = tiny or data == "sample"
    run_dir = Path(out or f"runs/d{p.depth}-{p.fleet.label}").resolve()
    doc = p.to_dict()
    if sample:
        data_dir, tok_dir, source = run_dir / "sample", run_dir / "tokenizer", "sample"
    else:
        data_dir = Path(data).expanduser().resolve() if data else DEFAULT_DATA_DIR
        tok_dir, source = DEFAULT_TOKENIZER_DIR, "fineweb"
    doc["data"] = {**doc["data"], "dir": str(data_dir), "source": source}
    doc["tokenizer"] = {**doc["tokenizer"], "dir": str(tok_dir)}
    plan_path = run_dir / "plan.json"
    launch = runner.launch_commands(doc, plan_path, run_dir, rdzv_endpoint=rdzv_endpoint, resume=resume)
    render_sections(plan_sections(p), "rich" if sys.stdout.isatty() else "plain",
                    f"chatplan run: d{p.depth} on {p.fleet.label}", p.warnings)
    if dry_run:
        write_json_atomic(plan_path, doc)
        sys.stdout.write(f"\nplan written to {plan_path}\n")
        for r in range(launch.nodes):
            sys.stdout.write(f"node {r}: {launch.shell(r)}\n")
        return
    runner.confirm_spend(p.time.cost_usd, yes)
    # Everything that can fail cheaply comes before anything slow or paid for.
    checkpoints = runner.CHECKPOINTS_KEPT * runner.checkpoint_bytes(doc)
    if sample:
        runner.preflight_disk(run_dir, checkpoints, f"{runner.CHECKPOINTS_KEPT} checkpoints")
        data_dir, tok_dir = runner.prepare_sample(run_dir, p.shape.vocab_size)
    else:
        runner.check_gpus(p.fleet.gpu.name, p.fleet.gpus_per_node, p_catalog)
        need = runner.missing_data_bytes(doc, data_dir)
        if run_dir.resolve().anchor == data_dir.resolve().anchor:  # one disk check when they may share a disk
            runner.preflight_disk(run_dir, checkpoints + need, f"the missing shards and {runner.CHECKPOINTS_KEPT} "
                                  "checkpoints")
        else:
            runner.preflight_disk(data_dir, need, "the missing data shards")
            runner.preflight_disk(run_dir, checkpoints, f"{runner.CHECKPOINTS_KEPT} checkpoints")
        runner.prepare_fineweb(doc, data_dir, tok_dir, yes)
    doc = runner.bind_inputs(doc, data_dir, source, tok_dir)
    write_json_atomic(plan_path, doc)
    sys.stdout.write(f"launching node {node_rank}: {launch.shell(node_rank)}\n")
    sys.stdout.flush()
    code = runner.execute(launch, node_rank)
    if code == 130:
        raise KeyboardInterrupt
    if code != 0:
        raise ChatplanError(f"the trainer exited with code {code}; resume with the same command and --resume", 3)
    if node_rank != 0:
        return
    samples = runner.sample_model(run_dir)
    report = runner.finish_report(run_dir, doc, time.perf_counter() - started, samples)
    from chatplan.render import render_grid

    render_grid(["", "achieved", "predicted", "relative error"], runner.report_rows(report),
                "rich" if sys.stdout.isatty() else "plain", f"prediction vs reality: {run_dir}")
    cal = plan_args.get("calibration")
    if cal is None or cal.lower() != "none":
        cal_path = Path(cal or os.environ.get(CALIBRATION_ENV) or default_calibration_path())
        n = record_point(cal_path, point_from_run(run_dir))
        sys.stdout.write(f"calibration: recorded this run in {cal_path} ({n} points)\n")


@app.command()
def calibrate(
    from_run: Annotated[Path, typer.Option("--from", help="A finished run directory (plan.json, report.json).")],
    calibration: Annotated[str | None, typer.Option("--calibration", help="Calibration file to append to.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Record a finished run's achieved MFU and memory; later plans on the same GPU and world size use it."""
    from chatplan.calibration import CALIBRATION_ENV, default_calibration_path, point_from_run, record_point

    if calibration is not None and calibration.lower() == "none":
        raise InvalidInput("--calibration none records nothing: give a file")
    path = Path(calibration or os.environ.get(CALIBRATION_ENV) or default_calibration_path())
    point = point_from_run(from_run)
    n = record_point(path, point)
    if json_out:
        sys.stdout.write(json.dumps({"file": str(path), "points": n, "recorded": point.to_dict()}, indent=2) + "\n")
    else:
        sys.stdout.write(f"recorded {point.gpu} x{point.world_size}, depth {point.depth}, batch "
                         f"{point.device_batch_size}: MFU {point.mfu:.4f} -> {path} ({n} points)\n")


SUBAPPS = {"data": "chatplan.data.cli", "tokenizer": "chatplan.tokenizer.cli"}
_registered: set[str] = set()


def register_subapps(args: list[str]) -> None:
    """Sub-command groups live in their own packages; import one only when it is asked for (or for
    top-level help), so `chatplan estimate --json` does not pay for the downloader's imports."""
    wanted = [args[0]] if args and args[0] in SUBAPPS else ([] if args and not args[0].startswith("-")
                                                          else list(SUBAPPS))
    for name in wanted:
        if name not in _registered:
            app.add_typer(__import__(SUBAPPS[name], fromlist=["app"]).app, name=name)
            _registered.add(name)


def _bad_value(opts: list[str], args: list[str]) -> str | None:
    """The raw text a user gave for an option (typer's message does not repeat it)."""
    for i, arg in enumerate(args):
        for opt in opts:
            if arg == opt and i + 1 < len(args):
                return args[i + 1]
            if arg.startswith(opt + "="):
                return arg[len(opt) + 1:]
    return None


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        register_subapps(args)
        rv = app(args=args, prog_name="chatplan", standalone_mode=False)
        return rv if isinstance(rv, int) else 0  # without standalone mode, typer.Exit(n) returns n
    except ChatplanError as e:
        sys.stderr.write(f"chatplan: error: {e}\n")
        return e.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("chatplan: interrupted\n")
        return EXIT_INTERRUPTED
    except typer.Exit as e:
        return e.exit_code
    except typer.Abort:
        sys.stderr.write("chatplan: aborted\n")
        return EXIT_REQUIREMENT
    except Exception as e:  # click-style usage errors from typer's parser; anything else is our bug
        message = getattr(e, "format_message", None)
        if message is None:
            if os.environ.get("CHATPLAN_TRACEBACK"):
                raise
            first = str(e).splitlines()[0] if str(e) else ""
            sys.stderr.write(f"chatplan: internal error: {type(e).__name__}: {first} "
                             "(set CHATPLAN_TRACEBACK=1 for the traceback)\n")
            return 3
        text = " ".join(message().split())
        if not text:  # `chatplan` alone, or a group without a command: the help was printed
            return 0 if not args else getattr(e, "exit_code", EXIT_INVALID)
        param = getattr(e, "param", None)
        value = _bad_value(list(getattr(param, "opts", []) or []), args) if param is not None else None
        if value is not None and repr(value) not in text:
            text += f" (got {value!r})"
        sys.stderr.write(f"chatplan: error: {text}\n")
        return getattr(e, "exit_code", EXIT_INVALID) or EXIT_INVALID


def entry() -> None:
    """Console-script entry point."""
    sys.exit(main())
