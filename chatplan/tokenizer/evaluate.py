"""Measure a tokenizer on the validation shard: characters and UTF-8 bytes per token.

Characters per token converts a token horizon into shard counts (the planner's `--tokenizer DIR`);
bytes per token relates loss in nats/token to bits-per-byte. Both are measured on the fixed
validation shard, on whole documents, without BOS tokens (the loader adds those).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

from chatplan.errors import InvalidInput
from chatplan.files import write_json_atomic
from chatplan.tokenizer.core import Tokenizer, load_tokenizer

EVAL_FILE = "eval.json"  # written next to the tokenizer; `chatplan estimate --tokenizer DIR` reads it
DEFAULT_EVAL_CHARS = 10_000_000  # ~3 row groups of a real shard: the ratio is stable to <0.5 % there


@dataclass(frozen=True)
class TokenizerEval:
    shard: str
    documents: int
    chars: int
    bytes: int
    tokens: int
    chars_per_token: float
    bytes_per_token: float
    vocab_size: int
    ranks_sha256: str

    def to_dict(self) -> dict:
        return asdict(self)


def evaluate_tokenizer(tokenizer: Tokenizer | str | os.PathLike, data_dir: str | os.PathLike,
                       max_chars: float = DEFAULT_EVAL_CHARS, num_threads: int = 2,
                       validation_shard: str | None = None) -> TokenizerEval:
    """Encode whole validation documents, row group by row group, until `max_chars` are read."""
    from chatplan.data.shards import iter_row_groups, shard_problem, validation_shard_path

    tok = tokenizer if isinstance(tokenizer, Tokenizer) else load_tokenizer(tokenizer)
    if not max_chars >= 1:
        raise InvalidInput(f"max chars must be at least 1, got {max_chars!r}")
    shard = validation_shard_path(data_dir, *([validation_shard] if validation_shard else []))
    if not shard.exists():
        raise InvalidInput(f"no validation shard {shard}: fetch it with `chatplan data download` "
                           "(always included) or write the sample with `chatplan data sample`")
    problem = shard_problem(shard)
    if problem:
        raise InvalidInput(f"{shard} is not a usable shard: {problem}")
    docs = chars = nbytes = tokens = 0
    for texts in iter_row_groups(shard):
        if chars >= max_chars:
            break
        texts = texts[:_docs_within(texts, max_chars - chars)]
        for text, ids in zip(texts, tok.encode_batch(texts, num_threads=num_threads)):
            chars += len(text)
            nbytes += len(text.encode("utf-8"))
            tokens += len(ids)
        docs += len(texts)
    if tokens == 0:
        raise InvalidInput(f"{shard} holds no text to measure")
    return TokenizerEval(
        shard=str(shard), documents=docs, chars=chars, bytes=nbytes, tokens=tokens,
        chars_per_token=chars / tokens, bytes_per_token=nbytes / tokens,
        vocab_size=tok.vocab_size, ranks_sha256=tok.ranks_sha256,
    )


def save_eval(result: TokenizerEval, tokenizer_dir: str | os.PathLike) -> Path:
    """Record the measurement beside the tokenizer (with its ranks sha256, so a retrained tokenizer
    cannot be paired with a stale figure)."""
    return write_json_atomic(Path(tokenizer_dir) / EVAL_FILE, result.to_dict(), indent=1)


def _docs_within(texts: list[str], budget: float) -> int:
    """How many leading documents to take so the total just reaches `budget` (at least one)."""
    acc = 0
    for i, t in enumerate(texts):
        acc += len(t)
        if acc >= budget:
            return i + 1
    return len(texts)


def measure_chars_per_token(tokenizer_dir: str | os.PathLike, data_dir: str | os.PathLike,
                            max_chars: float = DEFAULT_EVAL_CHARS) -> float:
    """Characters per token of a tokenizer on a data dir's validation shard (for the planner)."""
    return evaluate_tokenizer(Path(tokenizer_dir), data_dir, max_chars=max_chars).chars_per_token
