"""Parquet shards -> token windows, per rank, deterministic and resumable (SPEC §7).

Each rank reads row groups round-robin inside every shard (rank r takes r, r+W, r+2W, ...; nanochat's
rule), tokenizes them on the fly in one batched, threaded call per row group, prefixes every
document with BOS and concatenates the documents into one stream. The stream is cut into disjoint
windows of B*T+1 tokens: inputs are the first B*T, targets the last B*T.

The position after a window, `Position(epoch, shard, row_group, offset)`, names the row group that
holds the first unconsumed token and how many of its tokens are already used. Tokenization is
deterministic, so resuming re-reads that row group, skips `offset` tokens and yields exactly the
windows an uninterrupted run would have.

A background thread does the reading and tokenizing while the model computes.
"""

from __future__ import annotations

import os
import queue
import threading
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Protocol

import torch


class TokenizerLike(Protocol):
    """What the loader needs from `chatplan.tokenizer.Tokenizer`."""

    bos_id: int
    token_bytes: list[int]

    def encode_batch(self, texts: list[str], num_threads: int = ...) -> list[list[int]]: ...


@dataclass(frozen=True)
class Position:
    epoch: int = 0
    shard: int = 0  # index into the training shard list
    row_group: int = -1  # -1: not started (the rank's first row group of the shard)
    offset: int = 0  # tokens of that row group already consumed

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Position:
        return cls(**d)


def _open(path: str | os.PathLike):
    import pyarrow.parquet as pq

    return pq.ParquetFile(path)


def row_groups(paths: Sequence[str | os.PathLike], rank: int, world_size: int, start: Position,
               loop: bool = True) -> Iterator[tuple[Position, list[str]]]:
    """(position of the row group, its documents) for this rank, from `start` on, epoch after epoch."""
    epoch, shard, first_rg = start.epoch, start.shard, start.row_group
    while True:
        for s in range(shard, len(paths)):
            pf = _open(paths[s])
            rg = first_rg if first_rg >= 0 else rank
            while rg < pf.num_row_groups:
                docs = pf.read_row_group(rg, columns=["text"]).column("text").to_pylist()
                yield Position(epoch, s, rg, 0), docs
                rg += world_size
            first_rg = -1
        if not loop:
            return
        epoch, shard = epoch + 1, 0


def tokenize(tokenizer: TokenizerLike, docs: list[str], num_threads: int) -> torch.Tensor:
    """One row group -> one int64 stream: [BOS, doc0..., BOS, doc1..., ...]."""
    stream = array("q")
    bos = tokenizer.bos_id
    for ids in tokenizer.encode_batch(docs, num_threads=num_threads):
        stream.append(bos)
        stream.extend(ids)
    return torch.frombuffer(stream, dtype=torch.int64) if len(stream) else torch.empty(0, dtype=torch.int64)


def windows(tokenizer: TokenizerLike, paths: Sequence[str | os.PathLike], B: int, T: int, rank: int,
            world_size: int, start: Position = Position(), num_threads: int = 2, loop: bool = True,
            ) -> Iterator[tuple[torch.Tensor, torch.Tensor, Position]]:
    """Yield (inputs (B, T), targets (B, T), position after this window) forever (or to the end)."""
    need = B * T + 1
    chunks: list[tuple[Position, torch.Tensor]] = []  # unconsumed token streams, oldest first
    head = 0  # tokens of chunks[0] already consumed
    available = 0
    source = row_groups(paths, rank, world_size, start, loop)
    skip = start.offset if start.row_group >= 0 else 0
    while True:
        while available < need:
            try:
                pos, docs = next(source)
            except StopIteration:
                return
            tokens = tokenize(tokenizer, docs, num_threads)
            if skip:  # resuming inside this row group: its first `skip` tokens were used before
                tokens = tokens[skip:]
                pos, skip = Position(pos.epoch, pos.shard, pos.row_group, skip), 0
            chunks.append((pos, tokens))  # pos.offset: tokens of the row group before this chunk
            available += len(tokens)
        window = torch.empty(need, dtype=torch.int64)
        filled = 0
        while filled < need:
            pos, tokens = chunks[0]
            take = min(need - filled, len(tokens) - head)
            window[filled:filled + take] = tokens[head:head + take]
            filled += take
            head += take
            if head == len(tokens) and filled < need:
                chunks.pop(0)
                head = 0
        available -= need
        pos, tokens = chunks[0]
        after = Position(pos.epoch, pos.shard, pos.row_group, pos.offset + head)
        if head == len(tokens):  # fully used: drop it, the position still points at its end
            chunks.pop(0)
            head = 0
        yield window[:-1].view(B, T), window[1:].view(B, T), after


class Prefetcher:
    """Runs an iterator in a background thread, `depth` items ahead. Re-raises its errors."""

    _END = object()

    def __init__(self, it: Iterator, depth: int = 2):
        self._q: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(it,), daemon=True, name="chatplan-loader")
        self._thread.start()

    def _run(self, it: Iterator) -> None:
        try:
            for item in it:
                while not self._stop.is_set():
                    try:
                        self._q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    return
            self._q.put(self._END)
        except BaseException as e:  # surfaced in the consumer's thread
            self._q.put(e)

    def __iter__(self) -> Prefetcher:
        return self

    def __next__(self):
        item = self._q.get()
        if item is self._END:
            raise StopIteration
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def validation_windows(tokenizer: TokenizerLike, path: str | os.PathLike, B: int, T: int, rank: int,
                       world_size: int, tokens: int, num_threads: int = 2,
                       ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """This rank's share of the first `tokens` validation tokens as (inputs, targets) windows.

    Always the same windows (from the start of the shard, no wrap-around), so every evaluation
    measures the same text; small enough (eval tokens / W) to keep in memory between evaluations.
    """
    stream = windows(tokenizer, [path], B, T, rank, world_size, num_threads=num_threads, loop=False)
    return first_batches(stream, max(1, tokens // (B * T * world_size)))


def first_batches(stream: Iterator, steps: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The first `steps` (inputs, targets) of a finite stream, as tensors of their own (the stream's may
    be views of buffers it reuses), fewer if it ends sooner."""
    out = []
    for x, y, _ in stream:
        out.append((x.clone(), y.clone()))
        if len(out) == steps:
            break
    return out
