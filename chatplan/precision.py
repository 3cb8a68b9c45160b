"""One precision policy: which tensor is bf16 / fp32 / fp8, the loss kernel, compile and attention.

`decide_precision()` is the only place that decides; its `Precision` value is written into
plan.json's `precision` section, which the trainer obeys (autocast, embedding dtype, fused loss,
compile, Newton-Schulz dtype) and which the memory and time models read (bytes per element).

Why these choices:
- CUDA: bf16 compute. The fp32 master weights are cast to bf16 for each matmul (the late-2025
  trainer through autocast, nanochat-2026 inside its Linear); embedding tables are *stored* in bf16
  (nanochat keeps wte in bf16 since it is only ever read). Newton-Schulz runs in bf16 (nanochat).
- CPU: everything in fp32. CPUs without native bf16 multiply bf16 matrices ~100x slower than fp32,
  and the bundled trainer's fused chunked cross-entropy keeps no B x T x V tensor on the CPU path.
- torch.compile on CUDA by default (what the published runs used); never by default on CPU.
- fp8 (tensorwise) only where the architecture trains with it and the GPU has fp8 tensor cores
  (compute capability >= 8.9: Ada, Hopper, Blackwell).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

from chatplan.errors import InvalidInput

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float8": 1}
ATTENTION_KERNELS = ("sdpa-causal", "flash-windowed", "sdpa-dense-mask", "sdpa-masked")
FP8_MIN_COMPUTE_CAPABILITY = 8.9


@dataclass(frozen=True)
class Precision:
    device_type: str  # "cuda" | "cpu"
    compute_dtype: str  # activations and matmul inputs: "bfloat16" | "float32"
    matmul_dtype: str  # what the block matmuls multiply in: compute_dtype, or "float8"
    master_dtype: str  # stored weights of the matrices, lm_head and scalars (fp32 everywhere)
    embedding_dtype: str  # stored embedding tables (wte, value embeddings)
    newton_schulz_dtype: str  # Muon's orthogonalisation
    autocast: bool  # the late-2025 trainer casts through torch.autocast on CUDA
    fused_loss: bool  # chunked lm_head + soft-capped cross-entropy (no B x T x V tensor saved)
    compile: bool
    attention_kernel: str  # the kernel the trainer calls for causal attention

    @property
    def activation_bytes(self) -> int:
        return DTYPE_BYTES[self.compute_dtype]

    @property
    def embedding_bytes(self) -> int:
        return DTYPE_BYTES[self.embedding_dtype]

    @property
    def matmul_bytes(self) -> int:
        return DTYPE_BYTES[self.matmul_dtype]

    @property
    def newton_schulz_bytes(self) -> int:
        return DTYPE_BYTES[self.newton_schulz_dtype]

    @property
    def fp8(self) -> bool:
        return self.matmul_dtype == "float8"

    def to_dict(self) -> dict:
        return asdict(self)


@lru_cache(maxsize=256)  # pure, and asked for once per plan and per calibration point
def decide_precision(arch_name: str, device_type: str, *, fp8_supported: bool, compute_capability: float | None,
                     fp8: bool = False, compile: bool | None = None) -> Precision:
    """The precision of one plan, from the architecture, the device and the user's flags."""
    cuda = device_type == "cuda"
    if fp8:
        if not fp8_supported:
            raise InvalidInput(f"--fp8: {arch_name} trains in bf16 only (fp8 training came with nanochat-2026)")
        if not cuda:
            raise InvalidInput("--fp8 needs a CUDA GPU with fp8 tensor cores; this plan runs on the CPU")
        if compute_capability is None or compute_capability < FP8_MIN_COMPUTE_CAPABILITY:
            cc = "unknown" if compute_capability is None else f"{compute_capability:g}"
            raise InvalidInput(f"--fp8 needs compute capability >= {FP8_MIN_COMPUTE_CAPABILITY:g} (Ada, Hopper, "
                               f"Blackwell); this GPU has {cc}")
    # bf16 needs Ampere (8.0) or newer; older or unknown GPUs compute in fp32 like the CPU
    bf16 = cuda and (compute_capability is None or compute_capability >= 8.0)
    compute = "bfloat16" if bf16 else "float32"
    late_2025 = arch_name == "nanochat-2025"
    return Precision(
        device_type=device_type,
        compute_dtype=compute,
        matmul_dtype="float8" if fp8 else compute,
        master_dtype="float32",
        embedding_dtype=compute,
        newton_schulz_dtype=compute,
        autocast=bf16 and late_2025,
        fused_loss=not cuda,
        compile=cuda if compile is None else bool(compile),
        attention_kernel=attention_kernel(arch_name, device_type, compute_capability),
    )


def attention_kernel(arch_name: str, device_type: str, compute_capability: float | None = None) -> str:
    """Which attention kernel the plan's run uses (the time and memory models read it).

    Late 2025: full causal attention through torch's SDPA (flash kernels on CUDA). 2026 (sliding
    windows): on Hopper (SM 9.x) a windowed flash kernel that skips what the window masks (nanochat's
    FA3; chatplan's trainer runs torch's block-sparse FlexAttention there); on other GPUs nanochat falls
    back to SDPA with a dense T x T mask, which computes every score; on the CPU, SDPA with a mask.
    """
    if arch_name == "nanochat-2025":
        return "sdpa-causal"
    if device_type != "cuda":
        return "sdpa-masked"
    hopper = compute_capability is not None and 9.0 <= compute_capability < 10.0
    return "flash-windowed" if hopper else "sdpa-dense-mask"
