"""`chatplan run`, phase by phase: plan -> prepare (cost, disk, GPUs, data, tokenizer) -> bind and write
plan.json -> launch -> report -> calibrate. Each phase is its own module; this one holds the sequence.

Rendering is the command's (chatplan/commands/run.py): this package returns values and prints only
what the launched processes print.
"""

from __future__ import annotations

import signal
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

from chatplan import paths
from chatplan.calibration import record_point
from chatplan.catalog import Catalog
from chatplan.contract import bind, plan_document, read_plan
from chatplan.errors import EXIT_INTERRUPTED, ChatplanError, InvalidInput, RequirementFailed, RuntimeFailure
from chatplan.files import write_json_atomic
from chatplan.layout import CHECKPOINTS_KEPT
from chatplan.plan import Plan
from chatplan.runner import prepare
from chatplan.runner.launch import Launch, execute, launch_commands
from chatplan.runner.report import finish_report, point_from_run, sample_model


@dataclass(frozen=True)
class RunOptions:
    device: str | None = None  # "cpu" | "cuda"; default cuda, cpu for CPU-only tiers
    nproc: int | None = None
    node_rank: int = 0
    rdzv_endpoint: str | None = None
    out: Path | None = None
    data: str | None = None  # "sample" | a shard directory | None (the architecture's dataset dir)
    yes: bool = False
    dry_run: bool = False
    resume: bool = False
    calibration: str | None = None  # where to record the run ("none": do not)
    save_every: int | None = None  # steps between checkpoints (default: about every SAVE_EVERY_SECONDS)
    launcher: str = "torchrun"  # "torchrun" (start the nodes here) | "slurm" (write and submit an sbatch script)


# A crash loses at most this much training: checkpoints about every 15 minutes of predicted steps.
SAVE_EVERY_SECONDS = 15 * 60
TRAIN_LOG = "train.log"


def default_save_every(p: Plan) -> int:
    """Steps between checkpoints: about SAVE_EVERY_SECONDS of the plan's predicted step time (0: only at the
    end, when the whole run is shorter than that)."""
    every = max(1, round(SAVE_EVERY_SECONDS / p.time.step_seconds))
    return 0 if every >= p.horizon.steps else every


def check_run_dir(run_dir: Path, steps: int, resume: bool) -> str | None:
    """Refuse to mix two runs in one directory; say when a resumed run is already finished.

    Returns a message when there is nothing to do (the run is finished), raises InvalidInput when the
    directory holds another run and --resume was not given, or a checkpoint past the plan's steps."""
    from chatplan.runner.report import checkpoint_step, newest_checkpoint

    used = (run_dir / "metrics.jsonl").exists() or (run_dir / "checkpoints").exists()
    if used and not resume:
        raise InvalidInput(f"{run_dir} already holds a run: continue it with --resume, or start a new one with a "
                           "fresh --out")
    newest = newest_checkpoint(run_dir)
    if not resume or newest is None:
        return None
    step = checkpoint_step(newest)
    if step > steps:
        raise InvalidInput(f"the newest checkpoint {newest} is at step {step:,}, past this plan's {steps:,} steps: "
                           "resume with the plan it was trained with, or start in a fresh --out")
    if step == steps and (run_dir / "report.json").exists():
        return f"the run in {run_dir} is finished (step {step:,} of {steps:,}); its report is {run_dir / 'report.json'}"
    return None


