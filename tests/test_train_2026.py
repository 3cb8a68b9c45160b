"""The 2026 trainer's pieces against the planner and against each other: parameter counts at every depth,
resident bytes per rank, best-fit packing and its resume, one process with accumulation 2 == two gloo
ranks, and FlexAttention == the SDPA window mask."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from chatplan.arch import get_arch
from chatplan_train.loop import sync_stats, train_step
from chatplan_train.model_2026 import build_model, windowed_attention
from chatplan_train.optim_2026 import MuonAdamW
from chatplan_train.packing import PackState, packed_batches
from tests.helpers import facts
from tests.test_train_distributed import free_port

ARCH = get_arch("nanochat-2026")
SCALARS = ("resid_lambdas", "x0_lambdas", "smear_lambda", "backout_lambda", "smear_gate.weight")


# --- parameter counts: the trainer's module is the planner's model, tensor for tensor ------------------

def group_of(name: str) -> str:
    """The planner's group of a trainer parameter, from its name alone (SPEC-2026 §2)."""
    if name == "transformer.wte.weight":
        return "wte"
    if name.startswith("value_embeds."):
        return "value_embeds"
    if name == "lm_head.weight":
        return "lm_head"
    return "scalars" if name in SCALARS else "transformer_matrices"


@pytest.mark.parametrize("depth", [*range(2, 33, 2), 1, 3, 5, 13, 25])
def test_trainer_parameters_equal_the_planners_at_every_depth(depth):
    shape = ARCH.model_shape(depth)
    model = build_model(shape, device="meta")
    named = {n: tuple(p.shape) for n, p in model.named_parameters()}
    assert list(named.items()) == list(ARCH.param_shapes(shape).items())  # names, order and shapes
    groups: dict[str, int] = {}
    for name, p in model.named_parameters():
        groups[group_of(name)] = groups.get(group_of(name), 0) + p.numel()
    counts = ARCH.param_counts(shape)
    assert {**groups, "total": sum(groups.values())} == dict(counts.groups)
    assert sum(p.numel() for p in model.parameters()) == counts.total


# --- resident bytes: weights, gradients and each rank's optimizer state, byte for byte -----------------

SHAPE = ARCH.model_shape(2, vocab_size=500, seq_len=256)  # vocab padded to 512; window 128 < T: masked
STEPS = 5
B = 2


def settings(lr_scale: float = 1.0) -> dict:
    s = ARCH.optimizer_settings(SHAPE, B * SHAPE.sequence_len * 2, STEPS)
    s["warmup_steps"] = 1  # 40 steps of warmup would leave 5 steps at lr ~0: nothing to compare
    for g in s["adamw_groups"] + s["muon_groups"]:
        g["lr"] *= lr_scale
    return s


def resident_bytes(model: torch.nn.Module, opt: MuonAdamW) -> dict[str, int]:
    params = list(model.parameters())
    state = sum(t.nbytes for t in opt.resident_state())
    return {"weights": sum(p.nbytes for p in params), "gradients": sum(p.grad.nbytes for p in params),
            "state": state}


def batches() -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
    """STEPS steps x 2 micro-batches; ids from a subset of the vocabulary, so the loss can fall."""
    g = torch.Generator().manual_seed(7)
    T = SHAPE.sequence_len
    out = []
    for _ in range(STEPS):
        step = []
        for _ in range(2):
            w = torch.randint(0, 125, (B * T + 1,), generator=g) * 4
            step.append((w[:-1].view(B, T), w[1:].view(B, T)))
        out.append(step)
    return out


def train(rank: int, world: int, accum: int) -> dict:
    torch.manual_seed(0)
    model = build_model(SHAPE)
    opt = MuonAdamW(model, settings(lr_scale=3.0), world_size=world, rank=rank)
    losses, norms, memory = [], [], None
    for step, micro in enumerate(batches()):
        mine = iter(micro if world == 1 else [micro[rank]])
        result = train_step(model, opt, mine, accum, step, STEPS)
        loss, _ = sync_stats(result.loss, False, world)
        losses.append(loss)
        norms.append(result.grad_norm.item())
        memory = memory or resident_bytes(model, opt)  # after the first step: the state exists
    return {"losses": losses, "norms": norms, "memory": memory,
            "weights": {n: p.detach().clone() for n, p in model.state_dict().items()}}


