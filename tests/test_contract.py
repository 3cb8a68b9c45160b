"""plan.json's contract: one writer, one typed reader that refuses what is wrong with one line naming the
key and the valid range, and round trips for many plans of both architectures."""

from __future__ import annotations

import copy
import json
import random
import subprocess
import sys

import pytest

import chatplan
from chatplan.contract import SCHEMA_VERSION, RunBinding, bind, plan_document, read_plan
from chatplan.errors import InvalidInput

PLANS = [dict(depth=d) for d in (2, 12, 20, 26, 32)] + [
    dict(tier="tiny"), dict(tier="speedrun"), dict(arch="nanochat-2026", depth=12),
    dict(arch="nanochat-2026", depth=25, gpus="16xH100"), dict(depth=20, gpus="1xA100-80GB", kv_heads=2),
    dict(arch="nanochat-2026", tier="tiny", gpus="2xCPU", gpus_per_node=2)]


@pytest.mark.parametrize("kw", PLANS, ids=lambda kw: json.dumps(kw))
def test_round_trip(kw):
    p = chatplan.plan(**kw)
    doc = json.loads(json.dumps(plan_document(p)))  # through JSON, as written to disk
    back = read_plan(doc)
    assert back.shape == p.shape and back.arch is p.arch and back.precision == p.precision
    assert (back.steps, back.total_batch_size, back.device_batch_size, back.grad_accum_steps) == (
        p.horizon.steps, p.horizon.total_batch_size, p.parallelism.device_batch_size, p.parallelism.grad_accum_steps)
    assert back.params == p.params.to_dict() and back.flops_per_token == p.flops_per_token
    assert back.run is None
    run = RunBinding("/r", "/d", "sample", 0, "shard_01822.parquet", "/t", None)
    assert read_plan(bind(doc, run)).run == run


def test_schema_1_is_refused_with_the_way_to_regenerate():
    doc = plan_document(chatplan.plan(depth=4))
    doc["schema_version"] = 1
    with pytest.raises(InvalidInput, match=r"schema_version 1; this chatplan reads 2: regenerate it with"):
        read_plan(doc)


def test_the_trainer_refuses_a_schema_1_plan_in_one_line(tmp_path):
    doc = plan_document(chatplan.plan(depth=2, gpus="1xCPU", vocab_size=512, seq_len=64, steps=2))
    doc["schema_version"] = 1
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(doc))
    r = subprocess.run([sys.executable, "-m", "chatplan_train", "--plan", str(path), "--out", str(tmp_path / "o")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "schema_version 1" in lines[0] and "--save-plan" in lines[0]


# --- corrupted documents: each refused with one line naming a key, or accepted only when still valid ----------
BASE = plan_document(chatplan.plan(depth=4, gpus="1xCPU", vocab_size=512, seq_len=64, steps=20))


def paths(node, prefix=()):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from paths(v, (*prefix, i))
    yield prefix


def set_at(doc, path, value):
    node = doc
    for part in path[:-1]:
        node = node[part]
    if value is DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value


DELETE = object()
BAD_VALUES = [DELETE, None, -1, 0, -5.0, float("nan"), "x", True, [], {}, 10**30, 1.5, [1, 2, 3]]
# the keys the trainer and the runner read (what a corruption must not slip through)
READ = ("schema_version", "arch.name", "model", "params", "flops_per_token", "horizon.steps",
        "horizon.total_batch_size", "parallelism.world_size", "parallelism.nodes", "parallelism.nproc_per_node",
        "parallelism.device_batch_size", "parallelism.grad_accum_steps", "precision", "optimizer", "eval",
        "tokenizer.vocab_size", "data.source", "data.download_shards", "data.train_shards_needed",
        "data.validation_shard", "device", "predictions", "memory.weights", "memory.optimizer_state")
# of those, where no corrupted value can be harmless (predictions may be null; a float may equal an int)
STRICT = ("schema_version", "arch.name", "model", "params", "flops_per_token", "horizon", "parallelism", "precision",
          "device", "tokenizer", "data.source")


def corruptions(n: int, seed: int = 7):
    rng = random.Random(seed)
    candidates = [p for p in paths(BASE) if p and any(".".join(map(str, p)).startswith(k) for k in READ)
                  and not (len(p) > 1 and p[0] == "optimizer" and isinstance(p[-1], int))]
    for _ in range(n):
        path = rng.choice(candidates)
        yield path, rng.choice(BAD_VALUES)


@pytest.mark.parametrize("path,value", list(corruptions(120)), ids=lambda x: str(x))
def test_corrupted_plans_are_refused_in_one_line(path, value):
    doc = copy.deepcopy(BASE)
    set_at(doc, path, value)
    try:
        read_plan(json.loads(json.dumps(doc, allow_nan=True)))
    except InvalidInput as e:
        msg = str(e)
        assert "\n" not in msg and msg.startswith(("plan.json", "unknown architecture")), msg
        return
    # accepted: only where the corruption is harmless (a null prediction is "not predicted")
    keys = ".".join(map(str, path))
    assert not keys.startswith(STRICT), f"accepted a corrupted {keys} = {value!r}"


@pytest.mark.parametrize("key,value,message", [
    ("horizon.steps", -5, "horizon.steps` must be an integer >= 1"),
    ("optimizer.ns_steps", 0, "optimizer.ns_steps` must be an integer >= 1"),
    ("eval.every", -1, "eval.every` must be an integer >= 0"),
    ("optimizer.warmdown_ratio", 1.5, "optimizer.warmdown_ratio` must be in [0, 1]"),
    ("optimizer.adam_betas", [0.9], "optimizer.adam_betas` must be a list of 2 values"),
    ("optimizer.ns_coefficients", [1.0, 2.0], "optimizer.ns_coefficients` must be a list of 3 values"),
    ("optimizer", {}, "`optimizer` must be a non-empty object"),
    ("schema_version", 3, "schema_version 3"),
])
def test_named_refusals(key, value, message):
    doc = copy.deepcopy(BASE)
    set_at(doc, tuple(key.split(".")), value)
    with pytest.raises(InvalidInput) as e:
        read_plan(doc)
    assert message in str(e.value)


def test_schema_version_is_the_contracts():
    assert BASE["schema_version"] == SCHEMA_VERSION == 2
