"""The redesign changed no figure: every plan of main at 8520f67 (schema 1), for 201 input combinations,
is reproduced by today's planner, mapped back from schema 2. Integers and strings exactly, floats to
1e-12 relative; errors with the same line and exit code. Every intended difference is listed below.

The fixture was made by scripts/make_behaviour_fixture.py on a worktree of 8520f67.
"""

import gzip
import json
import math
import re
from pathlib import Path

import pytest

import chatplan
from chatplan.contract import plan_document
from chatplan.errors import ChatplanError

FIXTURE = Path(__file__).parent / "fixtures" / "plans_8520f67.json.gz"
CASES = json.loads(gzip.open(FIXTURE, "rt").read())["cases"]

# (key, reason): what schema 2 says differently on purpose. Keys not listed must be equal.
ALLOWED = {
    "schema_version": "schema 2: plan.json has one owner (chatplan.contract) and a typed reader",
    "chatplan_version": "the version went up with the schema",
    "tier.note": "midtraining is no longer named: nanochat removed it (SPEC-2026 §12)",
}
# sections and keys schema 2 adds (dropped before comparing), with why
ADDED = {
    "arch": "the architecture is a value: name, nanochat commit, summary",
    "scaling_params": "what the ratio multiplies, named (2026's ratio counts only scaling parameters)",
    "precision": "one precision policy, obeyed by the trainer (replaces device.dtype / device.compile)",
    "inputs.arch": "--arch", "inputs.window_pattern": "--window-pattern", "inputs.fp8": "--fp8",
    "inputs.budget": "every input is listed (None when not given)",
    "model.arch": "", "model.padded_vocab_size": "2026 pads the vocabulary", "model.window_sizes": "sliding windows",
    "model.value_embed_layers": "value embeddings", "model.aspect_ratio": "the reader re-derives the shape",
    "model.window_pattern": "the reader re-derives the windows",
    "horizon.total_batch_source": "2026's total batch is automatic",
    "fleet.gpu_spec.compute_capability": "decides bf16 / fp8",
    "data.dataset": "the corpus is the architecture's",
    "notes": "facts that are not warnings (e.g. why the automatic batch is smaller than what fits)",
    "bands": "an error band on every predicted figure, from the validation residuals (chatplan.accuracy)",
    "memory.source": "what the memory figures come from: the model, or a probe's / run's measurement",
    "forecast": "the capability forecast: val bpb and CORE with bands (issue 14, chatplan.forecast)",
    "target": "the target search's choice (--target-core / --target-bpb / --tier gpt2)",
    "inputs.target_core": "--target-core", "inputs.target_bpb": "--target-bpb",
}
# Model changes made on purpose after the redesign (issue 13), each with the cases and keys it moves.
# The fit verdict is `tight` when the high end of the measured memory band crosses capacity (was: within
# a fixed 5 % of it): `fits` and `tight` may trade places and the margin moves, but `oom` stays `oom`.
VERDICT_CHANGE = "memory.verdict"
MARGIN_CHANGE = "memory.margin_gib"
# The RTX 5090's matmul efficiency is a public measurement now (254 TFLOP/s, was an assumed 0.75): its
# times move, and a budget on it buys a different depth.
RTX5090_TIME_KEYS = ("time", "step_model", "predictions", "fleet.gpu_spec.matmul_efficiency")


# The compiled activation terms are what inductor's partitioner keeps (36 instead of 24 bytes x d per layer:
# tests/test_memory_vs_trainer.py) and the compiled loss path holds 2 bytes x V (the bf16 logits, whose storage
# takes their gradient; before, 8 for late 2025 and 10 for 2026: the held-out runs of
# chatplan/field_heldout.json): the memory of every compiled plan moves, with it the automatic batch, and so
# the step time, the predictions, the budget's choice and the warnings that quote them.
COMPILED_TERMS_KEYS = ("memory", "parallelism", "time", "step_model", "predictions", "warnings", "budget")


def _compiled(kwargs: dict) -> bool:
    return bool(kwargs.get("compile", "CPU" not in str(kwargs.get("gpus", ""))))


