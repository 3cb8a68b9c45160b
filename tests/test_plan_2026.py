"""Planning today's nanochat (`--arch nanochat-2026`): the speedrun, FIELD N1-N4, SPEC-2026 §10's resident
memory, nanochat's constraints as errors or automatic choices. The architecture's own formulas are in
tests/test_arch_2026.py."""

import json
import subprocess
import sys

import pytest

import chatplan
from chatplan.arch import get_arch
from chatplan.errors import InvalidInput
from chatplan.facts import model_facts
from tests.helpers import precision

A26 = get_arch("nanochat-2026")
GIB = 2**30
MIB = 2**20


def plan26(**kw):
    return chatplan.plan(arch="nanochat-2026", gpus=kw.pop("gpus", "8xH100"), **kw)


def test_the_speedrun_tier():
    p = chatplan.plan(tier="speedrun")
    assert (p.arch.name, p.depth, p.precision.matmul_dtype, p.request.data_ratio) == ("nanochat-2026", 24, "float8", 8)
    assert (p.horizon.steps, p.horizon.tokens) == (5_568, 5_838_471_168)
    assert p.horizon.total_flops == pytest.approx(2.788002e19, rel=1e-6)
    # device batch 16 x accumulation 4 chosen automatically: 32 is predicted not to fit
    assert (p.parallelism.device_batch_size, p.parallelism.grad_accum_steps, p.parallelism.batch_source) == \
        (16, 4, "auto")
    assert plan26(depth=24, fp8=True, data_ratio=8, device_batch_size=32).memory.verdict == "oom"
    facts = p.optimizer["facts"]
    assert facts["batch_lr_scale_line"] == "Scaling LRs by 1.4142 for batch size 1,048,576 (reference: 524,288)"
    assert facts["warmdown"] == "3,619 steps starting at step 1,949 of 5,568"


def test_field_n1_time_within_ten_percent_with_the_predicted_mfu():
    """N1: d24 fp8, ratio 8, 8xH100, batch 16 x 4: 5,934 s of training (nanochat LEADERBOARD Run 6)."""
    p = chatplan.plan(tier="speedrun")
    assert p.time.mfu_source == "predicted"
    assert p.time.train_hours * 3600 == pytest.approx(5_934, rel=0.10)


def test_field_n2_time_and_memory():
    """N2: d24 bf16, ratio 10.5, batch 16 x 4: 157.64 min, 62,386.67 MiB allocated (the memory fit's row)."""
    p = plan26(depth=24, data_ratio=10.5, device_batch_size=16)
    assert p.horizon.steps == 7_308 and p.parallelism.grad_accum_steps == 4
    assert p.time.train_hours * 60 == pytest.approx(157.64, rel=0.10)
    assert p.memory.peak_allocated_gib * GIB / MIB == pytest.approx(62_386.67, rel=0.07)


def test_field_n3_batch_32_at_d24_does_not_fit():
    for fp8 in (False, True):
        assert plan26(depth=24, fp8=fp8, device_batch_size=32).memory.verdict == "oom"


@pytest.mark.parametrize("depth", range(12, 33, 2))
def test_field_n4_the_scripts_batch_fits_at_every_even_depth(depth):
    batch = 32 if depth < 20 else 16 if depth < 28 else 8
    assert plan26(depth=depth, device_batch_size=batch).memory.verdict != "oom"


