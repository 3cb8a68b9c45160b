"""nanochat-2026's exact formulas against the numbers of /work/shared/SPEC-2026.md (nanochat 92d63d4) and
the d4 reference step (/work/shared/fixtures/nanochat_2026_d4_step.md). Pure arithmetic: no torch."""

from __future__ import annotations

import json
import math

import pytest

from chatplan.arch.nanochat_2026 import (
    NANOCHAT_2026,
    POLAR_EXPRESS_COEFFS,
    auto_total_batch_size,
    lr_multiplier,
    muon_momentum,
    muon_weight_decay,
    short_window,
    value_embed_layers,
    window_sizes,
)
from chatplan.errors import InvalidInput

A = NANOCHAT_2026
GROUPS = ("wte", "value_embeds", "lm_head", "transformer_matrices", "scalars", "total")


def printed(value: float, expected: str) -> bool:
    """`value` shows as `expected` with as many decimals as `expected` has (SPEC tables' digits)."""
    decimals = len(expected.split(".")[1]) if "." in expected else 0
    return f"{value:.{decimals}f}" == expected


def iterations(shape, ratio: float, batch: int) -> int:
    """base_train: num_iterations = int(ratio · N_s) // B (§5)."""
    return int(ratio * A.param_counts(shape).scaling) // batch


# --- SPEC-2026 §3: every worked row -----------------------------------------------------------------------
# depth: d, H, VE layers, S layers, L layers, wte, value_embeds, lm_head, transformer_matrices, scalars, total,
#        scaling, FLOPs/token
SECTION3 = {
    12: (768, 6, 6, 9, 3, 25_165_824, 150_994_944, 25_165_824, 84_935_088, 50, 286_261_730, 110_100_912,
         759_696_048),
    20: (1280, 10, 10, 15, 5, 41_943_040, 419_430_400, 41_943_040, 393_217_200, 66, 896_533_746, 435_160_240,
         2_886_212_784),
    24: (1536, 12, 12, 18, 6, 50_331_648, 603_979_776, 50_331_648, 679_478_976, 74, 1_384_122_122, 729_810_624,
         4_775_225_616),
    26: (1664, 13, 13, 19, 7, 54_525_952, 708_837_376, 54_525_952, 863_897_580, 78, 1_681_786_938, 918_423_532,
         5_991_051_288),
    32: (2048, 16, 16, 24, 8, 67_108_864, 1_073_741_824, 67_108_864, 1_610_615_808, 90, 2_818_575_450,
         1_677_724_672, 10_770_991_248),
    8: (512, 4, 4, 6, 2, 16_777_216, 67_108_864, 16_777_216, 25_166_016, 42, 125_829_354, 41_943_232, 295_699_728),
    4: (256, 2, 2, 3, 1, 8_388_608, 16_777_216, 8_388_608, 3_145_776, 34, 36_700_242, 11_534_384, 80_216_496),
}
PRINTED_FLOPS = {12: "7.596960e+08", 20: "2.886213e+09", 24: "4.775226e+09", 26: "5.991051e+09", 32: "1.077099e+10"}


@pytest.mark.parametrize("depth", sorted(SECTION3))
def test_section3_rows(depth):
    d, h, n_ve, n_s, n_l, *groups, scaling, flops = SECTION3[depth]
    shape = A.model_shape(depth)
    assert (shape.n_embd, shape.n_head, shape.n_kv_head, shape.head_dim) == (d, h, h, 128)
    assert len(shape.value_embed_layers) == n_ve
    assert shape.window_sizes.count(512) == n_s and shape.window_sizes.count(2048) == n_l
    counts = A.param_counts(shape)
    assert counts.groups == tuple(zip(GROUPS, groups))  # keys, order and values as nanochat prints them
    assert counts.total == groups[-1] == sum(math.prod(s) for s in A.param_shapes(shape).values())
    assert counts.scaling == scaling
    assert counts.lookup == groups[0] + groups[1]
    assert A.flops_per_token(shape) == flops
    if depth in PRINTED_FLOPS:
        assert f"{A.flops_per_token(shape):e}" == PRINTED_FLOPS[depth]