def _moved_on_purpose(kwargs: dict, path: str) -> bool:
    if _compiled(kwargs) and (path.split(".")[0].split("[")[0] in COMPILED_TERMS_KEYS
                              or path == "tier.budget_minus_pretraining_usd"):
        return True
    if "RTX5090" in str(kwargs.get("gpus", "")):
        return ("budget" in kwargs or path.split(".")[0] in RTX5090_TIME_KEYS
                or path in (MARGIN_CHANGE, *RTX5090_TIME_KEYS))
    return path == MARGIN_CHANGE


# error lines that changed on purpose: old text -> (new text, reason)
ERROR_CHANGES = {
    "valid tiers are 100, 300, 1000, tiny": ("valid tiers are 100, 300, 1000, speedrun, tiny, gpt2",
                                            "the 2026 speedrun tier, and gpt2 (a target CORE, issue 14)"),
}
# schema 1 placeholders that schema 2 no longer writes (the run section binds them)
REMOVED = {"data.dir", "data.train_shards", "tokenizer.dir", "tokenizer.ranks_sha256", "device.dtype",
           "device.compile"}


def to_schema1(doc: dict, old: dict) -> dict:
    """Schema 2 mapped onto schema 1's layout (only for comparing)."""
    out = json.loads(json.dumps(doc))
    for dotted in ADDED:
        node, *_ = out, None
        parts = dotted.split(".")
        for part in parts[:-1]:
            node = node[part]
        if parts[-1] == "budget" and "budget" in old.get("inputs", {}):
            continue  # schema 1 listed the budget input only when it was given
        node.pop(parts[-1], None)
    out["data"]["source"] = {"dataset": "fineweb", "sample": "sample"}[out["data"]["source"]]
    return out


def compare(old, new, path: str, diffs: list[str], kwargs: dict | None = None) -> None:
    if path in ALLOWED or path in REMOVED or _moved_on_purpose(kwargs or {}, path):
        return
    if path == VERDICT_CHANGE:
        if (old == "oom") != (new == "oom"):
            diffs.append(f"{path}: {old!r} -> {new!r}")
        return
    if isinstance(old, dict) and isinstance(new, dict):
        for k in sorted(set(old) | set(new)):
            key = f"{path}.{k}" if path else k
            if key in REMOVED or key in ALLOWED:
                continue
            if k not in old or k not in new:
                diffs.append(f"{key}: only in {'new' if k in new else 'old'}")
                continue
            compare(old[k], new[k], key, diffs, kwargs)
    elif isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for i, (a, b) in enumerate(zip(old, new)):
            compare(a, b, f"{path}[{i}]", diffs, kwargs)
    elif isinstance(old, float) or isinstance(new, float):
        if not (isinstance(old, (int, float)) and isinstance(new, (int, float))
                and math.isclose(old, new, rel_tol=1e-12, abs_tol=0.0) or old == new):
            diffs.append(f"{path}: {old!r} -> {new!r}")
    elif old != new or type(old) is not type(new):
        diffs.append(f"{path}: {old!r} -> {new!r}")


def test_the_fixture_is_the_stated_grid():
    assert len(CASES) >= 200
    kinds = {tuple(sorted(c["kwargs"])) for c in CASES}
    assert ("depth",) in kinds and ("budget",) in kinds and ("tier",) in kinds
    assert {c["kwargs"].get("tier") for c in CASES} >= {"100", "300", "1000", "tiny"}


@pytest.mark.parametrize("case", CASES, ids=lambda c: json.dumps(c["kwargs"], sort_keys=True))
def test_plan_unchanged(case):
    try:
        new = plan_document(chatplan.plan(**case["kwargs"]))
    except ChatplanError as e:
        assert "error" in case, f"now refused: {e}"
        expected = case["error"]
        for old, (new, _reason) in ERROR_CHANGES.items():
            expected = expected.replace(old, new)
        got = str(e)
        if _compiled(case["kwargs"]):  # the memory a refused compiled plan needs moved (COMPILED_TERMS_KEYS)
            got, expected = (re.sub(r"[0-9.]+ GiB needed", "_ GiB needed", t) for t in (got, expected))
        assert (got, e.exit_code) == (expected, case["exit_code"])
        return
    assert "plan" in case, f"was refused ({case.get('error')}), now planned"
    old = case["plan"]
    diffs: list[str] = []
    compare(old, to_schema1(new, old), "", diffs, case["kwargs"])
    assert not diffs, "\n".join(diffs[:20])
