"""Tokenizer: rustbpe training on the sample corpus, tiktoken-format files, ids, evaluation, CLI."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import resource
import shutil
import subprocess
import sys

import pytest
from httpserver import ROOT, run_cli

from chatplan.data import iter_texts, write_sample_corpus
from chatplan.data.shards import write_shard
from chatplan.dataplan import VALIDATION_SHARD
from chatplan.errors import InvalidInput, RequirementFailed
from chatplan.tokenizer import (
    SPECIAL_TOKENS,
    SPLIT_PATTERN,
    evaluate_tokenizer,
    load_tokenizer,
    measure_chars_per_token,
    train_tokenizer,
)
from chatplan.tokenizer.cli import training_texts
from chatplan.tokenizer.train import capped_texts


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_sample_corpus(tmp_path_factory.mktemp("sample"))


@pytest.fixture(scope="module")
def train_texts(corpus):
    return [t for p in corpus.train_paths for t in iter_texts(p)]


@pytest.fixture(scope="module")
def val_texts(corpus):
    return list(iter_texts(corpus.validation_path))


@pytest.fixture(scope="module")
def tok512(tmp_path_factory, train_texts):
    return train_tokenizer(train_texts, 512, tmp_path_factory.mktemp("tok512"))


def cpu_seconds() -> float:
    """CPU time of this process, all threads (rustbpe's included): the work done, which other
    processes on a shared box do not stretch the way they stretch the wall clock."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@pytest.fixture(scope="module")
def tok8k(tmp_path_factory, train_texts):
    cpu0 = cpu_seconds()
    tok = train_tokenizer(train_texts, 8192, tmp_path_factory.mktemp("tok8k"))
    # "in seconds": 0.22 CPU s measured on the 2-core dev box; the bar leaves room for slower CPUs.
    assert cpu_seconds() - cpu0 < 10
    return tok


def test_special_ids_follow_the_learned_ranks(tok512, tok8k):
    for tok, v in ((tok512, 512), (tok8k, 8192)):
        assert tok.vocab_size == tok.encoding.n_vocab == v
        assert tok.special_ids == {name: v - 9 + i for i, name in enumerate(SPECIAL_TOKENS)}
        assert tok.bos_id == v - 9 == tok.encoding.encode_single_token("<|bos|>")
        assert tok.encoding.max_token_value == v - 1


def test_files_are_tiktoken_text_and_json_not_pickle(tok512):
    d = tok512.dir
    assert sorted(p.name for p in d.iterdir()) == ["token_bytes.json", "tokenizer.json", "tokenizer.tiktoken"]
    raw = (d / "tokenizer.tiktoken").read_bytes()
    lines = raw.decode("ascii").splitlines()
    assert len(lines) == 503 and all(re.fullmatch(r"[A-Za-z0-9+/=]+ \d+", ln) for ln in lines)
    assert [int(ln.split()[1]) for ln in lines] == list(range(503))
    assert [base64.b64decode(ln.split()[0]) for ln in lines[:256]] == [bytes([i]) for i in range(256)]
    meta = json.loads((d / "tokenizer.json").read_text())
    assert meta["ranks_sha256"] == hashlib.sha256(raw).hexdigest() == tok512.ranks_sha256
    assert (meta["pattern"], meta["vocab_size"], meta["version"]) == (SPLIT_PATTERN, 512, 1)
    assert meta["special_tokens"] == tok512.special_ids
    assert json.loads((d / "token_bytes.json").read_text()) == tok512.token_bytes


def test_tiktoken_reads_our_ranks_file_itself(tok512, monkeypatch):
    import tiktoken.load

    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")  # no cache: read this very file
    ranks = tiktoken.load.load_tiktoken_bpe(str(tok512.dir / "tokenizer.tiktoken"),
                                            expected_hash=tok512.ranks_sha256)
    assert ranks == tok512.encoding._mergeable_ranks


def test_token_bytes_are_utf8_lengths_and_zero_for_specials(tok8k):
    tb = tok8k.token_bytes
    assert len(tb) == 8192 and tb[:256] == [1] * 256 and tb[-9:] == [0] * 9
    assert all(tb[i] == len(tok8k.encoding.decode_single_token_bytes(i)) for i in range(8183))
    assert max(tb) > 4


def test_round_trip_and_batch_encoding(tok8k, val_texts):
    docs = val_texts[:64]
    single = [tok8k.encode(t) for t in docs]
    assert tok8k.encode_batch(docs, num_threads=1) == single == tok8k.encode_batch(docs, num_threads=2)
    assert tok8k.encode_batch(docs, num_threads=4) == single
    assert [tok8k.decode(ids) for ids in single] == docs
    assert all(tok8k.bos_id not in ids for ids in single)  # no BOS: the loader prepends it
    # bytes of the tokens add up to the UTF-8 bytes of the text (this is what bits-per-byte uses)
    assert sum(tok8k.token_bytes[i] for ids in single for i in ids) == sum(len(t.encode()) for t in docs)


def test_literal_special_token_text_is_ordinary_text(tok512):
    ids = tok512.encode("a <|bos|> b")
    assert tok512.bos_id not in ids and tok512.decode(ids) == "a <|bos|> b"


def test_numbers_split_in_pairs(tok8k):
    # SPEC §8's \p{N}{1,2}: never a 3-digit token, whatever the merges
    pieces = [tok8k.encoding.decode_single_token_bytes(i) for i in tok8k.encode("x 1234567 y")]
    assert b"".join(pieces) == b"x 1234567 y"
    assert all(len(p) <= 2 for p in pieces if p.isdigit())


def test_training_is_deterministic(tmp_path, train_texts, tok512):
    again = train_tokenizer(train_texts, 512, tmp_path)
    assert again.ranks_sha256 == tok512.ranks_sha256


def test_bigger_vocab_compresses_more(tok512, tok8k, corpus):
    small = evaluate_tokenizer(tok512, corpus.dir)
    big = evaluate_tokenizer(tok8k, corpus.dir)
    assert 1.5 < small.chars_per_token < big.chars_per_token < 6
    assert small.chars == big.chars == corpus.validation_chars


def test_asking_more_than_the_corpus_holds_exits_1_naming_the_vocab(tmp_path, train_texts):
    out = tmp_path / "tok"
    with pytest.raises(RequirementFailed) as e:
        train_tokenizer(train_texts, 65_536, out)
    msg = str(e.value)
    reached = int(re.search(r"ran out of merges at vocab ([\d,]+)", msg).group(1).replace(",", ""))
    assert 8192 < reached < 65_536 and e.value.exit_code == 1 and f"--vocab-size {reached}" in msg
    assert not list(out.iterdir())  # nothing half-written
    # and the vocab it names is indeed reachable
    assert train_tokenizer(train_texts, reached, tmp_path / "ok").vocab_size == reached


def test_max_chars_and_doc_cap(tmp_path, train_texts):
    stats: dict = {}
    docs = list(capped_texts(train_texts, max_chars=250_000, doc_cap=1_000, stats=stats))
    assert sum(map(len, docs)) == 250_000 == stats["chars"] and max(map(len, docs)) == 1_000
    assert docs == [t[:1_000] for t in train_texts[:len(docs) - 1]] + [docs[-1]]
    tok = train_tokenizer(train_texts, 300, tmp_path, max_chars=250_000, doc_cap=1_000)
    assert tok.meta["training"] == {**tok.meta["training"], "chars": 250_000, "documents": len(docs),
                                    "doc_cap": 1_000, "max_chars": 250_000}


@pytest.mark.parametrize("vocab", [264, 0, -5, 1.5])
def test_invalid_vocab_is_exit_2(tmp_path, vocab):
    with pytest.raises(InvalidInput, match="vocab size"):
        train_tokenizer(["hello"], vocab, tmp_path)


def test_tampered_ranks_file_is_refused(tok512, tmp_path):
    shutil.copytree(tok512.dir, tmp_path, dirs_exist_ok=True)
    f = tmp_path / "tokenizer.tiktoken"
    f.write_bytes(f.read_bytes().replace(b" 502\n", b" 501\n"))
    with pytest.raises(InvalidInput, match="sha256"):
        load_tokenizer(tmp_path)
    with pytest.raises(InvalidInput, match="no tokenizer"):
        load_tokenizer(tmp_path / "missing")


def test_training_reads_train_shards_only(tmp_path):
    # The validation shard is one strange word; it must not reach the tokenizer.
    write_shard(tmp_path / "shard_00000.parquet", ["the cat sat on the mat"] * 50)
    write_shard(tmp_path / "shard_00001.parquet", ["a dog ran in the fog"] * 50)
    write_shard(tmp_path / VALIDATION_SHARD, ["zqxvzqxv"] * 500)
    texts, estimate = training_texts(tmp_path)
    texts = list(texts)
    assert texts == ["the cat sat on the mat"] * 50 + ["a dog ran in the fog"] * 50 and estimate > 2_000
    tok = train_tokenizer(texts, 280, tmp_path / "tok")  # the text holds 22 merges
    learned = [tok.encoding.decode_single_token_bytes(i) for i in range(256, 271)]
    assert b" cat" in learned and not any(b"zq" in t or b"xv" in t for t in learned)
    assert len(tok.encode("zqxvzqxv")) == 8  # never merged: bytes only


def test_measure_chars_per_token_matches_a_hand_count(tok8k, corpus, val_texts):
    tokens = sum(len(ids) for ids in tok8k.encode_batch(val_texts))
    expected = sum(map(len, val_texts)) / tokens
    assert measure_chars_per_token(tok8k.dir, corpus.dir) == pytest.approx(expected, rel=1e-12)
    r = evaluate_tokenizer(tok8k.dir, corpus.dir)
    assert r.bytes_per_token == sum(len(t.encode()) for t in val_texts) / tokens
    # a budget stops at whole documents: the first ones reaching 50,000 characters
    part = evaluate_tokenizer(tok8k, corpus.dir, max_chars=50_000)
    n = next(i for i in range(len(val_texts)) if sum(map(len, val_texts[:i + 1])) >= 50_000) + 1
    assert (part.documents, part.chars) == (n, sum(map(len, val_texts[:n])))


# -- CLI -----------------------------------------------------------------------------------------

CLI = "chatplan.tokenizer.cli"


def test_cli_train_and_eval(corpus, tmp_path):
    out = tmp_path / "tok"
    r = run_cli(CLI, "train", "--data", corpus.dir, "--out", out, "--vocab-size", "1024", "--max-chars",
                "5e5", "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert (info["vocab_size"], info["bos_id"], info["chars"]) == (1024, 1015, 500_000)
    assert info["ranks_sha256"] == load_tokenizer(out).ranks_sha256
    r = run_cli(CLI, "eval", "--tokenizer", out, "--data", corpus.dir, "--json")
    assert r.returncode == 0, r.stderr
    ev = json.loads(r.stdout)
    assert ev["chars_per_token"] == pytest.approx(measure_chars_per_token(out, corpus.dir), rel=1e-12)
    assert ev["chars"] == corpus.validation_chars
    # saved beside the tokenizer for `chatplan estimate --tokenizer DIR`
    assert json.loads((out / "eval.json").read_text()) == ev
    r = run_cli(CLI, "eval", "--tokenizer", out, "--data", corpus.dir, "--no-save")
    assert r.returncode == 0 and "characters/token" in r.stdout
    # retraining into the same directory drops the stale measurement
    r = run_cli(CLI, "train", "--data", corpus.dir, "--out", out, "--vocab-size", "600", "--no-progress")
    assert r.returncode == 0 and not (out / "eval.json").exists()


def test_through_the_top_level_cli(corpus, tmp_path):
    cli = pytest.importorskip("chatplan.cli")
    if not hasattr(cli, "main"):
        pytest.skip("chatplan.cli has no main() yet")
    r = subprocess.run([sys.executable, "-m", "chatplan", "tokenizer", "train", "--data", str(corpus.dir),
                        "--out", str(tmp_path), "--vocab-size", "70000", "--no-progress"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 1 and r.stderr.startswith("chatplan: error: the training text")
    r = subprocess.run([sys.executable, "-m", "chatplan", "tokenizer", "train", "--data", str(corpus.dir),
                        "--out", str(tmp_path), "--vocab-size", "400", "--no-progress"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert load_tokenizer(tmp_path).vocab_size == 400


def test_cli_vocab_too_big_exit_1_and_bad_input_exit_2(corpus, tmp_path):
    r = run_cli(CLI, "train", "--data", corpus.dir, "--out", tmp_path / "t", "--no-progress")
    assert r.returncode == 1  # the default 65,536 does not fit the sample corpus
    [line] = r.stderr.strip().splitlines()
    assert line.startswith("chatplan: error: the training text") and "ran out of merges at vocab" in line
    r = run_cli(CLI, "train", "--data", tmp_path / "empty", "--out", tmp_path / "t")
    assert r.returncode == 2 and "no training shards" in r.stderr
    r = run_cli(CLI, "eval", "--tokenizer", tmp_path / "none", "--data", corpus.dir)
    assert r.returncode == 2 and "no tokenizer" in r.stderr
    r = run_cli(CLI, "train", "--data", corpus.dir, "--max-chars", "0", "--out", tmp_path / "t")
    assert r.returncode == 2 and "--max-chars" in r.stderr