def test_fp8_changes_saved_tensors_and_step_time_only():
    bf16, fp8 = plan26(depth=26, device_batch_size=16), plan26(depth=26, device_batch_size=16, fp8=True)
    # chatplan trains fp8 through torchao's Float8Linear: no bf16 weight copies (eager it saves the same
    # bf16 inputs: tests/test_train_2026.py::test_fp8_terms_describe_what_torchao_saves); compiled, the 6d
    # inputs per layer that only fp8 linears read are kept as 1-byte copies instead of 2-byte ones (the
    # tensors: tests/test_memory_vs_trainer.py's partition; the byte: SPEC-2026 §9's d26 "~9 GB lower")
    d, L, tokens = 1664, 26, 16 * 2048
    assert bf16.memory.activations - fp8.memory.activations == tokens * L * (2 - 1) * 6 * d
    saved_gb = (bf16.memory.activations - fp8.memory.activations + bf16.memory.autocast_weight_copies
                - fp8.memory.autocast_weight_copies) / 1e9
    assert 8.0 < saved_gb < 11.0  # "~9 GB"
    assert fp8.memory.autocast_weight_copies < bf16.memory.autocast_weight_copies
    for same in ("weights", "gradients", "optimizer_state", "logits"):
        assert getattr(fp8.memory, same) == getattr(bf16.memory, same), same
    assert (fp8.params, fp8.flops_per_token, fp8.horizon) == (bf16.params, bf16.flops_per_token, bf16.horizon)
    # SPEC-2026 §9's d26 measurement, 630K -> 740K tok/s (+17 %), is what the fp8 GEMM factor was fitted to
    assert fp8.step.step_s < bf16.step.step_s
    assert bf16.step.step_s / fp8.step.step_s == pytest.approx(740 / 630, rel=0.01)
    assert bf16.time.tokens_per_second == pytest.approx(630_000, rel=0.10)


# SPEC-2026 §10: resident GiB per GPU (params, grads, AdamW + Muon state, resident) derived from nanochat's code
@pytest.mark.parametrize("depth,world,params,state,resident", [
    (12, 1, 0.74, 0.84 + 0.32, 2.64), (12, 8, 0.74, 0.11 + 0.05, 1.63), (20, 8, 2.48, 0.25 + 0.21, 5.42),
    (24, 1, 3.94, 2.81 + 2.53, 13.22), (24, 8, 3.94, 0.35 + 0.32, 8.54), (26, 8, 4.84, 0.41 + 0.46, 10.56),
    (32, 8, 8.38, 0.59 + 0.75, 18.09)])
def test_resident_memory_agrees_with_spec_table(depth, world, params, state, resident):
    m = model_facts(A26, A26.model_shape(depth), world, precision("cuda", arch="nanochat-2026")).memory
    assert m.weights / GIB == pytest.approx(params, abs=0.006)
    assert m.gradients == m.weights  # full-size gradients on every rank, in the parameters' dtypes
    assert m.optimizer_state_per_rank[0] / GIB == pytest.approx(state, abs=0.011)
    assert (m.weights + m.gradients + m.optimizer_state_per_rank[0]) / GIB == pytest.approx(resident, abs=0.006)
    # the step's transient holds every Muon group's stacked fp32 gradients (twice that at world size 1)
    stacked = 4 * A26.param_counts(A26.model_shape(depth))["transformer_matrices"]
    assert m.optimizer_workspace >= stacked * (2 if world == 1 else 1)


def test_constraints_nanochat_enforces():
    with pytest.raises(InvalidInput, match="world size 6 does not divide the 32,768 rows"):
        plan26(depth=24, gpus="6xH100")
    with pytest.raises(InvalidInput, match="compute capability >= 8.9"):
        plan26(depth=24, gpus="8xA100-80GB", fp8=True)
    with pytest.raises(InvalidInput, match="nanochat-2025 trains in bf16 only"):
        chatplan.plan(depth=24, fp8=True)
    # d8 on 8 GPUs: the automatic batch divides (nanochat's default 32 would assert) and says why not more
    d8 = plan26(depth=8)
    assert d8.horizon.total_batch_size == 262_144
    assert d8.parallelism.device_batch_size == 16 and d8.parallelism.grad_accum_steps == 1
    assert any("would not divide" in n for n in d8.notes)
    with pytest.raises(InvalidInput, match="does not divide"):
        plan26(depth=8, device_batch_size=32)


def test_single_rtx5090_d24_batch_2_accumulates_256():
    p = plan26(depth=24, gpus="1xRTX5090", device_batch_size=2)
    assert p.horizon.total_batch_size == 1_048_576 and p.parallelism.grad_accum_steps == 256
    assert any("dense" in w for w in p.warnings)  # no FA3 off Hopper: SDPA with a dense mask


def test_climbmix_data_plan():
    p = chatplan.plan(tier="speedrun")
    assert p.data.validation_shard == "shard_06542.parquet"
    # the best-fit loader keeps ~65 %: the corpus must hold tokens / 0.65
    assert p.data.characters == pytest.approx(p.horizon.tokens / 0.65 * p.request.chars_per_token)
    assert 100 <= p.data.train_shards_needed <= 200  # the LOG: "approx 150 data shards are now needed"
    huge = plan26(depth=32, data_ratio=400)
    assert any("repeats the data" in w for w in huge.warnings)


