"""An sbatch script for a plan: SLURM allocates the nodes, `srun` starts one torchrun agent per node, and
the agents meet at a c10d rendezvous on the first node of the allocation.

Users of multi-node fleets get their nodes from SLURM; starting every node by hand (`--node-rank`) is
what this replaces. The run directory must be on a filesystem every node sees (it holds the plan, the
checkpoints and the report).
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from chatplan.runner.launch import DEFAULT_RDZV_PORT, trainer_args


def sbatch_script(*, job_name: str, nodes: int, gpus_per_node: int, plan_path: Path, run_dir: Path,
                  steps: int | None, resume: bool, save_every: int | None, python: str = sys.executable,
                  time_limit_minutes: int | None = None, port: int = DEFAULT_RDZV_PORT, gpus: bool = True) -> str:
    """The script text. `$SLURM_JOB_NODELIST`'s first host is the rendezvous; every node runs one agent
    with `--nproc-per-node` = GPUs per node; the job id makes the rendezvous id unique."""
    train = shlex.join(trainer_args(plan_path, run_dir, steps, resume, save_every))
    lines = [
        "#!/bin/bash",
        f"#SBATCH --job-name={job_name}",
        f"#SBATCH --nodes={nodes}",
        "#SBATCH --ntasks-per-node=1",
        *([f"#SBATCH --gpus-per-node={gpus_per_node}"] if gpus else []),  # CPU fleets ask for no GPUs
        f"#SBATCH --output={run_dir}/slurm-%j.out",
    ]
    if time_limit_minutes:
        lines.append(f"#SBATCH --time={time_limit_minutes}")
    lines += [
        "set -euo pipefail",
        "# the first node of the allocation hosts the c10d rendezvous",
        'head=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
        f"cd {shlex.quote(str(run_dir))}",
        f"srun --kill-on-bad-exit=1 {shlex.quote(python)} -m torch.distributed.run \\",
        f"  --nnodes {nodes} --nproc-per-node {gpus_per_node} \\",
        f'  --rdzv-backend c10d --rdzv-endpoint "$head:{port}" --rdzv-id "chatplan-$SLURM_JOB_ID" \\',
        f"  {train}",
        "",
    ]
    return "\n".join(lines)
