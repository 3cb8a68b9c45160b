"""Calibration: what real runs achieved, fed back into the next plan's MFU.

A calibration file (JSON, `$CHATPLAN_CALIBRATION`, default `~/.config/chatplan/calibration.json`)
holds one point per recorded run: GPU type, device type, world size, depth, batch, context, chatplan
version, achieved MFU and memory. The CLI loads it and passes it to `plan()` (which reads no files).

A point's MFU is measured against the catalog peak the planner uses (on a GPU that is what the
trainer reports; on a CPU the trainer divides by its own measured matmul peak), so applying it
reproduces the recorded run's throughput.

Which points apply: only those on the same GPU type (and device type — CPU runs never calibrate a
GPU plan) and the same world size; a probe's points (`chatplan probe`: one process, accumulation 1)
apply to every world size of that GPU type, always through the model's ratio (below), so the model
carries what the probe did not measure (world size, accumulation, nodes). A run at the plan's own world
size is preferred to a probe. Among them, by depth:
- points at exactly the plan's depth: their mean MFU;
- points on both sides: linear interpolation in depth between the nearest below and above;
- points on one side only: the nearest point's MFU scaled by the model's own prediction ratio,
  model(this plan) / model(the point's depth, batch and context), so the model's width and batch
  dependence carries the calibration.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from chatplan.errors import InvalidInput
from chatplan.files import write_json_atomic
from chatplan.paths import calibration_path

FILE_VERSION = 1


# A GPU's catalog peak is its datasheet figure: a point above 1 is a measurement error. A CPU's catalog
# peak is a nominal figure of one development box (gpus.json): this machine's cores may be faster, and the
# point (throughput against that figure) still reproduces the measured tok/s, so it may exceed 1.
CPU_POINT_MFU_MAX = 10.0


def max_point_mfu(device_type: str) -> float:
    return CPU_POINT_MFU_MAX if device_type == "cpu" else 1.0


@dataclass(frozen=True)
class CalibrationPoint:
    gpu: str
    device_type: str
    world_size: int
    depth: int
    device_batch_size: int
    seq_len: int
    mfu: float
    chatplan_version: str
    peak_allocated_gib: float | None = None
    peak_reserved_gib: float | None = None
    device_used_gib: float | None = None
    recorded_at: str = ""
    run_dir: str = ""
    vocab_size: int | None = None  # absent in points recorded before it was added: matches any
    arch: str = "nanochat-2025"  # points recorded before architectures were named are late-2025 runs
    source: str = "run"  # "run" (a finished run) | "probe" (chatplan probe: one process, a few steps)
    grad_accum_steps: int = 0  # the point's accumulation (0: not recorded, points from before it was)

    def __post_init__(self) -> None:
        if not (isinstance(self.mfu, (int, float)) and 0 < self.mfu <= max_point_mfu(self.device_type)):
            raise ValueError(f"mfu must be in (0, {max_point_mfu(self.device_type):g}], got {self.mfu!r}")
        for name in ("world_size", "depth", "device_batch_size", "seq_len"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Calibration:
    points: tuple[CalibrationPoint, ...] = ()
    source: str = ""

    def matching(self, arch: str, gpu: str, device_type: str, world_size: int, seq_len: int,
                 vocab_size: int) -> list[CalibrationPoint]:
        """Points of the same architecture, GPU type, device type and world size, for the same context
        and vocab (a T 256 run says little about T 2,048, whose attention and logits shares differ)."""
        same = [p for p in self.points
                if p.arch == arch and p.gpu == gpu and p.device_type == device_type
                and p.seq_len == seq_len and p.vocab_size in (None, vocab_size)]
        runs = [p for p in same if p.source != "probe" and p.world_size == world_size]
        return runs or [p for p in same if p.source == "probe"]


@dataclass(frozen=True)
class CalibratedMFU:
    mfu: float
    points: int  # runs it rests on
    method: str  # "exact" | "interpolated" | "scaled"
    source: str = "run"  # "run" | "probe"
    described: str = ""  # "calibrated from a probe on 1xH100-SXM, 2026-12-03 (scaled)"


def calibrated_mfu(calibration: Calibration | None, arch: str, gpu: str, device_type: str, world_size: int,
                   depth: int, seq_len: int, vocab_size: int, model_mfu: float, model_mfu_at,
                   device_batch_size: int | None = None) -> CalibratedMFU | None:
    """The MFU the recorded runs imply for `depth`, or None when no point applies.

    `model_mfu` is the uncalibrated model's prediction for this plan; `model_mfu_at(point)` its
    prediction for a recorded point's depth, batch and context on the same fleet.
    """
    if calibration is None:
        return None
    pts = calibration.matching(arch, gpu, device_type, world_size, seq_len, vocab_size)
    if not pts:
        return None
    if pts[0].source == "probe":  # one process at accumulation 1: always through the model's ratio
        nearest_depth = min(pts, key=lambda p: abs(p.depth - depth)).depth
        near = [p for p in pts if p.depth == nearest_depth]
        # the probe's batch that is the plan's own, if it ran one: the other batch's speed says less
        near = [p for p in near if p.device_batch_size == device_batch_size] or near
        ratios = [p.mfu / model_mfu_at(p) for p in near]
        day = max(p.recorded_at for p in near)[:10]
        return CalibratedMFU(min(max_point_mfu(device_type), model_mfu * sum(ratios) / len(ratios)), len(near),
                             "scaled", "probe", f"calibrated from a probe on 1x{gpu}, {day} ({len(near)} batch"
                             f"{'es' if len(near) != 1 else ''} at depth {nearest_depth}, scaled by the model)")
    exact = [p.mfu for p in pts if p.depth == depth]
    if exact:
        return CalibratedMFU(sum(exact) / len(exact), len(exact), "exact")
    below = [p for p in pts if p.depth < depth]
    above = [p for p in pts if p.depth > depth]
    if below and above:
        lo = max(below, key=lambda p: p.depth)
        hi = min(above, key=lambda p: p.depth)
        lo_pts = [p for p in below if p.depth == lo.depth]
        hi_pts = [p for p in above if p.depth == hi.depth]
        lo_mfu = sum(p.mfu for p in lo_pts) / len(lo_pts)
        hi_mfu = sum(p.mfu for p in hi_pts) / len(hi_pts)
        w = (depth - lo.depth) / (hi.depth - lo.depth)
        return CalibratedMFU(lo_mfu + w * (hi_mfu - lo_mfu), len(lo_pts) + len(hi_pts), "interpolated")
    nearest_depth = min(pts, key=lambda p: abs(p.depth - depth)).depth
    near = [p for p in pts if p.depth == nearest_depth]
    ratios = [p.mfu / model_mfu_at(p) for p in near]
    return CalibratedMFU(min(1.0, model_mfu * sum(ratios) / len(ratios)), len(near), "scaled")


def load_calibration(path: str | os.PathLike | None, must_exist: bool = True) -> Calibration | None:
    """None for 'none'; an empty calibration for a missing default file (or, with must_exist=False,
    a missing explicit one that a run is about to create); a clear error for an unreadable one."""
    if path is not None and str(path).lower() == "none":
        return None
    file = calibration_path(path)
    if not file.exists():
        if path is not None and must_exist:
            raise InvalidInput(f"calibration file {str(file)!r} does not exist (use --calibration none to skip)")
        return Calibration(source=str(file))
    try:
        doc = json.loads(file.read_text())
        points = tuple(CalibrationPoint(**p) for p in doc["points"])
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as e:
        raise InvalidInput(f"calibration file {str(file)!r} is not valid: {e}") from None
    return Calibration(points=points, source=str(file))


def record_point(path: str | os.PathLike, point: CalibrationPoint) -> int:
    """Append a point (atomic rewrite); returns how many points the file now holds. A run recorded
    again (same run directory) replaces its earlier point: one run is one piece of evidence."""
    file = Path(path)
    existing = load_calibration(file) if file.exists() else Calibration()
    points = [p.to_dict() for p in (existing.points if existing else ())
              if not (point.run_dir and p.run_dir == point.run_dir)]
    points.append(point.to_dict())
    write_json_atomic(file, {"version": FILE_VERSION, "points": points})
    return len(points)


# --- memory from measurements ------------------------------------------------------------------------------
# A measured memory figure carries the run-to-run spread of its own configuration plus what the model adds
# when it carries the figure to another one (world size, accumulation): FIELD L1's four independent reports
# of one configuration agree within 0.003 % (75,422.02-75,424.17 MiB); the carried part is layout
# arithmetic (optimizer-state sharding, the batch's activations), so the band is set well above that spread.
CALIBRATED_MEMORY_REL_ERROR = 0.02


@dataclass(frozen=True)
class CalibratedMemory:
    """The memory figures of a plan as measured (GiB), carried to the plan by the model."""
    peak_allocated_gib: float
    peak_reserved_gib: float | None
    peak_device_gib: float | None
    points: int
    described: str


def _carried(measured: list[tuple[int, float, float]], model_here: float, batch: int) -> float:
    """measured: (batch, measured, the model's figure for that point). One point: its residual; points at
    two or more batches: the residual's line in the batch (a per-sequence and a fixed part)."""
    if len({b for b, _, _ in measured}) < 2:
        residual = sum(m - pred for _, m, pred in measured) / len(measured)
        return model_here + residual
    lo = min(measured, key=lambda x: x[0])
    hi = max(measured, key=lambda x: x[0])
    slope = ((hi[1] - hi[2]) - (lo[1] - lo[2])) / (hi[0] - lo[0])
    return model_here + (lo[1] - lo[2]) + slope * (batch - lo[0])


def calibrated_memory(calibration: Calibration | None, arch: str, gpu: str, device_type: str, world_size: int,
                      depth: int, seq_len: int, vocab_size: int, batch: int, model_here,
                      model_at) -> CalibratedMemory | None:
    """The plan's memory from recorded measurements at its depth, context and vocab on its GPU type, or None.

    `model_here` is the model's (allocated, reserved, device) for this plan; `model_at(point)` the same for a
    recorded point's world size, batch and accumulation. Only CUDA points carry the planner's figures (a CPU
    probe measures RSS, which counts the interpreter; a CPU run measures none)."""
    if calibration is None or device_type != "cuda":
        return None
    pts = [p for p in calibration.matching(arch, gpu, device_type, world_size, seq_len, vocab_size)
           if p.depth == depth and p.peak_allocated_gib is not None]
    if not pts:
        return None
    at = {id(p): model_at(p) for p in pts}
    figures = []
    for i, name in enumerate(("peak_allocated_gib", "peak_reserved_gib", "device_used_gib")):
        rows = [(p.device_batch_size, getattr(p, name), at[id(p)][i]) for p in pts if getattr(p, name) is not None]
        figures.append(_carried(rows, model_here[i], batch) if rows else None)
    kind = "a probe" if pts[0].source == "probe" else f"{len(pts)} run{'s' if len(pts) != 1 else ''}"
    day = max(p.recorded_at for p in pts)[:10]
    where = f"1x{gpu}" if pts[0].source == "probe" else f"{pts[0].world_size}x{gpu}"
    return CalibratedMemory(figures[0], figures[1], figures[2], len(pts),
                            f"memory calibrated from {kind} on {where}, {day} (batch "
                            f"{', '.join(str(p.device_batch_size) for p in pts)}; carried to this plan by the model)")
