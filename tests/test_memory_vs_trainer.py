"""The memory model against the real trainer on CPU: what autograd actually saves for backward."""

import re

import pytest
import torch

from chatplan.arch.nanochat_2025 import (
    activation_bytes_per_token,
    fused_loss_fixed_bytes,
    logits_saved_bytes_per_token,
)
from chatplan_train.model import build_model
from chatplan_train.saved_tensors import kept_for_backward
from tests.helpers import facts, model_shape, optim_2025, precision


def saved_for_backward_bytes(model: torch.nn.Module, idx: torch.Tensor, targets: torch.Tensor) -> int:
    """Bytes of the unique storages autograd saves during one forward, parameters excluded."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            storages[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(idx, targets)
    return sum(storages.values())


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
@pytest.mark.parametrize("seq_len", [64, 256])
def test_eager_fp32_activation_term_matches_saved_tensors(depth, seq_len):
    vocab = 2048
    shape = model_shape(depth, vocab_size=vocab, seq_len=seq_len)
    torch.manual_seed(depth)
    model = build_model(shape)
    mode = precision("cpu", compile=False)
    per_token = activation_bytes_per_token(shape, mode) + logits_saved_bytes_per_token(shape, mode)
    # the CPU fused loss saves lm_head's weight gradient (V x d) whatever the batch; its two chunk
    # buffers are transient (not saved), so they are left out here
    saved_fixed = 4 * vocab * shape.n_embd
    assert fused_loss_fixed_bytes(shape, mode) >= saved_fixed
    for batch in (1, 2, 4):
        idx = torch.randint(0, vocab, (batch, seq_len))
        measured = saved_for_backward_bytes(model, idx, torch.randint(0, vocab, (batch, seq_len)))
        predicted = batch * seq_len * per_token + saved_fixed
        assert predicted == pytest.approx(measured, rel=0.05), (depth, batch, seq_len, measured, predicted)


def test_compiled_cuda_terms_are_what_inductors_partition_keeps():
    """The CUDA policy (bf16 autocast, plain soft-capped loss, compiled), compiled here on the CPU up to
    inductor's partition (chatplan_train.saved_tensors): the per-token activation and loss-path terms
    equal the tensors the partitioner keeps (slope over two batches), the logits
    are kept once, in bf16 (no fp32 B x T x V tensor), and the only batch-independent tensors it keeps
    are the bf16 casts of the matrices and lm_head (the model's weight copies) and the rotary table."""
    vocab, seq_len = 2048, 64
    shape = model_shape(2, vocab_size=vocab, seq_len=seq_len)
    mode = precision("cuda", compile=True)
    torch.manual_seed(0)
    model = build_model(shape, "cpu", precision=mode)
    runs = {}
    for batch in (2, 4):
        idx, targets = (torch.randint(0, vocab, (batch, seq_len)) for _ in range(2))
        runs[batch] = kept_for_backward(model, idx, targets, autocast=True)
    total = {b: sum(t[-1] for t in kept) for b, kept in runs.items()}
    per_token = (total[4] - total[2]) / (2 * seq_len)
    assert per_token == pytest.approx(activation_bytes_per_token(shape, mode)
                                      + logits_saved_bytes_per_token(shape, mode), rel=0.01)
    wide = [(dims, dtype) for _, dims, dtype, _ in runs[2] if dims and dims[-1] == vocab and dims[0] == 2 * seq_len]
    assert wide == [((2 * seq_len, vocab), torch.bfloat16)]
    fixed = total[2] - 2 * seq_len * per_token
    f = facts(shape, 1, "cuda", compile=True).memory
    rotary = model.rotary.nbytes
    assert fixed == pytest.approx(f.weight_copies + rotary, rel=0.01), (fixed, f.weight_copies, rotary)


# --- resident terms, byte for byte against the trainer's optimizer ---------------------------------------
def _resident_tensor_bytes(depth: int, world_size: int, rank: int) -> dict[str, int]:
    """Build the model and the sharded optimizer, take one step, and count the real tensors' bytes."""
    from chatplan_train.optim import ShardedOptimizer

    shape = model_shape(depth, vocab_size=512, seq_len=32)
    torch.manual_seed(0)
    model = build_model(shape)
    opt = ShardedOptimizer(model, optim_2025(), world_size=world_size, rank=rank)
    idx = torch.randint(0, 512, (2, 32))
    model(idx, idx).backward()
    opt.step(0, 10)
    params = list(model.parameters())
    state = sum(t.nbytes for s in opt.state_shard().values() for t in s.values())
    return {"weights": sum(p.nbytes for p in params), "gradients": sum(p.grad.nbytes for p in params),
            "flat_gradients": sum(g.nbytes for g in opt.flat_grads), "state": state}


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_resident_terms_equal_the_trainers_tensors_one_rank(depth):
    real = _resident_tensor_bytes(depth, 1, 0)
    model = facts(model_shape(depth, vocab_size=512, seq_len=32), 1, "cpu").memory
    assert real["weights"] == model.weights
    assert real["gradients"] == real["flat_gradients"] == model.gradients
    assert (real["state"],) == model.optimizer_state_per_rank


def _rank_worker(rank: int, world_size: int, port: int, depth: int, queue) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        queue.put((rank, _resident_tensor_bytes(depth, world_size, rank)))
        # both ranks are past their last collective before either tears gloo down: a rank that
        # destroys the group while its peer is still in the optimizer's broadcasts aborts (SIGABRT)
        dist.barrier()
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_resident_terms_equal_the_trainers_tensors_two_gloo_ranks():
    import socket

    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    for depth in (1, 2, 3, 4):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        queue = ctx.Queue()
        procs = [ctx.Process(target=_rank_worker, args=(r, 2, port, depth, queue)) for r in range(2)]
        for p in procs:
            p.start()
        got = dict(queue.get(timeout=120) for _ in procs)
        for p in procs:
            p.join(timeout=60)
            assert p.exitcode == 0
        model = facts(model_shape(depth, vocab_size=512, seq_len=32), 2, "cpu").memory
        for rank in (0, 1):
            assert got[rank]["weights"] == model.weights and got[rank]["gradients"] == model.gradients
            assert got[rank]["state"] == model.optimizer_state_per_rank[rank]
        assert got[0]["state"] + got[1]["state"] == sum(
            facts(model_shape(depth, vocab_size=512, seq_len=32), 1, "cpu").memory.optimizer_state_per_rank)


def test_saved_tensors_cli_prints_the_kept_bytes_and_the_planners_terms(capsys):
    from chatplan_train.saved_tensors import main

    main(["--depth", "1", "--seq-len", "32", "--vocab-size", "1024", "--batches", "1,2", "--list"])
    out = capsys.readouterr().out
    shape = model_shape(1, vocab_size=1024, seq_len=32)
    mode = precision("cuda", compile=True)
    kept = activation_bytes_per_token(shape, mode) + logits_saved_bytes_per_token(shape, mode)
    slope = float(re.search(r"kept per token: ([0-9,]+) bytes", out).group(1).replace(",", ""))
    assert slope == pytest.approx(kept, rel=0.01) and "mm_" in out  # the slope, and the listed tensors
    with pytest.raises(SystemExit) as bad:
        main(["--batches", "2,x"])
    assert bad.value.code == 2 and "--batches" in capsys.readouterr().err


@pytest.mark.slow
def test_compiled_fp8_keeps_no_bf16_copy_of_what_only_fp8_linears_read():
    """2026 at d4 under the CUDA policy, compiled on the CPU up to inductor's partition, bf16 and --fp8
    (torchao's tensorwise Float8Linear): per token, fp8 keeps exactly 2 bytes x fp8_input_width fewer per
    layer (the attention and MLP norm outputs and relu^2, 6d, which only fp8 linears read). The planner
    takes off 1 byte per element of the same tensors, the fp8 copy being kept on CUDA
    (nanochat_2026_terms.fp8_input_width: SPEC-2026 §9's d26 measurement). Fails if the term goes, if it
    names other tensors, or if the trainer's fp8 stops converting the block's linears."""
    from chatplan.arch.nanochat_2026_terms import activation_bytes_per_token as act_2026
    from chatplan.arch.nanochat_2026_terms import fp8_input_width
    from chatplan_train.saved_tensors import cuda_policy_model

    vocab, seq_len, depth = 2048, 64, 4
    slope, modes = {}, {}
    for fp8 in (False, True):
        _, shape, modes[fp8], model = cuda_policy_model("nanochat-2026", depth, vocab, seq_len, fp8=fp8)
        kept = {}
        for batch in (2, 4):
            idx, targets = (torch.randint(0, vocab, (batch, seq_len)) for _ in range(2))
            kept[batch] = sum(t[-1] for t in kept_for_backward(model, idx, targets,
                                                             autocast=modes[fp8].autocast))
        slope[fp8] = (kept[4] - kept[2]) / (2 * seq_len)
    width = fp8_input_width(shape, modes[True])
    assert width == 6 * shape.n_embd and fp8_input_width(shape, modes[False]) == 0
    assert slope[False] - slope[True] == pytest.approx(2 * width * depth, rel=0.002), slope
    assert act_2026(shape, modes[False]) - act_2026(shape, modes[True]) == (2 - 1) * width * depth
