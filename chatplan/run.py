"""`chatplan run`: from a plan to a launched trainer, and from its outputs to a report.

The planner side never imports torch: the trainer runs as a child process (`python -m chatplan_train`,
or `python -m torch.distributed.run` — torchrun — when a node runs several processes or the fleet
spans nodes), and the report is built from the files it leaves in the run directory.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from chatplan.catalog import GPU, Catalog
from chatplan.errors import InvalidInput, RequirementFailed, RuntimeFailure
from chatplan.files import write_json_atomic

GIB = 2**30
CHECKPOINTS_KEPT = 3  # chatplan_train keeps the 3 newest complete checkpoints
CONFIRM_ABOVE_USD = 10.0
DEFAULT_RDZV_PORT = 29_500
# The five fixed prompts the report samples the trained model on.
SAMPLE_PROMPTS = (
    "The capital of France is",
    "def fibonacci(n):",
    "The most important thing about learning is",
    "In 1969, the first",
    "Water boils at a temperature of",
)


@dataclass(frozen=True)
class Launch:
    """What to run on each node; `argv[r]` is node r's command."""

    argv: list[list[str]]
    world_size: int
    nodes: int
    nproc_per_node: int

    def shell(self, node: int) -> str:
        return shlex.join(self.argv[node])


def trainer_args(plan_path: Path, out_dir: Path, steps: int | None, resume: bool = False) -> list[str]:
    args = ["-m", "chatplan_train", "--plan", str(plan_path), "--out", str(out_dir)]
    if steps is not None:
        args += ["--steps", str(steps)]
    if resume:
        args.append("--resume")
    return args


def launch_commands(plan_doc: dict, plan_path: Path, out_dir: Path, steps: int | None = None,
                    rdzv_endpoint: str | None = None, python: str = sys.executable,
                    resume: bool = False) -> Launch:
    """The exact command for every node: one process needs no torchrun; one node uses --standalone;
    several nodes meet at a c10d rendezvous on `rdzv_endpoint` (host:port of node 0)."""
    par = plan_doc["parallelism"]
    world, nodes, nproc = par["world_size"], par["nodes"], par["nproc_per_node"]
    train = trainer_args(plan_path, out_dir, steps, resume)
    if world == 1:
        return Launch([[python, *train]], world, nodes, nproc)
    torchrun = [python, "-m", "torch.distributed.run"]
    if nodes == 1:
        return Launch([[*torchrun, "--standalone", "--nnodes", "1", "--nproc-per-node", str(nproc), *train]],
                      world, nodes, nproc)
    if not rdzv_endpoint:
        raise InvalidInput(f"a {nodes}-node fleet needs --rdzv-endpoint HOST:PORT (node 0's address, e.g. "
                           f"10.0.0.1:{DEFAULT_RDZV_PORT})")
    host, _, port = rdzv_endpoint.rpartition(":")
    if not host or not port.isdigit():
        raise InvalidInput(f"--rdzv-endpoint {rdzv_endpoint!r} must be HOST:PORT")
    run_id = f"chatplan-{out_dir.name}"
    argv = [[*torchrun, "--nnodes", str(nodes), "--nproc-per-node", str(nproc), "--node-rank", str(r),
             "--rdzv-backend", "c10d", "--rdzv-endpoint", rdzv_endpoint, "--rdzv-id", run_id, *train]
            for r in range(nodes)]
    return Launch(argv, world, nodes, nproc)


def confirm_spend(cost_usd: float, yes: bool, ask=None) -> None:
    """Above $10 of predicted cost, ask on a terminal unless --yes; without a terminal, refuse."""
    if yes or cost_usd <= CONFIRM_ABOVE_USD:
        return
    if not sys.stdin.isatty():
        raise RequirementFailed(f"this run is predicted to cost ${cost_usd:,.2f}: pass --yes to start it "
                                "without a terminal")
    ask = ask or (lambda q: input(q).strip().lower() in ("y", "yes"))
    if not ask(f"This run is predicted to cost ${cost_usd:,.2f}. Start it? [y/N] "):
        raise RequirementFailed("not started: the predicted cost was not confirmed")


def checkpoint_bytes(plan_doc: dict) -> int:
    """One checkpoint: the weights (as trained) plus every rank's optimizer shard (bounded above by
    the most-loaded rank's shard times the world size)."""
    mem = plan_doc["memory"]
    return int(mem["weights"] + mem["optimizer_state"] * plan_doc["parallelism"]["world_size"])


def preflight_disk(path: Path, need_bytes: int, what: str) -> None:
    probe = path
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < need_bytes:
        raise RequirementFailed(f"{probe} has {free / GIB:,.1f} GiB free but {what} need {need_bytes / GIB:,.1f} GiB")


