"""Tokenizer speed targets (issue 4): batch encoding for the trainer's data loader.

Encodes the sample corpus's training text (~2.2 M characters, ~790 documents) with a 32,768-token
tokenizer trained on it (the sample holds at most ~34,800; the production 65,536 needs FineWeb).
Targets on the 2-core CI box: >= 1.0 M tokens/s with 1 thread and with 2 threads. The 2-thread
speed-up is printed (tiktoken releases the GIL; ~1.4x on an idle 2-core box) but only guarded
against serialising badly (>= 0.7x), because on a shared 2-core machine it measures the neighbours.

Run: pytest benchmarks/bench_tokenizer.py --benchmark-enable   (CI runs them once with --benchmark-disable)
"""

import time

import pytest

from chatplan.data import iter_texts, write_sample_corpus
from chatplan.tokenizer import train_tokenizer

TARGET_TOKENS_PER_S = 1.0e6
MIN_SPEEDUP_2T = 0.7


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    corpus = write_sample_corpus(tmp_path_factory.mktemp("sample"))
    texts = [t for p in corpus.train_paths for t in iter_texts(p)]
    tok = train_tokenizer(texts, 32_768, tmp_path_factory.mktemp("tok"))
    tokens = sum(len(ids) for ids in tok.encode_batch(texts))
    return tok, texts, tokens


def _rate(tok, texts, threads: int, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        tok.encode_batch(texts, num_threads=threads)
        best = min(best, time.perf_counter() - t0)
    return best


@pytest.mark.parametrize("threads", [1, 2])
def test_encode_batch(benchmark, setup, threads):
    tok, texts, tokens = setup
    out = benchmark(tok.encode_batch, texts, num_threads=threads)
    assert sum(map(len, out)) == tokens
    seconds = _rate(tok, texts, threads)
    benchmark.extra_info.update(tokens=tokens, chars=sum(map(len, texts)), tokens_per_s=tokens / seconds)
    print(f"\nencode_batch, {threads} thread(s): {tokens / seconds / 1e6:.2f} M tokens/s "
          f"({sum(map(len, texts)) / seconds / 1e6:.1f} M chars/s)")
    assert tokens / seconds >= TARGET_TOKENS_PER_S


def test_two_threads_scale(setup):
    tok, texts, _ = setup
    speedup = _rate(tok, texts, 1) / _rate(tok, texts, 2)
    print(f"\n2 threads vs 1: {speedup:.2f}x")
    assert speedup >= MIN_SPEEDUP_2T