def _worker(rank: int, world: int, port: int, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        torch.save(train(rank, world, accum=1), os.path.join(out, f"rank{rank}.pt"))
        dist.barrier()  # nobody tears gloo down while its peer may still be in a collective
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_ranks_equal_one_process_with_accumulation_and_hold_the_planned_bytes() -> None:
    torch.set_num_threads(1)
    ref = train(0, 1, accum=2)
    assert ref["losses"][-1] < ref["losses"][0] - 0.2, ref["losses"]  # measured 6.215 -> 5.919: real steps
    one = facts(SHAPE, 1, "cpu").memory
    assert ref["memory"] == {"weights": one.weights, "gradients": one.gradients,
                             "state": one.optimizer_state_per_rank[0]}

    with tempfile.TemporaryDirectory() as out:
        mp.spawn(_worker, args=(2, free_port(), out), nprocs=2, join=True)
        ranks = [torch.load(Path(out) / f"rank{r}.pt", weights_only=True) for r in range(2)]
    two = facts(SHAPE, 2, "cpu").memory
    for rank, r in enumerate(ranks):
        assert r["losses"] == pytest.approx(ref["losses"], rel=1e-5)
        assert r["norms"] == pytest.approx(ref["norms"], rel=1e-5)
        for name, w in ref["weights"].items():
            assert (r["weights"][name] - w).abs().max() <= 1e-5 * w.abs().max(), name
        assert r["memory"] == {"weights": two.weights, "gradients": two.gradients,
                               "state": two.optimizer_state_per_rank[rank]}
    assert sum(r["memory"]["state"] for r in ranks) <= one.optimizer_state_per_rank[0] + two.comm_scratch
    for name in ref["weights"]:
        assert torch.equal(ranks[0]["weights"][name], ranks[1]["weights"][name]), name


# --- windowed attention: FlexAttention's block mask computes what the SDPA mask does -------------------

@pytest.mark.parametrize("window", [0, 17, 64])
def test_flex_block_mask_equals_the_sdpa_window_mask(window):
    """The CUDA kernel's mask, checked on the CPU (forward only: torch has no FlexAttention backward on the
    CPU; the backward is the same mask_mod's, differentiated by torch)."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 2, 256, 32) for _ in range(3))
    a = windowed_attention(q, k, v, window, "sdpa-masked")
    b = windowed_attention(q, k, v, window, "flash-windowed")
    assert (a - b).abs().max() <= 1e-5
    full = windowed_attention(q, k, v, 256, "sdpa-masked")  # the window bites: the result differs from full
    assert (full - a).abs().max() > 1e-2


# --- best-fit BOS-aligned packing ------------------------------------------------------------------------

BOS = 0


class CharTokenizer:
    """One token per character (ids 1..); enough to give documents exact lengths."""

    bos_id = BOS
    token_bytes = [0] + [1] * 255

    def encode_batch(self, texts: list[str], num_threads: int = 1) -> list[list[int]]:
        return [[1 + (ord(c) % 250) for c in t] for t in texts]


def write_shard(path: Path, docs: list[str], row_group: int) -> Path:
    pq.write_table(pa.table({"text": docs}), path, row_group_size=row_group)
    return path


def test_best_fit_takes_the_largest_fitting_document_and_crops_the_shortest():
    # with BOS: lengths 5, 3, 9, 2, 4; rows of T+1 = 8
    docs = ["aaaa", "bb", "cccccccc", "d", "eee"]
    with tempfile.TemporaryDirectory() as d:
        shard = write_shard(Path(d) / "s.parquet", docs, row_group=5)
        it = packed_batches(CharTokenizer(), [shard], 1, 7, 0, 1, loop=False, buffer_docs=5)
        rows = [torch.cat([x[0, :1], y[0]]).tolist() for x, y, _ in it]
        # row 1: 5 fits (largest), then 3 (room 3); row 2: 9 does not fit, largest fitting is 4, then 2,
        # then nothing fits the last 2 places: the shortest left (9, the only one) is cropped to 2
        a, b, c, dd, e = ([BOS] + [1 + ord(ch) % 250 for ch in t] for t in docs)
        assert rows[0] == a + b
        assert rows[1] == e + dd + c[:2]
        assert len(rows) == 2  # the buffer is empty: the data ended


def corpus_docs(n: int, seed: int) -> list[str]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 180, (n,), generator=g).tolist()
    return ["".join(chr(97 + (i * 7 + j) % 26) for j in range(k)) for i, k in enumerate(lengths)]


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> list[Path]:
    d = tmp_path_factory.mktemp("packing")
    return [write_shard(d / f"shard_{s:05d}.parquet", corpus_docs(400, s), row_group=50) for s in range(3)]


@pytest.mark.parametrize("world", [1, 2])
def test_rows_start_with_bos_and_every_token_is_accounted_for(shards, world):
    B, T, n = 3, 100, 40
    for rank in range(world):
        it = packed_batches(CharTokenizer(), shards, B, T, rank, world, buffer_docs=30)
        placed = 0
        for _ in range(n):
            x, y, state = next(it)
            assert (x[:, 0] == BOS).all() and torch.equal(x[:, 1:], y[:, :-1])
            placed += B * (T + 1)
        buffered = sum(len(doc) for doc in state.buffer)
        assert state.tokens_read == placed + state.tokens_cropped + buffered
        assert state.tokens_taken == placed + state.tokens_cropped
        # topped up to 30 before every choice, so 29 or 30 after the last one
        assert len(state.buffer) in (29, 30) and 0 < state.tokens_cropped < state.tokens_read
        assert state.row_group % world == rank  # ranks stride over row groups


def test_resume_from_a_checkpointed_state_continues_the_exact_stream(shards):
    B, T = 4, 120
    run = packed_batches(CharTokenizer(), shards, B, T, 0, 1, buffer_docs=25)
    stream = [next(run) for _ in range(90)]  # crosses row groups and shards
    assert stream[-1][2].shard >= 1
    for k in (0, 7, 60):
        saved = stream[k][2].to_dict()
        restored = PackState.from_dict(torch.load(_roundtrip(saved), weights_only=True))
        again = packed_batches(CharTokenizer(), shards, B, T, 0, 1, start=restored, buffer_docs=25)
        for x, y, state in stream[k + 1:]:
            x2, y2, s2 = next(again)
            assert torch.equal(x, x2) and torch.equal(y, y2)
            assert (s2.tokens_read, s2.tokens_cropped, s2.row_group) == (state.tokens_read, state.tokens_cropped,
                                                                         state.row_group)


def _roundtrip(state: dict) -> Path:
    path = Path(tempfile.mkdtemp()) / "state.pt"
    torch.save(state, path)
    return path


# --- what autograd saves: the planner's activation, loss and weight-copy terms vs saved-tensor hooks --------

def saved_bytes(model: torch.nn.Module, batch: int, seq_len: int, vocab: int) -> int:
    from tests.test_memory_vs_trainer import saved_for_backward_bytes

    g = torch.Generator().manual_seed(batch)
    idx = torch.randint(0, vocab, (batch, seq_len), generator=g)
    return saved_for_backward_bytes(model, idx, torch.randint(0, vocab, (batch, seq_len), generator=g))


def per_token_and_fixed(model: torch.nn.Module, seq_len: int, vocab: int) -> tuple[float, float]:
    one, two = saved_bytes(model, 1, seq_len, vocab), saved_bytes(model, 2, seq_len, vocab)
    per_token = (two - one) / seq_len
    return per_token, one - per_token * seq_len


@pytest.mark.parametrize("depth", [2, 4, 6])
def test_cpu_activation_and_fused_loss_terms_match_saved_tensors(depth):
    """The CPU path (fp32, eager, SDPA window mask, fused loss). Measured: the planner is 5.8 %, 7.0 % and
    6.4 % above the saved bytes per token at d2, d4, d6 (it counts c_proj's input copy and the model-level
    tensors generously); the fused loss saves nothing per token and its V x d fp32 gradient once."""
    shape = ARCH.model_shape(depth, vocab_size=2048, seq_len=256)
    terms = facts(shape, 1, "cpu").memory
    assert terms.loss_bytes_per_token == 0 and terms.loss_fixed_bytes == 4 * 2048 * shape.n_embd
    torch.manual_seed(0)
    per_token, fixed = per_token_and_fixed(build_model(shape), 256, 2048)
    predicted = terms.activation_bytes_per_token + terms.loss_bytes_per_token
    assert 1.0 <= predicted / per_token <= 1.09, (per_token, predicted)
    # beside it: the rotary tables and the cached window masks (measured 1.33x, 1.41x, 1.36x)
    assert terms.loss_fixed_bytes <= fixed <= 1.5 * terms.loss_fixed_bytes, (fixed, terms.loss_fixed_bytes)


@pytest.mark.slow
def test_fp8_terms_describe_what_torchao_saves():
    """--fp8 through torchao's Float8Linear (tensorwise): each converted linear saves the same bf16 input as
    without fp8 and no bf16 weight copy (it keeps the fp32 master and casts again in backward). The plan's
    fp8 terms must say exactly that: per-token bytes unchanged, the weight copies of the converted linears
    gone, lm_head included (it runs through its module, then the crop)."""
    pytest.importorskip("torchao.float8")
    from dataclasses import replace

    from tests.helpers import precision

    shape = ARCH.model_shape(2, vocab_size=512, seq_len=128)  # small: bf16 matmuls are slow on this CPU
    measured, predicted = {}, {}
    for fp8 in (False, True):
        policy = replace(precision("cuda", compile=False, arch=ARCH.name), device_type="cpu",
                         attention_kernel="sdpa-dense-mask", matmul_dtype="float8" if fp8 else "bfloat16")
        torch.manual_seed(0)
        measured[fp8] = per_token_and_fixed(build_model(shape, precision=policy), 128, 512)
        predicted[fp8] = ARCH.memory_terms(shape, 1, policy)
    assert measured[True][0] == measured[False][0]  # no per-token saving
    assert predicted[True].activation_bytes_per_token == predicted[False].activation_bytes_per_token
    copies = predicted[False].weight_copies - predicted[True].weight_copies
    assert copies > 0 and measured[False][1] - measured[True][1] == copies  # byte for byte
