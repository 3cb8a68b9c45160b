"""The memory model against the real trainer on CPU: what autograd actually saves for backward."""

import pytest
import torch

from chatplan.memory import ExecutionMode, activation_bytes_per_token, logits_saved_bytes_per_token
from chatplan.shape import model_shape
from chatplan_train.model import GPTConfig, build_model


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
    model = build_model(GPTConfig.from_shape(shape))
    mode = ExecutionMode(device_type="cpu", compiled=False)
    per_token = activation_bytes_per_token(shape, mode) + logits_saved_bytes_per_token(shape, mode)
    for batch in (1, 2, 4):
        idx = torch.randint(0, vocab, (batch, seq_len))
        measured = saved_for_backward_bytes(model, idx, torch.randint(0, vocab, (batch, seq_len)))
        predicted = batch * seq_len * per_token
        assert predicted == pytest.approx(measured, rel=0.05), (depth, batch, seq_len, measured, predicted)
