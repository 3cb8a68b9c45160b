"""python -m chatplan_train --plan plan.json [--steps N] [--out DIR] [--[no-]compile] [--eval-every N]
                                            [--save-every N] [--resume]

Alone it trains on one process; under torchrun (`torchrun --nproc_per_node=8 -m chatplan_train ...`)
every rank runs this same entry point. Bad input is refused with one line on stderr and exit 2, a
failed run exits 3, a run stopped by SIGTERM/SIGINT checkpoints and exits 130.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

from chatplan.errors import EXIT_INTERRUPTED, EXIT_INVALID, EXIT_RUNTIME, ChatplanError, InvalidInput


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not argparse's usage block
        print(f"chatplan_train: {message}", file=sys.stderr)
        raise SystemExit(EXIT_INVALID)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = _Parser(prog="python -m chatplan_train",
                description="Train the model a chatplan plan.json describes.")
    p.add_argument("--plan", required=True, help="plan.json written by `chatplan run` (or `chatplan estimate "
                   "--save-plan`, plus a run section)")
    p.add_argument("--steps", type=int, help="optimizer steps (default: the plan's horizon)")
    p.add_argument("--out", help="output directory: metrics.jsonl, report.json, checkpoints/")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile the model (default: the plan's precision.compile)")
    p.add_argument("--eval-every", type=int, help="validation bpb every N steps (0: never)")
    p.add_argument("--save-every", type=int,
                   help="checkpoint every N steps (0: only at the end and on signals)")
    p.add_argument("--resume", action="store_true", help="continue from the newest complete checkpoint")
    return p.parse_args(argv)


def resolve_paths(run) -> tuple[Path, list[Path], Path, int]:
    """(tokenizer dir, training shards, validation shard, planned training shards) from the run binding."""
    from chatplan.data.shards import train_shard_paths

    data_dir = Path(run.data_dir)
    shards = train_shard_paths(data_dir, run.validation_shard)
    if run.train_shards > 0:
        shards = shards[:run.train_shards]
    if not shards:
        raise InvalidInput(f"no training shards in {data_dir}: run `chatplan data download` "
                           "(or use the sample corpus) first")
    return Path(run.tokenizer_dir), shards, data_dir / run.validation_shard, run.train_shards


def main(argv: list[str] | None = None) -> int:
    warnings.filterwarnings("ignore", message=".*Failed to initialize NumPy.*")  # torch without numpy
    args = parse_args(argv)
    rank = int(os.environ.get("RANK", "0"))
    try:
        from chatplan.tokenizer import load_tokenizer
        from chatplan_train.config import check_tokenizer, load_plan, make_config, run_binding

        doc = load_plan(args.plan)
        world = int(os.environ.get("WORLD_SIZE", "1"))
        cfg = make_config(doc, world, out=args.out, steps=args.steps, compile=args.compile,
                          eval_every=args.eval_every, save_every=args.save_every, resume=args.resume)
        tok_dir, shards, val, planned = resolve_paths(run_binding(doc))
        tokenizer = load_tokenizer(tok_dir)
        check_tokenizer(doc, tokenizer.vocab_size, tokenizer.ranks_sha256)

        import torch  # only after the cheap checks: a bad plan is refused before torch loads

        from chatplan_train.loop import init_runtime, run

        if cfg.device_type == "cuda":
            os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
        rt = init_runtime(cfg.device_type)
        if rt.master and planned and len(shards) < planned:
            print(f"note: {len(shards)} of the plan's {planned} training shards are present; "
                  "the data repeats after them", flush=True)
        if rt.master and not val.is_file():
            print(f"note: validation shard {val} is missing: no validation bpb", flush=True)
        try:
            _, code = run(cfg, rt, tokenizer, shards, val if val.is_file() else None)
        finally:
            if torch.distributed.is_initialized():
                torch.distributed.destroy_process_group()
        return code
    except ChatplanError as e:
        print(f"chatplan_train: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("chatplan_train: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as e:  # a failed run: one line (rank-tagged), not a traceback
        first = str(e).splitlines()[0] if str(e) else ""
        print(f"chatplan_train: rank {rank}: {type(e).__name__}: {first}", file=sys.stderr)
        if os.environ.get("CHATPLAN_TRACEBACK"):
            raise
        return EXIT_RUNTIME


if __name__ == "__main__":
    sys.exit(main())