def require_trainer() -> None:
    """A planner-only install cannot train: say so before anything is prepared."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        raise InvalidInput("chatplan run needs the trainer, which needs torch: pip install 'chatplan[train]' "
                           "(GPU users: keep your CUDA build of torch)")


def fleet_request(request, opts: RunOptions):
    """The request with the fleet a CPU run implies (--nproc processes of one CPU host)."""
    from chatplan.request import get_tier

    tier = get_tier(request.tier) if request.tier is not None else None
    device = opts.device or ("cpu" if tier is not None and tier.cpu_only else "cuda")
    if device not in ("cpu", "cuda"):
        raise InvalidInput(f"--device {device!r} is not one of cpu, cuda")
    if opts.nproc is not None and opts.nproc < 1:
        raise InvalidInput(f"--nproc must be at least 1, got {opts.nproc}")
    if device == "cpu":
        if request.gpus is None:
            request = replace(request, gpus=f"{opts.nproc or 1}xCPU", gpus_per_node=opts.nproc or 1)
        elif opts.nproc is not None:
            request = replace(request, gpus_per_node=opts.nproc)
    elif tier is not None and tier.cpu_only:
        raise InvalidInput(f"--tier {tier.name} is a CPU preset: use --device cpu (or leave --device out)")
    return request, device


@dataclass(frozen=True)
class Prepared:
    plan: Plan
    run_dir: Path
    plan_path: Path
    launch: Launch
    doc: dict  # plan.json as written (bound, unless a dry run)
    finished: str | None = None  # a resumed run that has nothing left to do says so here
    save_every: int = 0


def prepare_run(p: Plan, device: str, opts: RunOptions, catalog: Catalog) -> Prepared:
    """Everything before the launch; a dry run stops after writing the unbound plan."""
    if (p.fleet.gpu.device_type == "cpu") != (device == "cpu"):
        raise InvalidInput(f"--device {device} does not match the fleet {p.fleet.label}")
    if opts.nproc is not None and opts.nproc != p.fleet.gpus_per_node:
        raise InvalidInput(f"--nproc {opts.nproc} disagrees with {p.fleet.label} at {p.fleet.gpus_per_node} per node")
    if not 0 <= opts.node_rank < p.fleet.nodes:
        raise InvalidInput(f"--node-rank {opts.node_rank} is outside 0..{p.fleet.nodes - 1}")
    run_dir = Path(opts.out or paths.run_dir(p.depth, p.fleet.label, p.arch.name)).resolve()
    plan_path = run_dir / "plan.json"
    doc = plan_document(p)
    par = p.parallelism
    save_every = default_save_every(p) if opts.save_every is None else opts.save_every
    if save_every < 0:
        raise InvalidInput(f"--save-every must be >= 0 steps (0: only at the end), got {save_every}")
    slurm = opts.launcher == "slurm"
    if opts.launcher not in ("torchrun", "slurm"):
        raise InvalidInput(f"--launcher {opts.launcher!r} is not one of torchrun, slurm")
    # under SLURM the sbatch script starts the nodes (its first host is the rendezvous): no node commands here
    launch = launch_commands(1 if slurm else par.world_size, 1 if slurm else par.nodes, par.nproc_per_node,
                             plan_path, run_dir, rdzv_endpoint=opts.rdzv_endpoint, resume=opts.resume,
                             save_every=save_every)
    finished = None if opts.dry_run else check_run_dir(run_dir, p.horizon.steps, opts.resume)
    if finished:  # nothing to launch: the run's own plan.json and report stay as they are
        return Prepared(p, run_dir, plan_path, launch, doc, finished=finished, save_every=save_every)
    typed = read_plan(doc)
    dataset = p.arch.dataset
    sample = p.data_source == "sample" or opts.data == "sample"
    if sample:
        from chatplan.data.sample import VALIDATION_SHARD as SAMPLE_VALIDATION

        data_dir, tok_dir, source, validation = run_dir / "sample", run_dir / "tokenizer", "sample", SAMPLE_VALIDATION
    else:
        data_dir = Path(opts.data).expanduser().resolve() if opts.data else paths.data_dir(dataset.local_dir)
        tok_dir, source, validation = paths.tokenizer_dir(dataset.tokenizer_dir), "dataset", dataset.validation_shard
    if opts.dry_run:  # bound to where the data and tokenizer will be (the tokenizer may not exist yet)
        doc = bind(doc, prepare.binding(typed, run_dir, data_dir, source, tok_dir, validation, prepared=False))
        write_json_atomic(plan_path, doc)
        if slurm:
            write_sbatch(p, run_dir, plan_path, opts, save_every)
        return Prepared(p, run_dir, plan_path, launch, doc, save_every=save_every)
    prepare.confirm_spend(p.time.cost_usd, opts.yes)
    checkpoints = CHECKPOINTS_KEPT * prepare.checkpoint_bytes(typed)
    if sample:
        prepare.preflight_disk(run_dir, checkpoints, f"{CHECKPOINTS_KEPT} checkpoints")
        prepare.prepare_sample(run_dir, p.shape.vocab_size)
    else:
        if device == "cuda":
            prepare.check_gpus(p.fleet.gpu.name, p.fleet.gpus_per_node, catalog)
        need = prepare.missing_data_bytes(typed, dataset, data_dir)
        if run_dir.anchor == data_dir.anchor:  # one disk check when they may share a disk
            prepare.preflight_disk(run_dir, checkpoints + need, f"the missing shards and {CHECKPOINTS_KEPT} "
                                   "checkpoints")
        else:
            prepare.preflight_disk(data_dir, need, "the missing data shards")
            prepare.preflight_disk(run_dir, checkpoints, f"{CHECKPOINTS_KEPT} checkpoints")
        from rich.console import Console

        from chatplan.data.progress import RichReporter

        prepare.prepare_dataset(typed, dataset, data_dir, tok_dir, opts.yes, RichReporter(Console(stderr=True)))
    doc = bind(doc, prepare.binding(typed, run_dir, data_dir, source, tok_dir, validation))
    write_json_atomic(plan_path, doc)
    if slurm:
        write_sbatch(p, run_dir, plan_path, opts, save_every)
    return Prepared(p, run_dir, plan_path, launch, doc, save_every=save_every)


SBATCH_FILE = "chatplan.sbatch"


def write_sbatch(p: Plan, run_dir: Path, plan_path: Path, opts: RunOptions, save_every: int) -> Path:
    """The sbatch script for this plan in the run directory (which every node must see)."""
    from chatplan.files import write_text_atomic
    from chatplan.runner.slurm import sbatch_script

    # SLURM's --time in minutes: the predicted pretraining time with a quarter more for start-up and evals
    minutes = max(10, int(p.time.pretrain_hours * 60 * 1.25) + 10)
    script = sbatch_script(job_name=f"chatplan-{run_dir.name}", nodes=p.fleet.nodes,
                           gpus_per_node=p.fleet.gpus_per_node, plan_path=plan_path, run_dir=run_dir, steps=None,
                           resume=opts.resume, save_every=save_every, time_limit_minutes=minutes,
                           gpus=p.fleet.gpu.device_type == "cuda")
    path = run_dir / SBATCH_FILE
    write_text_atomic(path, script)
    return path


def submit_sbatch(run_dir: Path) -> str:
    """`sbatch` the run's script; returns what sbatch printed (the job id)."""
    import shutil
    import subprocess

    exe = shutil.which("sbatch")
    if exe is None:
        raise RequirementFailed(f"sbatch is not on PATH: submit {run_dir / SBATCH_FILE} from a SLURM login node")
    proc = subprocess.run([exe, str(run_dir / SBATCH_FILE)], capture_output=True, text=True)
    if proc.returncode != 0:
        first = (proc.stderr.strip().splitlines() or ["no message"])[0]
        raise RuntimeFailure(f"sbatch refused {run_dir / SBATCH_FILE}: {first}")
    return proc.stdout.strip()


