"""Train the byte-level BPE tokenizer with rustbpe (SPEC §8).

rustbpe pulls documents from a Python iterator in batches, splits them with the pre-split regex in
parallel, counts words, then learns merges until it reaches the requested size or runs out of
pairs. It stops silently in the second case, so we check the size ourselves: a tokenizer smaller
than asked would shift the special-token ids and every model shape built on the vocab.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from chatplan.errors import InvalidInput, RequirementFailed, RuntimeFailure
from chatplan.tokenizer.core import (
    MIN_VOCAB_SIZE,
    SPECIAL_TOKENS,
    SPLIT_PATTERN,
    Tokenizer,
    load_tokenizer,
    save_tokenizer,
)

DEFAULT_MAX_CHARS = 2_000_000_000  # the reference trained on the first ~2 B characters
DEFAULT_DOC_CAP = 10_000  # documents truncated to 10,000 characters
# (phase, characters so far, documents so far); phase is "reading" then "merging".
Progress = Callable[[str, int, int], None]


def capped_texts(texts: Iterable[str], max_chars: int, doc_cap: int, stats: dict,
                 progress: Progress | None = None) -> Iterator[str]:
    """Documents cut to `doc_cap` characters, stopping at exactly `max_chars` characters in all."""
    chars = docs = 0
    for text in texts:
        if chars >= max_chars:
            break
        text = text[:min(doc_cap, max_chars - chars)]
        chars += len(text)
        docs += 1
        stats.update(chars=chars, documents=docs)
        if progress is not None and docs % 256 == 0:
            progress("reading", chars, docs)
        yield text
    stats.update(chars=chars, documents=docs)
    if progress is not None:
        progress("merging", chars, docs)


def train_tokenizer(texts: Iterable[str], vocab_size: int, out_dir: str | os.PathLike,
                    max_chars: float = DEFAULT_MAX_CHARS, doc_cap: int = DEFAULT_DOC_CAP,
                    progress: Progress | None = None) -> Tokenizer:
    """Learn `vocab_size - 9` ranks (256 bytes + merges), add the 9 specials, save, and load.

    Raises RequirementFailed (exit 1) naming the vocab reached when the text runs out of merges;
    nothing is written in that case.
    """
    import rustbpe

    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < MIN_VOCAB_SIZE:
        raise InvalidInput(f"vocab size must be an integer >= {MIN_VOCAB_SIZE} "
                           f"(256 bytes + {len(SPECIAL_TOKENS)} special tokens), got {vocab_size!r}")
    if not max_chars >= 1:
        raise InvalidInput(f"max chars must be at least 1, got {max_chars!r}")
    if isinstance(doc_cap, bool) or not isinstance(doc_cap, int) or doc_cap < 1:
        raise InvalidInput(f"document cap must be a positive integer, got {doc_cap!r}")
    out = Path(out_dir)
    try:  # fail before a long training run, not after it
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InvalidInput(f"cannot create tokenizer directory {out}: {e.strerror or e}") from None
    n_ranks = vocab_size - len(SPECIAL_TOKENS)
    stats: dict = {"chars": 0, "documents": 0}
    t0 = time.perf_counter()
    bpe = rustbpe.Tokenizer()
    bpe.train_from_iterator(capped_texts(texts, int(max_chars), doc_cap, stats, progress), n_ranks,
                            pattern=SPLIT_PATTERN)
    ranks = bpe.get_mergeable_ranks()
    if stats["chars"] == 0:
        raise InvalidInput("no training text: the data directory's training shards are empty")
    if len(ranks) < n_ranks:
        reached = len(ranks) + len(SPECIAL_TOKENS)
        raise RequirementFailed(
            f"the training text ({stats['chars']:,} characters in {stats['documents']:,} documents) "
            f"ran out of merges at vocab {reached:,} ({len(ranks) - 256:,} merges + 256 bytes + "
            f"{len(SPECIAL_TOKENS)} specials); asked for {vocab_size:,}: use --vocab-size {reached} "
            "or less, or more text")
    training = {
        "chars": stats["chars"], "documents": stats["documents"], "max_chars": int(max_chars),
        "doc_cap": doc_cap, "seconds": round(time.perf_counter() - t0, 3),
    }
    try:
        save_tokenizer(out, ranks, vocab_size, training)
    except OSError as e:
        raise RuntimeFailure(f"writing the tokenizer to {out}: {e.strerror or e}") from None
    return load_tokenizer(out)
