"""Tokenizer: rustbpe training, tiktoken encoding, evaluation on the validation shard (SPEC §8).

Importing this package is cheap: tiktoken and rustbpe are imported by the functions that use them.
"""

from chatplan.tokenizer.core import (
    DEFAULT_VOCAB_SIZE,
    SPECIAL_TOKENS,
    SPLIT_PATTERN,
    Tokenizer,
    load_tokenizer,
    save_tokenizer,
)
from chatplan.tokenizer.evaluate import TokenizerEval, evaluate_tokenizer, measure_chars_per_token
from chatplan.tokenizer.train import DEFAULT_DOC_CAP, DEFAULT_MAX_CHARS, train_tokenizer

__all__ = [
    "DEFAULT_DOC_CAP", "DEFAULT_MAX_CHARS", "DEFAULT_VOCAB_SIZE", "SPECIAL_TOKENS", "SPLIT_PATTERN",
    "Tokenizer", "TokenizerEval", "evaluate_tokenizer", "load_tokenizer", "measure_chars_per_token",
    "save_tokenizer", "train_tokenizer",
]
