"""Before anything slow or paid for: the cost confirmation, the disk, the GPUs, the data and the tokenizer.

Everything here can fail cheaply, and does so before a download or a launch.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from chatplan.arch.base import Dataset
from chatplan.catalog import GPU, Catalog
from chatplan.contract import PlanDoc, RunBinding
from chatplan.errors import InvalidInput, RequirementFailed, RuntimeFailure

GIB = 2**30
# Above this predicted cost `chatplan run` asks before it starts (or needs --yes without a terminal).
CONFIRM_ABOVE_USD = 10.0
# Shards are ~100 MB each but vary: reserve 5 % more disk than the nominal size.
DISK_MARGIN = 1.05
# nvidia-smi names an 80 GB card by its label; torch sees 79.19 GiB of it (gpus.json, memory_gib source).
LABEL_GB_PER_TORCH_GIB = 80 / 79.19


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


def checkpoint_bytes(doc: PlanDoc) -> int:
    """One checkpoint: the weights (as trained) plus every rank's optimizer shard (bounded above by
    the most-loaded rank's shard times the world size)."""
    return doc.resident_bytes


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
        same = [g for g in found if round(g.memory_gib * LABEL_GB_PER_TORCH_GIB) == int(size.group(1))]
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


def prepare_sample(run_dir: Path, vocab_size: int) -> None:
    """The embedded sample corpus (run_dir/sample) and a tokenizer trained on its train split
    (run_dir/tokenizer), cached in the run dir."""
    from chatplan.data.sample import write_sample_corpus

    corpus = write_sample_corpus(run_dir / "sample")
    ensure_tokenizer(run_dir / "tokenizer", vocab_size, list(corpus.train_paths))


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


def missing_data_bytes(doc: PlanDoc, dataset: Dataset, data_dir: Path) -> int:
    """Disk the plan's shards still need (those not yet present, plus the validation shard)."""
    n = doc.download_shards
    have = sum(1 for i in range(n) if (data_dir / dataset.shard_filename(i)).exists())
    have += (data_dir / dataset.validation_shard).exists()
    return int((n + 1 - have) * dataset.shard_download_bytes * DISK_MARGIN)


def prepare_dataset(doc: PlanDoc, dataset: Dataset, data_dir: Path, tok_dir: Path, yes: bool, reporter) -> None:
    """Download the plan's shards (stop with exit 3 before any GPU time if one fails), then make sure a
    tokenizer of the plan's vocab exists (training one on the downloaded shards if not)."""
    from chatplan.data.download import download_shards

    n = doc.download_shards
    with reporter:
        summary = download_shards(list(range(n)) + [dataset.validation_shard_index], data_dir,
                                  base_url=dataset.base_url, reporter=reporter,
                                  num_shards=dataset.num_train_shards + 1)
    if summary.failed:
        names = ", ".join(r.name for r in summary.failed)
        raise RuntimeFailure(f"{len(summary.failed)} shards failed to download ({names}): nothing was launched; "
                             "run again to resume")
    needed = doc.train_shards_needed
    if n < needed:
        msg = f"the local shards hold ~{n} of the {needed} shards of tokens the plan trains on: data will repeat"
        if not yes and sys.stdin.isatty():
            if input(msg + ". Continue? [y/N] ").strip().lower() not in ("y", "yes"):
                raise RequirementFailed("not started: not enough local data")
        else:
            sys.stderr.write(f"warning: {msg}\n")
    from chatplan.data.shards import train_shard_paths

    ensure_tokenizer(tok_dir, doc.vocab_size, train_shard_paths(data_dir, dataset.validation_shard))


def binding(doc: PlanDoc, out_dir: Path, data_dir: Path, source: str, tok_dir: Path, validation_shard: str,
            prepared: bool = True) -> RunBinding:
    """Where this run's data and tokenizer are, with the tokenizer's ranks hash the trainer will check
    (unknown before `prepared`, e.g. in a dry run whose tokenizer is trained later: then not checked)."""
    from chatplan.tokenizer import load_tokenizer

    sha = None
    try:
        sha = load_tokenizer(tok_dir).ranks_sha256
    except InvalidInput:
        if prepared:
            raise
    # the sample corpus: every shard present; a dataset: the shards the plan downloads
    shards = 0 if source == "sample" else doc.download_shards
    return RunBinding(out_dir=str(out_dir.resolve()), data_dir=str(data_dir.resolve()), data_source=source,
                      train_shards=shards, validation_shard=validation_shard, tokenizer_dir=str(tok_dir.resolve()),
                      ranks_sha256=sha)