def detected_gpus() -> list[str]:
    """The name of every GPU nvidia-smi reports (empty where there is none)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run([exe, "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True,
                             timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def identify_gpu(detected: str, catalog: Catalog) -> GPU | None:
    """The catalog GPU a driver name describes: 'NVIDIA H100 80GB HBM3' -> H100-SXM, 'NVIDIA H100 PCIe'
    -> H100-PCIe, 'NVIDIA A100-SXM4-40GB' -> A100-40GB, 'NVIDIA GeForce RTX 4090' -> RTX-4090."""
    d = re.sub(r"[^A-Z0-9]", "", detected.upper())

    def family(gpu: GPU) -> str:
        parts = gpu.name.upper().split("-")
        return parts[1] if parts[0] == "RTX" else parts[0]

    found = [g for g in catalog.gpus if g.device_type == "cuda" and family(g) in d]
    pcie = [g for g in found if "PCIE" in g.name.upper()]
    if "PCIE" in d and pcie:
        found = pcie
    elif "PCIE" not in d:
        found = [g for g in found if g not in pcie] or found
    size = re.search(r"(\d+)\s*GB", detected.upper())
    if size:
        same = [g for g in found if round(g.memory_gib * 80 / 79.19) == int(size.group(1))]
        found = same or found
    return found[0] if found else None


def check_gpus(plan_gpu: str, nproc_per_node: int, catalog: Catalog) -> None:
    """Before any download: this node has at least nproc_per_node GPUs of the plan's type."""
    names = detected_gpus()
    if not names:
        raise RequirementFailed(f"no NVIDIA GPU found (nvidia-smi) but the plan is for {plan_gpu}")
    if len(names) < nproc_per_node:
        raise RequirementFailed(f"this node has {len(names)} GPU(s) but the plan runs {nproc_per_node} per node")
    gpu = identify_gpu(names[0], catalog)
    if gpu is None or gpu.name != plan_gpu:
        seen = gpu.name if gpu else "an uncatalogued GPU"
        raise RequirementFailed(f"this machine has {names[0]!r} ({seen}) but the plan is for {plan_gpu}: re-plan "
                                f"with --gpus {nproc_per_node}x<your GPU>")


def prepare_sample(run_dir: Path, vocab_size: int) -> tuple[Path, Path]:
    """The embedded sample corpus and a tokenizer trained on its train split, cached in the run dir."""
    from chatplan.data.sample import write_sample_corpus

    corpus = write_sample_corpus(run_dir / "sample")
    tok_dir = run_dir / "tokenizer"
    ensure_tokenizer(tok_dir, vocab_size, list(corpus.train_paths))
    return corpus.dir, tok_dir


def ensure_tokenizer(tok_dir: Path, vocab_size: int, train_paths: list[Path]) -> None:
    """Reuse the tokenizer in `tok_dir` if it has the plan's vocab; else train one on the training
    shards (never the validation shard)."""
    from chatplan.data.shards import iter_texts
    from chatplan.tokenizer import load_tokenizer, train_tokenizer

    try:
        if load_tokenizer(tok_dir).vocab_size == vocab_size:
            return
    except InvalidInput:  # absent or unreadable: train it
        pass

    def texts():
        for path in train_paths:
            yield from iter_texts(path)

    train_tokenizer(texts(), vocab_size, tok_dir)


def missing_data_bytes(plan_doc: dict, data_dir: Path) -> int:
    """Disk the plan's shards still need (those not yet present, plus the validation shard)."""
    from chatplan.dataplan import SHARD_DOWNLOAD_BYTES, VALIDATION_SHARD, shard_filename

    n = plan_doc["data"]["download_shards"]
    have = sum(1 for i in range(n) if (data_dir / shard_filename(i)).exists())
    have += (data_dir / VALIDATION_SHARD).exists()
    return int((n + 1 - have) * SHARD_DOWNLOAD_BYTES * 1.05)


def prepare_fineweb(plan_doc: dict, data_dir: Path, tok_dir: Path, yes: bool) -> None:
    """Download the plan's shards (stop with exit 3 before any GPU time if one fails), then make sure a
    tokenizer of the plan's vocab exists (training one on the downloaded shards if not)."""
    from chatplan.data.download import download_shards
    from chatplan.dataplan import VALIDATION_SHARD_INDEX

    n = plan_doc["data"]["download_shards"]
    from rich.console import Console

    from chatplan.data.progress import RichReporter

    with RichReporter(Console(stderr=True)) as reporter:
        summary = download_shards(list(range(n)) + [VALIDATION_SHARD_INDEX], data_dir, reporter=reporter)
    if summary.failed:
        names = ", ".join(r.name for r in summary.failed)
        raise RuntimeFailure(f"{len(summary.failed)} shards failed to download ({names}): nothing was launched; "
                             "run again to resume")
    needed = plan_doc["data"]["train_shards_needed"]
    if n < needed:
        msg = f"the local shards hold ~{n} of the {needed} shards of tokens the plan trains on: data will repeat"
        if not yes and sys.stdin.isatty():
            if input(msg + ". Continue? [y/N] ").strip().lower() not in ("y", "yes"):
                raise RequirementFailed("not started: not enough local data")
        else:
            sys.stderr.write(f"warning: {msg}\n")
    from chatplan.data.shards import train_shard_paths

    ensure_tokenizer(tok_dir, plan_doc["tokenizer"]["vocab_size"], train_shard_paths(data_dir))