# --- §2 / §4 closed forms for every even depth ------------------------------------------------------------
@pytest.mark.parametrize("L", range(2, 65, 2))
def test_even_depth_closed_forms(L):
    shape = A.model_shape(L)
    counts = A.param_counts(shape)
    assert (shape.n_embd, shape.n_head, len(shape.value_embed_layers)) == (64 * L, L // 2, L // 2)
    assert shape.window_sizes.count(2048) == math.ceil(L / 4)
    assert counts.total == 49_152 * L**3 + 1_048_579 * L**2 + 4_194_306 * L + 26
    assert counts.scaling == 49_152 * L**3 + 3 * L**2 + 2_097_152 * L
    # N_matmul = 12·L·d² + V·d + 12·H·n_ve + 24 (§4): lm_head and the smear gate in, embeddings out
    assert counts.matmul == 12 * L * (64 * L) ** 2 + 32_768 * 64 * L + 12 * (L // 2) ** 2 + 24
    assert A.flops_per_token(shape) == (294_912 * L**3 + 393_234 * L**2 + 12_582_912 * L
                                        + 1_179_648 * L * math.ceil(L / 4) + 144)


@pytest.mark.parametrize("L", range(1, 64, 2))
def test_odd_depths_take_the_next_even_width(L):
    shape = A.model_shape(L)  # valid: the width rounds up to a multiple of 128 (Oct-2025's d5/d9/d11 failed)
    d, h = 64 * (L + 1), (L + 1) // 2
    assert (shape.n_embd, shape.n_head, shape.head_dim) == (d, h, 128)
    assert shape.value_embed_layers == tuple(range(0, L, 2))  # i % 2 == (L-1) % 2 = 0: first and last included
    n_ve = (L + 1) // 2
    counts = A.param_counts(shape)
    assert counts["transformer_matrices"] == 12 * L * d * d + 12 * h * n_ve
    assert counts["value_embeds"] == n_ve * 32_768 * d
    assert counts["scalars"] == 2 * L + 26
    assert counts.scaling == 12 * L * d * d + 12 * h * n_ve + 32_768 * d


def test_d25_has_d26_width():
    d25, d26 = A.model_shape(25), A.model_shape(26)
    assert (d25.n_embd, d25.n_head) == (d26.n_embd, d26.n_head) == (1664, 13)
    assert A.is_valid_depth(25, 64, 128)
    assert A.param_counts(d25).total < A.param_counts(d26).total


# --- §6 automatic batch size ------------------------------------------------------------------------------
BANDS = [(range(2, 3), 2**17), (range(3, 9), 2**18), (range(9, 17), 2**19), (range(17, 32), 2**20),
         (range(32, 59), 2**21), (range(59, 101), 2**22)]


@pytest.mark.parametrize("depths,batch", BANDS)
def test_auto_batch_bands(depths, batch):
    for L in depths:
        assert A.default_total_batch_size(A.model_shape(L)) == batch, L


def test_auto_batch_is_independent_of_the_ratio_and_rounds_like_nanochat():
    ref = A.param_counts(A.model_shape(12)).scaling
    assert ref == 110_100_912
    for L in (2, 8, 9, 16, 17, 31, 32, 58, 59):
        n_s = A.param_counts(A.model_shape(L)).scaling
        assert {auto_total_batch_size(n_s, ref, r) for r in (4.0, 8.0, 10.5, 12.0, 20.0)} == {
            A.default_total_batch_size(A.model_shape(L))}
    # d32 sits 0.005 above the 20.5 boundary: log2(B) before rounding (fixture golden table)
    n32 = A.param_counts(A.model_shape(32)).scaling
    assert f"{math.log2(2**19 * (int(12 * n32) / (12 * ref)) ** 0.383):.4f}" == "20.5050"


def test_reference_d12_uses_the_same_aspect_head_dim_and_vocab():
    shape = A.model_shape(4, aspect_ratio=16, head_dim=32, seq_len=512, vocab_size=500)
    assert A.reference_scaling_params(shape) == 5_407_152  # d = 192, 6 heads (fixture)
    assert A.default_total_batch_size(shape) == 131_072
    # with the default aspect ratio d4 is a 256-wide model and its d12 the usual one
    assert A.reference_scaling_params(A.model_shape(4)) == 110_100_912
    # aspect 66 gives d25 the default's width (1664) but a 896-wide d12: the shape records the given aspect
    wide = A.model_shape(25, aspect_ratio=66)
    assert (wide.n_embd, wide.aspect_ratio) == (1664, 66)
    assert A.reference_scaling_params(wide) == 12 * 12 * 896**2 + 12 * 7 * 6 + 32_768 * 896


# --- §7 learning rates, weight decay, warmdown ------------------------------------------------------------
# depth: B, bs, Muon LR, c_fc LR, wte, VE, lm_head, x0, resid, λ, iters @12, warmdown steps
SECTION7 = {
    12: (524_288, "1.0000", "0.02000", "0.04", "0.30000", "0.15000", "0.008000", "0.5", "0.005", "0.280000",
         2_520, 1_638),
    20: (1_048_576, "1.4142", "0.02828", "0.0566", "0.32863", "0.16432", "0.008764", "0.7071", "0.00707",
         "0.100188", 4_980, 3_237),
    24: (1_048_576, "1.4142", "0.02828", "0.0566", "0.30000", "0.15000", "0.008000", "0.7071", "0.00707",
         "0.059738", 8_352, 5_429),
    26: (1_048_576, "1.4142", "0.02828", "0.0566", "0.28823", "0.14412", "0.007686", "0.7071", "0.00707",
         "0.047470", 10_510, 6_832),
    32: (2_097_152, "2.0000", "0.04000", "0.08", "0.36742", "0.18371", "0.009798", "1.0", "0.01", "0.036750",
         9_600, 6_240),
}


def groups_by_name(settings: dict) -> dict:
    return {g["name"]: g for g in settings["adamw_groups"] + settings["muon_groups"]}


@pytest.mark.parametrize("depth", sorted(SECTION7))
def test_section7_table(depth):
    batch, bs, muon, c_fc, wte, ve, lm, x0, resid, wd, iters, warmdown = SECTION7[depth]
    shape = A.model_shape(depth)
    assert A.default_total_batch_size(shape) == batch
    n = iterations(shape, 12, batch)
    assert n == iters
    s = A.optimizer_settings(shape, batch, n)
    g = groups_by_name(s)
    d = shape.n_embd
    assert printed(s["batch_lr_scale"], bs) and s["facts"]["batch_lr_scale"] == bs
    assert printed(g[f"muon_{d}x{d}"]["lr"], muon) and g[f"muon_{d}x{d}"]["lr_shape_factor"] == 1.0
    assert printed(g[f"muon_{4 * d}x{d}"]["effective_lr"], c_fc) and g[f"muon_{4 * d}x{d}"]["lr_shape_factor"] == 2.0
    assert g[f"muon_{d}x{4 * d}"]["lr_shape_factor"] == 1.0  # wide matrices are not boosted
    assert printed(g["wte"]["lr"], wte) and printed(g["value_embeds"]["lr"], ve) and printed(g["lm_head"]["lr"], lm)
    assert printed(g["x0_lambdas"]["lr"], x0) and printed(g["resid_lambdas"]["lr"], resid)
    assert g["smear"]["lr"] == 0.2  # never scaled by batch or width
    assert printed(s["muon_weight_decay"], wd) and all(m["weight_decay"] == s["muon_weight_decay"]
                                                       for m in s["muon_groups"])
    assert s["warmdown_steps"] == warmdown and s["warmdown_start"] == iters - warmdown


def test_weight_decay_and_batch_do_not_depend_on_the_horizon():
    shape = A.model_shape(20)
    a, b = A.optimizer_settings(shape, 1_048_576, 100), A.optimizer_settings(shape, 1_048_576, 50_000)
    assert a["muon_weight_decay"] == b["muon_weight_decay"]
    assert a["warmdown_steps"] == 65 and b["warmdown_steps"] == 32_500
    # a user-given batch changes the LR scale and λ with sqrt(B / 2^19)
    c = A.optimizer_settings(shape, 524_288, 100)
    assert c["batch_lr_scale"] == 1.0
    assert c["muon_weight_decay"] == pytest.approx(a["muon_weight_decay"] / math.sqrt(2))


def test_settings_are_complete_and_json():
    shape = A.model_shape(24)
    s = A.optimizer_settings(shape, 1_048_576, 8_352)
    assert json.loads(json.dumps(s)) == s
    assert s["muon_ns_steps"] == 5 and s["muon_beta2"] == 0.9 and s["grad_clip"] is None
    assert s["polar_express_coefficients"][0] == [8.156554524902461, -22.48329292557795, 15.878769915207462]
    assert len(POLAR_EXPRESS_COEFFS) == 5
    assert (s["warmup_steps"], s["warmdown_ratio"], s["final_lr_frac"]) == (40, 0.65, 0.05)
    assert (s["muon_momentum_start"], s["muon_momentum_peak"], s["muon_momentum_ramp_steps"],
            s["muon_momentum_end"]) == (0.85, 0.97, 400, 0.90)
    # every tensor in exactly one group
    members = [p for g in s["adamw_groups"] + s["muon_groups"] for p in g["params"]]
    assert sorted(members) == sorted(A.param_shapes(shape))
    assert s["facts"]["weight_decay_line"] == "Scaling weight decay from 0.280000 to 0.059738 for depth 24"
    assert s["facts"]["dmodel_lr_scale"] == "0.707107"
    with pytest.raises(InvalidInput, match="steps"):
        A.optimizer_settings(shape, 1_048_576, 0)


# --- the speedrun (§7, §13) -------------------------------------------------------------------------------
def test_speedrun_d24_ratio_8():
    shape = A.model_shape(24)
    batch = A.default_total_batch_size(shape)
    n = iterations(shape, 8, batch)
    assert (batch, n, batch * n) == (1_048_576, 5_568, 5_838_471_168)
    assert f"{A.flops_per_token(shape) * batch * n:e}" == "2.788002e+19"
    s = A.optimizer_settings(shape, batch, n)
    assert (s["warmdown_steps"], s["warmdown_start"]) == (3_619, 1_949)
    assert s["facts"]["warmdown"] == "3,619 steps starting at step 1,949 of 5,568"
    assert lr_multiplier(1_949, n) == 1.0 and lr_multiplier(1_950, n) < 1.0
    assert lr_multiplier(n - 1, n) == pytest.approx(1 / 3_619 + (1 - 1 / 3_619) * 0.05)
    assert muon_momentum(1_948, n) == 0.97 and muon_momentum(1_949, n) == 0.97
    assert muon_momentum(1_949 + 1_000, n) == pytest.approx(0.97 - 0.07 * 1_000 / 3_619)
    assert muon_momentum(1_949 + 3_619, n) == pytest.approx(0.90)
    assert lr_multiplier(1_949 + 1_000, n) == pytest.approx(1 - 0.95 * 1_000 / 3_619)


def test_rtx5090_single_gpu_accumulation():
    # #820: "Total batch size 1,048,576 => gradient accumulation steps: 256" at d24, dbs 2, one GPU
    batch = A.default_total_batch_size(A.model_shape(24))
    assert batch % (2 * 2048 * 1) == 0 and batch // (2 * 2048 * 1) == 256


# --- the d4 reference step (fixtures/nanochat_2026_d4_step.md) --------------------------------------------
D4_SHAPES = {
    "resid_lambdas": (4,), "x0_lambdas": (4,), "smear_lambda": (1,), "backout_lambda": (1,),
    "transformer.wte.weight": (512, 64),
    **{f"transformer.h.{i}.{n}.weight": s for i in range(4) for n, s in [
        ("attn.c_q", (64, 64)), ("attn.c_k", (64, 64)), ("attn.c_v", (64, 64)), ("attn.c_proj", (64, 64)),
        *([("attn.ve_gate", (2, 12))] if i in (1, 3) else []), ("mlp.c_fc", (256, 64)), ("mlp.c_proj", (64, 256))]},
    "lm_head.weight": (512, 64), "smear_gate.weight": (1, 24),
    "value_embeds.1.weight": (512, 64), "value_embeds.3.weight": (512, 64),
}


def d4_fixture_shape():
    return A.model_shape(4, aspect_ratio=16, head_dim=32, seq_len=512, vocab_size=500, window_pattern="SSSL")


def test_d4_fixture_shape_and_tensors():
    shape = d4_fixture_shape()
    assert (shape.n_embd, shape.n_head, shape.n_kv_head, shape.head_dim, shape.mlp_hidden) == (64, 2, 2, 32, 256)
    assert (shape.vocab_size, shape.padded_vocab_size) == (500, 512)
    assert shape.window_sizes == (128, 128, 128, 512) and shape.value_embed_layers == (1, 3)
    shapes = A.param_shapes(shape)
    assert list(shapes.items()) == list(D4_SHAPES.items())  # names, shapes and named_parameters() order
    assert len(shapes) == 35


def test_d4_fixture_printed_block():
    shape = d4_fixture_shape()
    counts = A.param_counts(shape)
    assert counts.groups == tuple(zip(GROUPS, (32_768, 65_536, 32_768, 196_656, 34, 327_762)))
    flops = A.flops_per_token(shape)
    assert f"{flops:e}" == "2.064816e+06"
    batch = A.default_total_batch_size(shape)
    assert batch == 131_072
    n = iterations(shape, 12, batch)
    assert (n, batch * n) == (21, 2_752_512)
    assert f"{flops * batch * n:e}" == "5.683431e+12"
    s = A.optimizer_settings(shape, batch, n)
    assert s["facts"]["batch_lr_scale_line"] == "Scaling LRs by 0.5000 for batch size 131,072 (reference: 524,288)"
    assert s["facts"]["weight_decay_line"] == "Scaling weight decay from 0.280000 to 3.299573 for depth 4"
    assert s["facts"]["dmodel_lr_scale_line"] == "Scaling the LR for the AdamW parameters ∝1/√(64/768) = 3.464102"


# group: initial_lr, betas, weight decay (fixture's optimizer-group table; eps 1e-10 everywhere)
D4_ADAMW = {
    "lm_head": (0.013856406460551019, [0.8, 0.96], 0.01),
    "wte": (0.5196152422706632, [0.8, 0.995], 0.001),
    "value_embeds": (0.2598076211353316, [0.8, 0.995], 0.01),
    "resid_lambdas": (0.0025, [0.8, 0.95], 0.05),
    "x0_lambdas": (0.25, [0.96, 0.95], 0.0),
    "smear": (0.2, [0.8, 0.95], 0.0),
}
D4_LR_STEP0_STEP1 = {
    "lm_head": (0.0003464101615137755, 0.000692820323027551),
    "wte": (0.012990381056766582, 0.025980762113533163),
    "value_embeds": (0.006495190528383291, 0.012990381056766582),
    "resid_lambdas": (6.25e-05, 0.000125),
    "x0_lambdas": (0.00625, 0.0125),
    "smear": (0.005000000000000001, 0.010000000000000002),
    "muon_2x12": (0.00025, 0.0005), "muon_64x64": (0.00025, 0.0005),
    "muon_64x256": (0.00025, 0.0005), "muon_256x64": (0.00025, 0.0005),
}


def test_d4_fixture_optimizer_groups_and_schedules():
    shape = d4_fixture_shape()
    s = A.optimizer_settings(shape, 131_072, 21)
    names = [g["name"] for g in s["adamw_groups"] + s["muon_groups"]]
    assert names == list(D4_ADAMW) + ["muon_2x12", "muon_64x64", "muon_64x256", "muon_256x64"]  # param_groups order
    g = groups_by_name(s)
    for name, (lr, betas, wd) in D4_ADAMW.items():
        assert (g[name]["lr"], g[name]["betas"], g[name]["eps"], g[name]["weight_decay"]) == (lr, betas, 1e-10, wd)
    assert g["value_embeds"]["params"] == ["value_embeds.1.weight", "value_embeds.3.weight"]
    assert g["smear"]["params"] == ["smear_gate.weight", "smear_lambda", "backout_lambda"]
    assert len(g["muon_64x64"]["params"]) == 16 and len(g["muon_2x12"]["params"]) == 2
    lam = 3.299573191993863
    for name in ("muon_2x12", "muon_64x64", "muon_64x256", "muon_256x64"):
        assert (g[name]["lr"], g[name]["beta2"], g[name]["ns_steps"], g[name]["weight_decay"]) == (0.01, 0.9, 5, lam)
        assert g[name]["lr_shape_factor"] == (2.0 if name == "muon_256x64" else 1.0)
    # the schedules at steps 0 and 1 of the 21-step run (base_train's own functions)
    assert [lr_multiplier(i, 21) for i in (0, 1)] == [0.025, 0.05]
    assert [muon_momentum(i, 21) for i in (0, 1)] == [0.85, 0.8503000000000001]
    assert [muon_weight_decay(i, 21, s["muon_weight_decay"]) for i in (0, 1)] == [lam, 3.2811464388117195]
    for name, lrs in D4_LR_STEP0_STEP1.items():
        assert tuple(g[name]["lr"] * lr_multiplier(i, 21) for i in (0, 1)) == lrs, name


# --- world size (§10) -------------------------------------------------------------------------------------
def test_world_size_must_divide_the_padded_vocab():
    shape = A.model_shape(24)
    reason = A.check_world_size(shape, 6)
    assert reason and "32,768" in reason and "shape[0] % world_size" in reason and ", 8," in reason
    for ok in (1, 2, 4, 8, 16):
        assert A.check_world_size(shape, ok) is None
    # a padded vocabulary of 50,304 = 2^7·3·131 admits 3 and 6 GPUs but not 5
    odd = A.model_shape(24, vocab_size=50_257)
    assert odd.padded_vocab_size == 50_304
    assert A.check_world_size(odd, 6) is None and A.check_world_size(odd, 5)


# --- windows, value embeddings, validation (§1) -----------------------------------------------------------
def test_short_window():
    assert [short_window(t) for t in (2048, 4096, 1000, 512, 256, 128, 64)] == [512, 1024, 256, 128, 128, 128, 128]


def test_window_patterns():
    assert window_sizes(4, 2048, "SSSL") == (512, 512, 512, 2048)
    assert window_sizes(6, 2048, "SSSL") == (512, 512, 512, 2048, 512, 2048)  # last layer always L
    assert window_sizes(3, 2048, "sl") == (512, 2048, 2048)  # nanochat upper-cases
    assert window_sizes(3, 2048, "L") == (2048,) * 3
    assert window_sizes(2, 2048, "S") == (512, 2048)
    for bad in ("SXL", "", "S L"):
        with pytest.raises(InvalidInput, match=repr(bad)):
            window_sizes(4, 2048, bad)
    with pytest.raises(InvalidInput, match="'SSX'"):
        A.model_shape(12, window_pattern="SSX")
    assert A.model_shape(12, window_pattern="sssl").window_pattern == "SSSL"


def test_attention_uses_each_window_capped_at_the_context():
    shape = A.model_shape(8)  # 6 S layers of 512, 2 L layers of 2048
    assert A.attention_flops_per_token(shape) == 12 * 4 * 128 * (6 * 512 + 2 * 2048)
    short = A.model_shape(8, seq_len=100)  # S = 128 > T: nothing is truncated, every layer counts T
    assert A.attention_flops_per_token(short) == 12 * 4 * 128 * 100 * 8


def test_value_embed_layers():
    assert value_embed_layers(4) == (1, 3)
    assert value_embed_layers(5) == (0, 2, 4)
    assert value_embed_layers(1) == (0,)


def test_gqa_shapes_follow_the_kv_heads():
    shape = A.model_shape(8, kv_heads=2)
    shapes = A.param_shapes(shape)
    assert shapes["transformer.h.0.attn.c_k.weight"] == (256, 512)
    assert shapes["transformer.h.7.attn.ve_gate.weight"] == (2, 12)
    assert shapes["value_embeds.7.weight"] == (32_768, 256)
    counts = A.param_counts(shape)
    assert counts.matmul == counts["transformer_matrices"] + counts["lm_head"] + 24


def test_invalid_shapes():
    assert "odd" in A.shape_problem(640, 128, 128)  # head dim 5: rotary needs halves
    assert "not divisible" in A.shape_problem(640, 3, 3)
    assert A.shape_problem(1280, 10, 10) is None
    assert "smear gate" in A.shape_problem(16, 1, 1)  # narrower than the smear gate's 24 channels
    assert "kv heads" in A.shape_problem(1536, 12, 5)
    with pytest.raises(InvalidInput, match="too short"):
        A.model_shape(4, seq_len=1)


def test_identity():
    assert (A.name, A.nanochat_commit, A.fp8_supported) == ("nanochat-2026", "92d63d4", True)
    d = A.defaults
    assert (d.aspect_ratio, d.head_dim, d.vocab_size, d.seq_len, d.data_ratio, d.window_pattern) == (
        64, 128, 32_768, 2_048, 12, "SSSL")
    assert (d.eval_every, d.eval_tokens) == (250, 41_943_040)
    ds = A.dataset
    assert ds.base_url == "https://huggingface.co/datasets/karpathy/climbmix-400b-shuffle/resolve/main"
    assert (ds.num_train_shards, ds.validation_shard, ds.kept_token_fraction) == (6_542, "shard_06542.parquet", 0.65)
    assert dict(ds.published_downloads)[24] == 170
