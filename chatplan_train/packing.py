"""Best-fit BOS-aligned packing: today's nanochat loader (SPEC-2026 §11), deterministic and resumable.

Every row of T+1 tokens starts with a document's BOS. Documents wait in a buffer of BUFFER_DOCS; each
place in a row takes the largest buffered document that still fits whole, and when none fits, the
shortest one cropped to fill the row exactly (its cut-off tail is thrown away: no padding, every row
full, ~35 % of the tokens lost at T=2048). Inputs are row[:-1], targets row[1:].

The documents come from the late-2025 loader's row groups (loader.row_groups: rank r reads row groups
r, r+W, ... of every shard), tokenized one row group at a time. The buffer is topped up to BUFFER_DOCS
before every choice, one document at a time (nanochat tops it up 128 documents at a time: the same
rule with a slightly larger buffer; the choice among 1,000 or 1,127 documents differs only in ties).

Resume is exact by construction: `PackState` holds the place in the source (the row group being
read and how many of its documents went into the buffer) *and the buffer itself*, so the rows after a
resume are the rows the uninterrupted run would have packed. nanochat saves only the row-group index
and restarts with an empty buffer one row group later; chatplan keeps the stream.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from chatplan_train.loader import Position, TokenizerLike, first_batches, row_groups

BUFFER_DOCS = 1000  # documents the best fit chooses among (nanochat's buffer_size)


@dataclass(frozen=True)
class PackState:
    """Where this rank's packed stream stands: after the last row handed out."""

    epoch: int = 0
    shard: int = 0  # index into the training shard list
    row_group: int = -1  # row group the buffer is filled from (-1: the rank's first of the shard)
    docs: int = 0  # documents of that row group already taken into the buffer
    buffer: tuple[torch.Tensor, ...] = ()  # the waiting documents (token ids, BOS first), in buffer order
    tokens_read: int = 0  # tokens taken into the buffer so far
    tokens_cropped: int = 0  # tokens thrown away by crops so far

    @property
    def tokens_taken(self) -> int:
        """Tokens that left the buffer: placed in rows or cropped away."""
        return self.tokens_read - sum(len(d) for d in self.buffer)

    def to_dict(self) -> dict:
        """Checkpoint form: the buffer as one int32 tensor plus lengths (torch.load(weights_only) reads it)."""
        flat = torch.cat(self.buffer) if self.buffer else torch.empty(0, dtype=torch.int64)
        return {"epoch": self.epoch, "shard": self.shard, "row_group": self.row_group, "docs": self.docs,
                "tokens_read": self.tokens_read, "tokens_cropped": self.tokens_cropped,
                "buffer_tokens": flat.to(torch.int32),
                "buffer_lengths": torch.tensor([len(d) for d in self.buffer], dtype=torch.int64)}

    @classmethod
    def from_dict(cls, d: dict) -> PackState:
        lengths = [int(n) for n in d["buffer_lengths"].tolist()]
        buffer = tuple(t.to(torch.int64) for t in torch.split(d["buffer_tokens"], lengths)) if lengths else ()
        return cls(int(d["epoch"]), int(d["shard"]), int(d["row_group"]), int(d["docs"]), buffer,
                   int(d["tokens_read"]), int(d["tokens_cropped"]))


def _documents(tokenizer: TokenizerLike, paths: Sequence[str | os.PathLike], rank: int, world_size: int,
               start: PackState, num_threads: int, loop: bool) -> Iterator[tuple[Position, int, torch.Tensor]]:
    """(row group's position, documents of it taken including this one, the document's tokens)."""
    source = row_groups(paths, rank, world_size, Position(start.epoch, start.shard, start.row_group, 0), loop)
    skip = start.docs if start.row_group >= 0 else 0
    bos = tokenizer.bos_id
    for pos, texts in source:
        for i, ids in enumerate(tokenizer.encode_batch(texts, num_threads=num_threads)):
            if i >= skip:  # resuming inside a row group: its first `skip` documents went in before
                yield pos, i + 1, torch.tensor([bos, *ids], dtype=torch.int64)
        skip = 0


def packed_batches(tokenizer: TokenizerLike, paths: Sequence[str | os.PathLike], B: int, T: int, rank: int,
                   world_size: int, start: PackState = PackState(), num_threads: int = 2, loop: bool = True,
                   buffer_docs: int = BUFFER_DOCS) -> Iterator[tuple[torch.Tensor, torch.Tensor, PackState]]:
    """Yield (inputs (B, T), targets (B, T), state after this batch) forever (or until the data ends)."""
    cap = T + 1
    buffer = list(start.buffer)
    lengths = [len(d) for d in buffer]
    epoch, shard, rg, taken = start.epoch, start.shard, start.row_group, start.docs
    read, cropped = start.tokens_read, start.tokens_cropped
    docs = _documents(tokenizer, paths, rank, world_size, start, num_threads, loop)
    exhausted = False
    while True:
        rows = torch.empty(B, cap, dtype=torch.int64)
        for r in range(B):
            filled = 0
            while filled < cap:
                while not exhausted and len(buffer) < buffer_docs:
                    try:
                        pos, taken, doc = next(docs)
                    except StopIteration:
                        exhausted = True
                        break
                    epoch, shard, rg = pos.epoch, pos.shard, pos.row_group
                    buffer.append(doc)
                    lengths.append(len(doc))
                    read += len(doc)
                if not buffer:
                    return  # the data ended (validation, loop=False): an incomplete batch is dropped
                room = cap - filled
                best, best_len = -1, 0
                for i, n in enumerate(lengths):
                    if best_len < n <= room:
                        best, best_len = i, n
                if best < 0:  # nothing fits whole: crop the shortest to fill the row
                    best = min(range(len(lengths)), key=lengths.__getitem__)
                doc = buffer.pop(best)
                n = lengths.pop(best)
                use = min(n, room)
                rows[r, filled:filled + use] = doc[:use]
                cropped += n - use
                filled += use
        state = PackState(epoch, shard, rg, taken, tuple(buffer), read, cropped)
        yield rows[:, :-1], rows[:, 1:], state


def packed_validation(tokenizer: TokenizerLike, path: str | os.PathLike, B: int, T: int, rank: int,
                      world_size: int, tokens: int, num_threads: int = 2) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """This rank's share of the first `tokens` packed validation tokens, the same rows every evaluation
    (nanochat evaluates with the same best-fit loader on the validation shard)."""
    stream = packed_batches(tokenizer, [path], B, T, rank, world_size, num_threads=num_threads, loop=False)
    return first_batches(stream, max(1, tokens // (B * T * world_size)))
