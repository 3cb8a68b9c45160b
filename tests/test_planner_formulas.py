"""Golden numbers of SPEC §1-§4 and the closed forms, for every valid depth 1-128."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatplan.errors import InvalidInput
from chatplan.horizon import training_horizon
from tests.helpers import (
    flops_per_token,
    is_valid_depth,
    model_shape,
    nearest_valid_depths,
    param_counts,
    param_shapes,
    shape_problem,
)

VALID = [d for d in range(1, 129) if is_valid_depth(d)]


def test_validity_is_the_rule():
    assert [d for d in VALID if d % 2] == [1, 3, 7, 15, 31, 63]
    assert all(d in VALID for d in range(2, 129, 2))
    assert model_shape(63).head_dim == 126 and model_shape(31).head_dim == 124
    assert {d: model_shape(d).head_dim for d in (1, 3, 7, 15)} == {1: 64, 3: 96, 7: 112, 15: 120}
    assert shape_problem(127 * 64, 64, 64) is not None  # 127 divides but has an odd head dim


@pytest.mark.parametrize("depth", VALID)
def test_closed_forms_for_every_valid_depth(depth):
    shape = model_shape(depth)
    counts = param_counts(shape)
    assert counts.total == 8_388_608 * depth + 49_152 * depth**3
    assert flops_per_token(shape) == 25_165_824 * depth + 1_572_864 * depth**2 + 294_912 * depth**3
    horizon = training_horizon(counts.total, flops_per_token(shape), 524_288)
    assert horizon.steps == 320 * depth + (15 * depth**3) // 8
    # the per-tensor shapes the trainer builds add up to the same count
    assert sum(r * c for r, c in param_shapes(shape).values()) == counts.total


@pytest.mark.parametrize("depth,d,heads,params,wte,fpt,steps,tokens,total_flops", [
    (20, 1280, 10, 560_988_160, 83_886_080, 3_491_758_080, 21_400, 11_219_763_200, 3.917670e19),
    (26, 1664, 13, 1_081_999_360, 109_051_904, 6_900_940_800, 41_275, 21_639_987_200, 1.493363e20),
    (32, 2048, 16, 1_879_048_192, 134_217_728, 12_079_595_520, 71_680, 37_580_963_840, 4.539628e20),
])
def test_spec_golden_rows(depth, d, heads, params, wte, fpt, steps, tokens, total_flops):
    shape = model_shape(depth)
    assert (shape.n_embd, shape.n_head, shape.head_dim, shape.n_kv_head) == (d, heads, 128, heads)
    counts = param_counts(shape)
    assert (counts.total, counts["wte"], counts["lm_head"]) == (params, wte, wte)
    assert counts["non_embedding"] == params - wte
    assert flops_per_token(shape) == fpt
    h = training_horizon(counts.total, fpt, 524_288)
    assert (h.steps, h.tokens, h.source) == (steps, tokens, "data_ratio")
    assert h.total_flops == pytest.approx(total_flops, rel=1e-6)
    assert h.tokens_per_param == pytest.approx(20.0, rel=1e-4)


def test_grouped_query_attention_override():
    shape = model_shape(20, kv_heads=2)
    assert param_counts(shape).total == 508_559_360
    assert flops_per_token(shape) == 3_177_185_280
    assert param_counts(shape)["attn_k"] == 20 * 256 * 1280


def test_horizon_precedence():
    shape = model_shape(20)
    n, f = param_counts(shape).total, flops_per_token(shape)
    assert training_horizon(n, f, 524_288, steps=100, target_flops=1e30).source == "steps"
    h = training_horizon(n, f, 524_288, target_flops=3.917670e19)
    assert (h.source, h.steps) == ("target_flops", 21_400)
    assert training_horizon(n, f, 524_288, data_ratio=10).steps == int(10 * n // 524_288)
    with pytest.raises(InvalidInput):
        training_horizon(n, f, 524_288, steps=0)


@pytest.mark.parametrize("depth,below,above", [(21, 20, 22), (127, 126, 128), (5, 4, 6), (9, 8, 10)])
def test_invalid_depth_names_neighbours(depth, below, above):
    assert not is_valid_depth(depth)
    with pytest.raises(InvalidInput, match=f"nearest valid depths: {below} and {above}"):
        model_shape(depth)


def test_nearest_valid_depths():
    assert nearest_valid_depths(21) == (20, 22)
    assert nearest_valid_depths(1) == (None, 2)


@given(st.integers(1, 256), st.sampled_from([32, 64, 96, 128]), st.sampled_from([64, 128]))
def test_shape_rule_property(depth, aspect, head_dim):
    ok = is_valid_depth(depth, aspect, head_dim)
    try:
        s = model_shape(depth, aspect_ratio=aspect, head_dim=head_dim)
    except InvalidInput:
        assert not ok
        return
    assert ok
    assert s.n_head * s.head_dim == s.n_embd and s.head_dim % 2 == 0 and s.n_head % s.n_kv_head == 0


@given(st.integers(1, 64), st.integers(1, 64))
def test_params_monotone_in_depth(a, b):
    if not (is_valid_depth(a) and is_valid_depth(b)) or a == b:
        return
    lo, hi = sorted((a, b))
    assert param_counts(model_shape(lo)).total < param_counts(model_shape(hi)).total
