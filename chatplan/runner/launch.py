"""Launching the trainer: the exact command for every node, its environment, and running it so that a
signal to `chatplan run` stops the whole launched tree (which checkpoints) before chatplan exits.

The planner side never imports torch: the trainer runs as a child process (`python -m chatplan_train`,
or `python -m torch.distributed.run` — torchrun — when a node runs several processes or the fleet
spans nodes).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from chatplan.errors import InvalidInput

DEFAULT_RDZV_PORT = 29_500


@dataclass(frozen=True)
class Launch:
    """What to run on each node; `argv[r]` is node r's command."""

    argv: list[list[str]]
    world_size: int
    nodes: int
    nproc_per_node: int

    def shell(self, node: int) -> str:
        return shlex.join(self.argv[node])


def trainer_args(plan_path: Path, out_dir: Path, steps: int | None, resume: bool = False,
                 save_every: int | None = None) -> list[str]:
    args = ["-m", "chatplan_train", "--plan", str(plan_path), "--out", str(out_dir)]
    if steps is not None:
        args += ["--steps", str(steps)]
    if save_every is not None:
        args += ["--save-every", str(save_every)]
    if resume:
        args.append("--resume")
    return args


def launch_commands(world: int, nodes: int, nproc: int, plan_path: Path, out_dir: Path, steps: int | None = None,
                    rdzv_endpoint: str | None = None, python: str = sys.executable,
                    resume: bool = False, save_every: int | None = None) -> Launch:
    """The exact command for every node: one process needs no torchrun; one node uses --standalone;
    several nodes meet at a c10d rendezvous on `rdzv_endpoint` (host:port of node 0)."""
    train = trainer_args(plan_path, out_dir, steps, resume, save_every)
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


def child_env() -> dict:
    """The environment for torch child processes: torch warns once per process that numpy is absent,
    which the trainer never needs; keep that noise out of the run's output."""
    quiet = "ignore:Failed to initialize NumPy"
    current = os.environ.get("PYTHONWARNINGS")
    return {**os.environ, "PYTHONWARNINGS": f"{current},{quiet}" if current else quiet}


# The signals `chatplan run` forwards to the launched tree (the trainer checkpoints on each and exits).
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@dataclass(frozen=True)
class Outcome:
    returncode: int  # the trainer's (or torchrun's) exit code
    signal: int | None  # the signal chatplan run received and forwarded, if any


# How long trainers left behind after their launcher exited get to checkpoint before SIGKILL.
LEFTOVER_GRACE_S = 60.0


def execute(launch: Launch, node_rank: int, log_path: Path | None = None) -> Outcome:
    """Run this node's command and wait for it; a signal to chatplan is forwarded to the whole tree.

    The child runs in its own process group, so a signal reaches it once, through us, whether it came
    from a terminal (Ctrl-C), `kill` or a closing session. We forward SIGINT/SIGTERM/SIGHUP to the
    group (torchrun passes it to its workers, which write a checkpoint and exit) and keep waiting: we
    never exit while the trainer still runs, so nothing is left training on a rented node. Workers
    torchrun started in sessions of their own that outlive it are found by their command line and
    stopped the same way (`stop_leftovers`).

    The child's stdout is ours (progress bars stay live); its stderr goes to `log_path` in full, and
    only the trainer's own one-line messages reach our stderr, so torchrun's multi-line failure blocks
    and tracebacks stay in the log.
    """
    log = open(log_path, "ab") if log_path is not None else None
    child = subprocess.Popen(launch.argv[node_rank], env=child_env(), start_new_session=True,
                             stderr=subprocess.PIPE if log else None)
    pump = threading.Thread(target=_pump_stderr, args=(child, log), daemon=True) if log else None
    if pump:
        pump.start()
    received: list[int] = []

    def forward(signum: int, _frame) -> None:
        received.append(signum)
        try:
            os.killpg(child.pid, signum)
        except ProcessLookupError:  # already gone
            pass

    previous = {s: signal.signal(s, forward) for s in FORWARDED}
    try:
        while True:
            try:
                code = child.wait()
                break
            except KeyboardInterrupt:  # only if a handler could not be installed
                forward(signal.SIGINT, None)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if pump:
            pump.join(timeout=10)
        if log:
            log.close()
    stop_leftovers(launch.argv[node_rank], received[0] if received else signal.SIGTERM)
    return Outcome(code, received[0] if received else None)


# lines of the child's stderr that reach the user: the trainer's one-line messages
SHOWN_PREFIXES = (b"chatplan_train", b"warning:", b"note:")


def _pump_stderr(child: subprocess.Popen, log) -> None:
    for line in iter(child.stderr.readline, b""):
        log.write(line)
        log.flush()
        if line.lstrip().startswith(SHOWN_PREFIXES):
            sys.stderr.buffer.write(line)
            sys.stderr.flush()


def trainer_processes(argv: list[str]) -> list[int]:
    """PIDs of live trainer processes started for this plan (by `--plan PATH` in their command line)."""
    try:
        plan = argv[argv.index("--plan") + 1].encode()
    except (ValueError, IndexError):
        return []
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"chatplan_train" in cmd and plan in cmd and int(entry.name) != os.getpid():
            found.append(int(entry.name))
    return found


def stop_leftovers(argv: list[str], signum: int, grace_s: float = LEFTOVER_GRACE_S) -> list[int]:
    """Signal trainers of this plan that outlived their launcher, give them time to checkpoint, then kill
    what remains. Returns the PIDs that were found."""
    import time

    pids = trainer_processes(argv)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)
    deadline = time.monotonic() + grace_s
    while pids and time.monotonic() < deadline:
        pids = [p for p in pids if _alive(p)]
        time.sleep(0.2)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return pids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"  # a zombie has exited


