"""The embedded sample corpus: real layout, deterministic bytes, cache reuse, whole documents."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
from httpserver import ROOT, run_cli

from chatplan.data import iter_texts, num_row_groups, read_row_group, write_sample_corpus
from chatplan.data.sample import ROW_GROUP_DOCS, TRAIN_SHARDS, sample_documents
from chatplan.dataplan import VALIDATION_SHARD
from chatplan.errors import InvalidInput

NAMES = [f"shard_{i:05d}.parquet" for i in range(TRAIN_SHARDS)] + [VALIDATION_SHARD]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_sample_corpus(tmp_path_factory.mktemp("sample"))


def test_layout_is_the_real_one(corpus):
    assert [p.name for p in corpus.train_paths] == NAMES[:-1]
    assert corpus.validation_path.name == "shard_01822.parquet"
    assert sorted(p.name for p in corpus.dir.glob("*.parquet")) == sorted(NAMES)
    for name in NAMES:
        pf = pq.ParquetFile(corpus.dir / name)
        assert pf.schema_arrow.names == ["text"] and str(pf.schema_arrow.field("text").type) == "string"
        sizes = [pf.metadata.row_group(i).num_rows for i in range(pf.num_row_groups)]
        assert max(sizes) <= min(ROW_GROUP_DOCS, 1024) and sum(sizes) == pf.metadata.num_rows
        codecs = {pf.metadata.row_group(i).column(0).compression for i in range(pf.num_row_groups)}
        assert codecs == {"ZSTD"}
    # several row groups per train shard, so round-robin readers have something to share
    assert all(num_row_groups(p) >= 3 for p in corpus.train_paths)


def test_sizes_and_whole_documents(corpus):
    train = [t for p in corpus.train_paths for t in iter_texts(p)]
    val = list(iter_texts(corpus.validation_path))
    assert sum(map(len, train)) == corpus.train_chars >= 1_300_000
    assert sum(map(len, val)) == corpus.validation_chars
    assert corpus.chars == corpus.train_chars + corpus.validation_chars >= 1_500_000
    assert 0.05 * corpus.chars < corpus.validation_chars < 0.2 * corpus.chars
    assert (len(train), len(val)) == (corpus.train_docs, corpus.validation_docs)
    # validation is a set of whole documents that are not in train, not halves of shared ones
    assert not set(val) & set(train) and len(set(train)) == len(train)
    assert (tuple(train), tuple(val)) == sample_documents()
    assert max(map(len, train + val)) <= 10_000 and min(map(len, train + val)) > 0
    # text from both sources: the language reference topics and stdlib docstrings
    joined = "\n".join(train)
    assert "Module json" in joined and "The \"assert\" statement" in joined + "\n".join(val)


def test_row_group_readers_agree(corpus):
    p = corpus.train_paths[1]
    groups = [read_row_group(p, i) for i in range(num_row_groups(p))]
    assert [t for g in groups for t in g] == list(iter_texts(p))
    assert all(len(g) == ROW_GROUP_DOCS for g in groups[:-1])


def test_same_bytes_twice_in_a_fresh_process(corpus, tmp_path):
    # A new interpreter with another hash seed: nothing may depend on set/dict iteration order.
    code = "import sys; from chatplan.data import write_sample_corpus; write_sample_corpus(sys.argv[1])"
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT, check=True,
                   env={**os.environ, "PYTHONHASHSEED": "12345"})
    for name in NAMES + ["sample.json"]:
        assert (tmp_path / name).read_bytes() == (corpus.dir / name).read_bytes(), name


def test_second_call_reuses_files_without_rewriting(corpus, monkeypatch):
    # Reuse is cheap because it neither builds the documents nor writes a shard: count those calls
    # (a wall-clock bound said the same, and failed on a busy 2-core box).
    from chatplan.data import sample

    calls = {"sample_documents": 0, "write_shard": 0}

    def counted(name, fn):
        def wrapper(*args, **kw):
            calls[name] += 1
            return fn(*args, **kw)
        return wrapper

    monkeypatch.setattr(sample, "sample_documents", counted("sample_documents", sample.sample_documents))
    monkeypatch.setattr(sample, "write_shard", counted("write_shard", sample.write_shard))
    before = {n: (corpus.dir / n).stat().st_mtime_ns for n in NAMES}
    again = write_sample_corpus(corpus.dir)
    assert calls == {"sample_documents": 0, "write_shard": 0}
    assert again == dataclasses.replace(corpus, written=False)
    assert {n: (corpus.dir / n).stat().st_mtime_ns for n in NAMES} == before


def test_tampered_file_is_rewritten(corpus, tmp_path):
    d = tmp_path / "s"
    write_sample_corpus(d)
    good = (d / NAMES[2]).read_bytes()
    (d / NAMES[2]).write_bytes(b"garbage")
    info = write_sample_corpus(d)
    assert info.written is True and (d / NAMES[2]).read_bytes() == good


def test_refuses_a_directory_with_other_shards(tmp_path):
    (tmp_path / "shard_00042.parquet").write_bytes(b"real data")
    with pytest.raises(InvalidInput, match="shard_00042.parquet"):
        write_sample_corpus(tmp_path)


def test_cli_sample(corpus, tmp_path):
    shutil.copytree(corpus.dir, tmp_path, dirs_exist_ok=True)  # a cache hit: no 2-second rebuild
    r = run_cli("chatplan.data.cli", "sample", "--dir", tmp_path, "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["train_paths"] == [str(tmp_path / n) for n in NAMES[:-1]]
    assert info["validation_path"] == str(tmp_path / VALIDATION_SHARD) and info["written"] is False
    assert (info["train_chars"], info["validation_docs"]) == (corpus.train_chars, corpus.validation_docs)
    r = run_cli("chatplan.data.cli", "sample", "--dir", tmp_path)
    assert r.returncode == 0 and r.stdout.startswith(f"already up to date: sample corpus in {tmp_path}")


def test_imports_stay_cheap_and_torch_free(corpus, tmp_path):
    shutil.copytree(corpus.dir, tmp_path, dirs_exist_ok=True)
    code = ("import sys, chatplan.data, chatplan.tokenizer, chatplan.data.cli, chatplan.tokenizer.cli\n"
            "heavy = ['httpx', 'pyarrow', 'rich', 'tiktoken', 'rustbpe', 'torch']\n"
            "print([m for m in heavy if m in sys.modules])\n"
            "from chatplan.data import write_sample_corpus; write_sample_corpus(sys.argv[1])\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout.split("\n")
    assert out[:2] == ["[]", "False"]
