"""Greedy samples from a run's newest complete checkpoint, for the end-of-run report.

    python -m chatplan_train.sample --run RUN_DIR [--tokens 32] "prompt one" "prompt two" ...

Prints JSON: {"step": N, "samples": [{"prompt": ..., "completion": ...}, ...]}. Greedy decoding
(argmax) keeps the report deterministic; each prompt starts with the BOS token, as training did.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import torch

from chatplan.errors import EXIT_INVALID, EXIT_RUNTIME, ChatplanError, InvalidInput
from chatplan.tokenizer import load_tokenizer
from chatplan_train import checkpoint as ckpt
from chatplan_train.config import load_plan, run_binding
from chatplan_train.recipe import recipe_for


@torch.no_grad()
def generate(model: torch.nn.Module, ids: list[int], max_new_tokens: int, seq_len: int) -> list[int]:
    out = list(ids)
    for _ in range(max_new_tokens):
        context = torch.tensor([out[-seq_len:]], dtype=torch.long)
        logits = model(context)  # (1, T, V)
        out.append(int(logits[0, -1].argmax()))
    return out[len(ids):]


def sample_run(run_dir: Path, prompts: list[str], max_new_tokens: int = 32) -> dict:
    # One sequence at a time is far too little work to share between threads: with several, OpenMP's
    # spin-waiting makes decoding ~50x slower on a busy machine.
    torch.set_num_threads(1)
    doc = load_plan(run_dir / "plan.json")
    shape = doc.shape
    d, _ = ckpt.latest_complete(run_dir)
    if d is None:
        raise InvalidInput(f"{run_dir} has no complete checkpoint to sample from")
    model = recipe_for(doc.arch.name).build_model(shape, init=False)  # fp32 on the CPU
    model.load_state_dict({k: v.float() for k, v in ckpt.load_model_state(d).items()})
    model.eval()
    tokenizer = load_tokenizer(Path(run_binding(doc).tokenizer_dir))
    samples = []
    for prompt in prompts:
        ids = [tokenizer.bos_id] + tokenizer.encode(prompt)
        completion = tokenizer.decode(generate(model, ids, max_new_tokens, shape.sequence_len))
        samples.append({"prompt": prompt, "completion": completion})
    return {"step": ckpt.load_meta(d).get("step"), "samples": samples}


def main(argv: list[str] | None = None) -> int:
    warnings.filterwarnings("ignore", message=".*Failed to initialize NumPy.*")  # torch without numpy
    p = argparse.ArgumentParser(prog="python -m chatplan_train.sample")
    p.add_argument("--run", required=True, type=Path)
    p.add_argument("--tokens", type=int, default=32)
    p.add_argument("prompts", nargs="+")
    args = p.parse_args(argv)
    try:
        print(json.dumps(sample_run(args.run, args.prompts, args.tokens)))
        return 0
    except ChatplanError as e:
        print(f"chatplan_train.sample: {e}", file=sys.stderr)
        return e.exit_code if e.exit_code else EXIT_INVALID
    except Exception as e:  # the runner shows stderr as a one-line warning: no traceback
        first = str(e).splitlines()[0] if str(e) else ""
        print(f"chatplan_train.sample: {type(e).__name__}: {first}", file=sys.stderr)
        return EXIT_RUNTIME


if __name__ == "__main__":
    sys.exit(main())
