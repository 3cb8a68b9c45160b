"""Checkpoints that are either complete and verified, or ignored.

Layout: <out>/checkpoints/step_00000040/
  model.pt         weights (rank 0; every rank holds the same weights)
  rank00000.pt ... one per rank: its optimizer-state shard (keyed by parameter name), its data
                   position, its RNG states
  meta.json        step, world size, the plan, loop state (rank 0)
  MANIFEST.json    every file above with its SHA-256: written last, atomically, after a barrier

Every file is written to a temporary name, fsynced and renamed, and hashed while it is written (no
second read). A checkpoint counts only when its manifest exists and every listed file still hashes
to the recorded digest; `latest_complete` walks back from the newest until one verifies, so a
truncated or tampered file costs one checkpoint, never the run. Loading uses weights_only=True.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from chatplan.errors import RuntimeFailure
from chatplan.layout import CHECKPOINTS_KEPT
from chatplan_train.comm import all_gather_json

CHECKPOINTS = "checkpoints"
MANIFEST = "MANIFEST.json"
FORMAT = "chatplan-checkpoint"
VERSION = 1
KEEP = CHECKPOINTS_KEPT  # complete checkpoints kept; older ones are deleted once a newer one is complete


class _HashingWriter:
    def __init__(self, f):
        self.f, self.sha = f, hashlib.sha256()

    def write(self, data) -> int:
        self.sha.update(data)
        return self.f.write(data)

    def flush(self) -> None:
        self.f.flush()


def _write_atomic(path: Path, write, size_hint: int = 0) -> str:
    """Write through `write(file)` to a temp name, fsync, rename; return the content's SHA-256.

    A full disk is one clear line (how much this file needs, how much is free); the partial file is
    removed and the checkpoint stays incomplete (no manifest), so a resume after space is freed
    continues from the previous complete one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            w = _HashingWriter(f)
            write(w)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            free = shutil.disk_usage(path.parent).free
            raise RuntimeFailure(f"no space left on {path.parent} while writing {path.name}: about "
                                 f"{size_hint / 2**30:,.2f} GiB needed, {free / 2**30:,.2f} GiB free; free some "
                                 "space and resume with --resume") from None
        raise
    return w.sha.hexdigest()


def _nbytes(obj: Any) -> int:
    """Bytes of the tensors in a (nested) state dict: what saving it needs on disk, about."""
    if isinstance(obj, torch.Tensor):
        return obj.nbytes
    if isinstance(obj, dict):
        return sum(_nbytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_nbytes(v) for v in obj)
    return 0


def save_torch(obj: Any, path: Path) -> str:
    return _write_atomic(path, lambda w: torch.save(obj, w), _nbytes(obj))


def save_json(obj: Any, path: Path) -> str:
    data = (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode()
    return _write_atomic(path, lambda w: w.write(data))


def sha256_tensors(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 of the raw bytes of tensors, in name order (ranks compare their weights with it)."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        h.update((ctypes.c_char * t.nbytes).from_address(t.data_ptr()))  # no copy, no numpy
    return h.hexdigest()


def sha256_file(path: Path, chunk: int = 1 << 24) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def step_dir(out_dir: Path, step: int) -> Path:
    return Path(out_dir) / CHECKPOINTS / f"step_{step:08d}"


def rank_file(rank: int) -> str:
    return f"rank{rank:05d}.pt"


def save_checkpoint(out_dir: Path, step: int, rank: int, world_size: int, rank_state: dict,
                    model_state: dict | None = None, meta: dict | None = None) -> Path:
    """Collective: every rank calls it. Rank 0 also passes model_state and meta."""
    d = step_dir(out_dir, step)
    d.mkdir(parents=True, exist_ok=True)
    (d / MANIFEST).unlink(missing_ok=True)  # rewriting a step: it is incomplete until the new manifest
    digests = {rank_file(rank): save_torch(rank_state, d / rank_file(rank))}
    if rank == 0:
        digests["model.pt"] = save_torch(model_state, d / "model.pt")
        digests["meta.json"] = save_json(meta, d / "meta.json")
    if world_size > 1:
        gathered = all_gather_json(digests)  # also a barrier: every rank's files are on disk
        digests = {k: v for g in gathered for k, v in g.items()}
    if rank == 0:
        manifest = {"format": FORMAT, "version": VERSION, "step": step, "world_size": world_size,
                    "files": dict(sorted(digests.items()))}
        save_json(manifest, d / MANIFEST)
        _fsync_dir(d)
        prune(out_dir)
    if world_size > 1:
        dist.barrier()  # nobody moves on (or dies) before the manifest exists
    return d


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_manifest(d: Path) -> dict | None:
    try:
        m = json.loads((d / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(m, dict) or m.get("format") != FORMAT or not isinstance(m.get("files"), dict):
        return None
    return m


def verify(d: Path, manifest: dict) -> str | None:
    """Why a checkpoint is unusable (first failing file), or None when every file verifies."""
    for name, digest in manifest["files"].items():
        path = d / name
        if not path.is_file():
            return f"{name} is missing"
        if sha256_file(path) != digest:
            return f"{name} fails its SHA-256"
    return None


def step_dirs(out_dir: Path) -> list[Path]:
    root = Path(out_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    return sorted((p for p in root.iterdir() if p.is_dir() and p.name.startswith("step_")), reverse=True)


def latest_complete(out_dir: Path) -> tuple[Path | None, list[str]]:
    """The newest checkpoint whose manifest exists and whose files verify, and why newer ones did not."""
    skipped = []
    for d in step_dirs(out_dir):
        manifest = read_manifest(d)
        if manifest is None:
            skipped.append(f"{d.name}: no complete manifest")
            continue
        problem = verify(d, manifest)
        if problem is None:
            return d, skipped
        skipped.append(f"{d.name}: {problem}")
    return None, skipped


def prune(out_dir: Path, keep: int = KEEP) -> None:
    """Delete everything older than the `keep` newest complete checkpoints (complete or not)."""
    complete = [d for d in step_dirs(out_dir) if read_manifest(d) is not None]
    if len(complete) <= keep:
        return
    oldest_kept = complete[keep - 1].name
    for d in step_dirs(out_dir):
        if d.name < oldest_kept:
            shutil.rmtree(d, ignore_errors=True)


def load_model_state(d: Path) -> dict[str, torch.Tensor]:
    return torch.load(d / "model.pt", map_location="cpu", weights_only=True, mmap=True)


def load_rank_states(d: Path, manifest: dict) -> list[dict]:
    """Every rank's saved state, in rank order (all of them: a new world size re-shards from the union)."""
    n = manifest["world_size"]
    return [torch.load(d / rank_file(r), map_location="cpu", weights_only=True, mmap=True) for r in range(n)]


def load_meta(d: Path) -> dict:
    return json.loads((d / "meta.json").read_text())