def bind_inputs(plan_doc: dict, data_dir: Path, source: str, tok_dir: Path) -> dict:
    """Fill plan.json's data and tokenizer sections with the prepared directories and the ranks hash."""
    from chatplan.data.shards import train_shard_paths
    from chatplan.tokenizer import load_tokenizer

    tok = load_tokenizer(tok_dir)
    doc = dict(plan_doc)
    shards = len(train_shard_paths(data_dir))
    doc["data"] = {**plan_doc["data"], "dir": str(data_dir.resolve()), "source": source,
                   "train_shards": shards if source == "sample" else plan_doc["data"]["download_shards"]}
    doc["tokenizer"] = {**plan_doc["tokenizer"], "dir": str(tok_dir.resolve()), "ranks_sha256": tok.ranks_sha256}
    return doc


def child_env() -> dict:
    """The environment for torch child processes: torch warns once per process that numpy is absent,
    which the trainer never needs; keep that noise out of the run's output."""
    quiet = "ignore:Failed to initialize NumPy"
    current = os.environ.get("PYTHONWARNINGS")
    return {**os.environ, "PYTHONWARNINGS": f"{current},{quiet}" if current else quiet}


def execute(launch: Launch, node_rank: int) -> int:
    """Run this node's command in the foreground; Ctrl-C reaches the trainer, which checkpoints."""
    try:
        return subprocess.run(launch.argv[node_rank], env=child_env()).returncode
    except KeyboardInterrupt:
        return 130


def relative_error(achieved: float | None, predicted: float | None) -> float | None:
    if achieved is None or not predicted:
        return None
    return achieved / predicted - 1.0


def finish_report(run_dir: Path, plan_doc: dict, wall_seconds: float, samples: dict | None) -> dict:
    """The trainer's report.json with relative errors, end-to-end wall time and samples added;
    also written as report.md."""
    path = run_dir / "report.json"
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError):
        raise RuntimeFailure(f"the trainer left no readable report in {run_dir}") from None
    for value in list(report.values()) + list((report.get("memory_gib") or {}).values()):
        if isinstance(value, dict) and "achieved" in value and "predicted" in value:
            value["relative_error"] = relative_error(value["achieved"], value["predicted"])
    report["run_wall_seconds"] = wall_seconds
    report["plan"] = {"depth": plan_doc["model"]["n_layer"], "gpu": plan_doc["device"]["gpu"],
                      "world_size": plan_doc["parallelism"]["world_size"],
                      "device_batch_size": plan_doc["parallelism"]["device_batch_size"],
                      "steps": plan_doc["horizon"]["steps"]}
    report["samples"] = (samples or {}).get("samples", [])
    write_json_atomic(path, report)
    (run_dir / "report.md").write_text(report_markdown(report))
    return report


REPORT_ROWS = [("tokens/s", "tokens_per_second", ",.0f"), ("step time (s)", "step_seconds", ".4f"),
               ("MFU", "mfu", ".4f"), ("train hours, full horizon", "train_hours_full_horizon", ",.3f"),
               ("cost USD, full horizon", "cost_usd_full_horizon", ",.2f")]


def report_rows(report: dict) -> list[list[str]]:
    def fmt(v, spec):
        return "-" if v is None else format(v, spec)

    rows = []
    pairs = [(label, report.get(key), spec) for label, key, spec in REPORT_ROWS]
    pairs += [(f"memory {k} (GiB)", v, ".2f") for k, v in (report.get("memory_gib") or {}).items()]
    for label, pair, spec in pairs:
        if not pair:
            continue
        err = pair.get("relative_error")
        rows.append([label, fmt(pair["achieved"], spec), fmt(pair["predicted"], spec),
                     "-" if err is None else f"{err:+.1%}"])
    return rows


def report_markdown(report: dict) -> str:
    from tabulate import tabulate

    p = report["plan"]
    lines = [f"# chatplan run report: d{p['depth']} on {p['world_size']} x {p['gpu']}", "",
             tabulate(report_rows(report), headers=["", "achieved", "predicted", "relative error"],
                      tablefmt="github"), "",
             f"Steps run: {report.get('steps_done')}; wall time {report['run_wall_seconds']:.1f} s "
             f"(training {report.get('wall_seconds', 0):.1f} s); final loss {report.get('final_loss')}; "
             f"validation bpb {report.get('final_val_bpb')}.", ""]
    if report["samples"]:
        lines += ["## Samples (greedy)", ""]
        lines += [f"- **{s['prompt']}**{s['completion']}" for s in report["samples"]]
    return "\n".join(lines) + "\n"


def sample_model(run_dir: Path, python: str = sys.executable) -> dict | None:
    """Greedy completions of the fixed prompts from the newest checkpoint (None if sampling fails)."""
    proc = subprocess.run([python, "-m", "chatplan_train.sample", "--run", str(run_dir), *SAMPLE_PROMPTS],
                          capture_output=True, text=True, env=child_env())
    if proc.returncode != 0:
        sys.stderr.write(f"warning: could not sample the trained model: {proc.stderr.strip()[:200]}\n")
        return None
    return json.loads(proc.stdout)
