"""The trainer's data loader on small generated shards, with a byte-level stand-in tokenizer."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from chatplan_train.loader import Position, Prefetcher, row_groups, validation_windows, windows


class ByteTokenizer:
    """The tokenizer API the loader uses, over UTF-8 bytes: ids 0..255, BOS = 256."""

    bos_id = 256
    vocab_size = 257
    token_bytes = [1] * 256 + [0]

    def encode_batch(self, texts: list[str], num_threads: int = 2) -> list[list[int]]:
        return [list(t.encode()) for t in texts]


def write_shard(path: Path, docs: list[str], row_group_docs: int) -> None:
    pq.write_table(pa.table({"text": pa.array(docs, type=pa.string())}), path, row_group_size=row_group_docs)


@pytest.fixture
def shards(tmp_path: Path) -> list[Path]:
    """Two shards, 5 and 3 row groups of 3 documents of varied lengths."""
    paths = []
    doc = 0
    for s, n_rg in enumerate([5, 3]):
        docs = []
        for _ in range(n_rg * 3):
            docs.append(f"doc{doc}:" + "abcdefghij"[: doc % 10] * (1 + doc % 4))
            doc += 1
        paths.append(tmp_path / f"shard_{s:05d}.parquet")
        write_shard(paths[-1], docs, 3)
    return paths


def expected_stream(paths: list[Path], rank: int, world: int) -> list[int]:
    tok = ByteTokenizer()
    out: list[int] = []
    for p in paths:
        pf = pq.ParquetFile(p)
        for rg in range(rank, pf.num_row_groups, world):
            for text in pf.read_row_group(rg).column("text").to_pylist():
                out += [tok.bos_id] + list(text.encode())
    return out


@pytest.mark.parametrize("world", [1, 2, 3])
def test_ranks_take_row_groups_round_robin(shards: list[Path], world: int) -> None:
    seen = []
    for rank in range(world):
        got = [(p.shard, p.row_group) for p, _ in row_groups(shards, rank, world, Position(), loop=False)]
        assert got == [(s, rg) for s, n in enumerate([5, 3]) for rg in range(rank, n, world)]
        seen += got
    assert sorted(seen) == [(s, rg) for s, n in enumerate([5, 3]) for rg in range(n)]


@pytest.mark.parametrize("rank,world", [(0, 1), (0, 2), (1, 2)])
def test_windows_cut_the_bos_prefixed_stream(shards: list[Path], rank: int, world: int) -> None:
    B, T = 2, 7
    stream = expected_stream(shards, rank, world)
    got = list(windows(ByteTokenizer(), shards, B, T, rank, world, loop=False))
    assert len(got) == len(stream) // (B * T + 1)
    for i, (x, y, _) in enumerate(got):
        w = stream[i * (B * T + 1):(i + 1) * (B * T + 1)]  # disjoint B*T+1 windows
        assert x.shape == y.shape == (B, T) and x.dtype == torch.int64
        assert x.flatten().tolist() == w[:-1] and y.flatten().tolist() == w[1:]


@pytest.mark.parametrize("rank,world", [(0, 1), (1, 2)])
def test_resume_from_any_position_gives_the_same_windows(shards: list[Path], rank: int, world: int) -> None:
    B, T = 1, 5
    tok = ByteTokenizer()
    full = list(windows(tok, shards, B, T, rank, world, loop=False))
    for k in range(len(full)):
        resumed = list(windows(tok, shards, B, T, rank, world, start=full[k][2], loop=False))
        assert len(resumed) == len(full) - k - 1
        for (x, y, pos), (x2, y2, pos2) in zip(full[k + 1:], resumed, strict=True):
            assert torch.equal(x, x2) and torch.equal(y, y2) and pos == pos2


def test_the_stream_loops_over_epochs(shards: list[Path]) -> None:
    tok = ByteTokenizer()
    one_epoch = list(windows(tok, shards, 1, 3, 0, 1, loop=False))
    it = windows(tok, shards, 1, 3, 0, 1)
    many = [next(it) for _ in range(3 * len(one_epoch))]
    assert many[-1][2].epoch >= 2
    assert all(torch.equal(a[0], b[0]) for a, b in zip(one_epoch[:2], many, strict=False))


def test_prefetcher_preserves_order_and_raises(shards: list[Path]) -> None:
    direct = list(windows(ByteTokenizer(), shards, 2, 4, 0, 1, loop=False))
    fetched = list(Prefetcher(windows(ByteTokenizer(), shards, 2, 4, 0, 1, loop=False), depth=2))
    assert [p for *_, p in direct] == [p for *_, p in fetched]

    def broken():
        yield 1
        raise ValueError("bad shard")

    pre = Prefetcher(broken())
    assert next(pre) == 1
    with pytest.raises(ValueError, match="bad shard"):
        next(pre)


def test_validation_windows_are_fixed_and_sized(shards: list[Path]) -> None:
    a = validation_windows(ByteTokenizer(), shards[0], 2, 8, 0, 1, tokens=64)
    b = validation_windows(ByteTokenizer(), shards[0], 2, 8, 0, 1, tokens=64)
    assert len(a) == 4 and all(torch.equal(x, x2) for (x, _), (x2, _) in zip(a, b, strict=True))