def test_budget_and_tiers_name_their_architecture():
    p = chatplan.plan(arch="nanochat-2026", budget=100, gpus="8xH100")
    assert p.arch.name == "nanochat-2026" and p.time.cost_usd <= 100 and p.budget.next_cost_usd > 100
    with pytest.raises(InvalidInput, match="nanochat-2025 recipe"):
        chatplan.plan(tier="300", arch="nanochat-2026")
    tiny = chatplan.plan(tier="tiny", arch="nanochat-2026")
    assert tiny.arch.name == "nanochat-2026" and tiny.shape.window_pattern == "SSSL"


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "chatplan", *args], capture_output=True, text=True, timeout=60)


def test_cli_arch_default_and_unknown():
    default = json.loads(cli("estimate", "--depth", "32", "--json").stdout)
    named = json.loads(cli("estimate", "--arch", "nanochat-2025", "--depth", "32", "--json").stdout)
    assert default == named and named["arch"]["nanochat_commit"] == "4cc605b"
    bad = cli("estimate", "--arch", "gpt-5", "--depth", "32")
    assert bad.returncode == 2 and "nanochat-2025, nanochat-2026" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    speed = json.loads(cli("estimate", "--tier", "speedrun", "--json").stdout)
    assert speed["arch"] == {"name": "nanochat-2026", "nanochat_commit": "92d63d4",
                             "summary": chatplan.plan(tier="speedrun").arch.summary}


def test_data_download_fetches_climbmix_shards_and_its_validation_shard(tmp_path):
    from httpserver import ShardServer, make_shard, run_cli

    files = {f"shard_{i:05d}.parquet": make_shard(i) for i in (0, 1, 6542)}
    with ShardServer(files) as srv:
        r = run_cli("chatplan.data.cli", "download", "--arch", "nanochat-2026", "--shards", "2", "--dir",
                    tmp_path / "d", "--base-url", srv.url, "--no-progress", "--timeout", "2")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "d").glob("*.parquet")) == sorted(files)
    # the late-2025 corpus has no shard 6,000; ClimbMix does, and a count beyond it is refused by name
    big = run_cli("chatplan.data.cli", "download", "--arch", "nanochat-2026", "--shards", "7000", "--dir",
                  tmp_path / "e", "--base-url", "http://127.0.0.1:9")
    assert big.returncode == 2 and "1..6,542" in big.stderr and "shard_06542" in big.stderr


@pytest.mark.parametrize("depth,world", [(4, 1), (12, 8), (24, 8), (25, 8)])
def test_resident_weights_equal_a_meta_device_model_built_from_the_spec(depth, world):
    """SPEC-2026 §2's tensors built on torch's meta device (independently of the architecture module):
    wte and the value embeddings in bf16, every other tensor an fp32 master; gradients the same."""
    import math

    import torch

    d = math.ceil(depth * 64 / 128) * 128
    heads, vocab = d // 128, 32_768
    ve_layers = [i for i in range(depth) if i % 2 == (depth - 1) % 2]
    with torch.device("meta"):
        tensors = [torch.empty(vocab, d, dtype=torch.bfloat16)]  # wte
        tensors += [torch.empty(vocab, d, dtype=torch.bfloat16) for _ in ve_layers]  # value embeddings
        tensors += [torch.empty(vocab, d)]  # lm_head
        for i in range(depth):
            tensors += [torch.empty(d, d) for _ in range(4)] + [torch.empty(4 * d, d), torch.empty(d, 4 * d)]
            if i in ve_layers:
                tensors.append(torch.empty(heads, 12))  # ve_gate
        tensors += [torch.empty(depth), torch.empty(depth), torch.empty(1, 24), torch.empty(1), torch.empty(1)]
    real = sum(t.numel() * t.element_size() for t in tensors)
    m = model_facts(A26, A26.model_shape(depth), world, precision("cuda", arch="nanochat-2026")).memory
    assert m.weights == m.gradients == real