SIGNAL_EXIT = {signal.SIGINT: EXIT_INTERRUPTED, signal.SIGTERM: 143, signal.SIGHUP: 129}


def launch_and_wait(prep: Prepared, node_rank: int) -> None:
    """Run the trainer; a forwarded signal or a failure becomes one line naming where to resume."""
    sys.stdout.write(f"launching node {node_rank}: {prep.launch.shell(node_rank)}\n")
    sys.stdout.flush()
    log = prep.run_dir / TRAIN_LOG
    outcome = execute(prep.launch, node_rank, log)
    if outcome.signal is not None:
        name = signal.Signals(outcome.signal).name
        raise ChatplanError(f"stopped by {name}: {_resume_hint(prep.run_dir)}",
                            SIGNAL_EXIT.get(outcome.signal, 128 + outcome.signal))
    if outcome.returncode == EXIT_INTERRUPTED:
        raise ChatplanError(f"the trainer was interrupted: {_resume_hint(prep.run_dir)}", EXIT_INTERRUPTED)
    if outcome.returncode != 0:
        raise RuntimeFailure(f"the trainer exited with code {outcome.returncode} (full log: {log}); "
                             f"{_resume_hint(prep.run_dir)}")


def _resume_hint(run_dir: Path) -> str:
    from chatplan.runner.report import newest_checkpoint

    newest = newest_checkpoint(run_dir)
    if newest is None:
        return f"no checkpoint was written in {run_dir}: start again"
    return f"resume from {newest} with the same command and --resume"


def report_and_calibrate(prep: Prepared, started: float, calibration: str | None) -> tuple[dict, str | None]:
    """The report with samples; the calibration point recorded (unless --calibration none)."""
    samples = sample_model(prep.run_dir)
    report = finish_report(prep.run_dir, read_plan(prep.doc), time.perf_counter() - started, samples)
    if calibration is not None and calibration.lower() == "none":
        return report, None
    path = paths.calibration_path(calibration)
    n = record_point(path, point_from_run(prep.run_dir))
    return report, f"calibration: recorded this run in {path} ({n} points)"
