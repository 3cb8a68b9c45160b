"""The embedded sample corpus: real-layout shards built offline from the Python standard library.

`chatplan data sample` and `--tier tiny` need text without a network. Every Python installation
carries two large bodies of English prose: the language reference topics behind `help("topic")`
(`pydoc_data.topics`) and the docstrings of the standard library's modules, classes and functions.
We read docstrings with `ast` from the source files (never importing a module: imports have side
effects and depend on optional C extensions), sort everything, shuffle with a fixed seed and write
parquet shards laid out exactly like FineWeb-Edu's: `text` column, zstd, row groups of at most
1,024 documents, train shards shard_00000, shard_00001, ... and the fixed validation shard
shard_01822.

The output is deterministic for a given Python (and pyarrow) version: same documents, same bytes.
A `sample.json` manifest records the sha256 of each file so that a second call on the same
directory only hashes a few MB instead of re-reading the standard library (~2 s).
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import os
import random
import sys
import sysconfig
import warnings
from dataclasses import dataclass
from pathlib import Path

from chatplan.data.shards import SHARD_RE, write_shard
from chatplan.dataplan import VALIDATION_SHARD, shard_filename
from chatplan.errors import InvalidInput, RuntimeFailure

SAMPLE_VERSION = 2  # bump when the document recipe changes: invalidates cached directories
MANIFEST = "sample.json"
TRAIN_SHARDS = 4  # several shards so loaders exercise shard boundaries
ROW_GROUP_DOCS = 64  # <= 1,024 like the reference; small so each shard has several row groups
DOC_CHARS = 8_000  # pack sections into documents of at most this size (a section is never split)
VALIDATION_EVERY = 10  # every 10th document (after shuffling) is validation: whole documents
SHUFFLE_SEED = 1823
# Directories of the standard library that hold test suites or third-party code, not documentation.
SKIP_DIRS = {"site-packages", "dist-packages", "__pycache__", "test", "tests", "idle_test"}


@dataclass(frozen=True)
class SampleCorpus:
    dir: Path
    train_paths: tuple[Path, ...]
    validation_path: Path
    chars: int  # train + validation characters
    train_chars: int
    validation_chars: int
    train_docs: int
    validation_docs: int
    written: bool  # False when the directory already held this exact corpus

    def to_dict(self) -> dict:
        return {
            "dir": str(self.dir), "train_paths": [str(p) for p in self.train_paths],
            "validation_path": str(self.validation_path), "chars": self.chars,
            "train_chars": self.train_chars, "validation_chars": self.validation_chars,
            "train_docs": self.train_docs, "validation_docs": self.validation_docs,
            "written": self.written,
        }


def _pack(sections: list[str]) -> list[str]:
    """Join consecutive sections into documents of at most DOC_CHARS characters.

    Sections stay whole (an oversize one becomes its own document), so every document is a run of
    complete paragraphs or docstrings.
    """
    docs, cur, size = [], [], 0
    for s in sections:
        if cur and size + 2 + len(s) > DOC_CHARS:
            docs.append("\n\n".join(cur))
            cur, size = [], 0
        cur.append(s)
        size += len(s) + 2
    if cur:
        docs.append("\n\n".join(cur))
    return docs


def _topic_documents() -> list[str]:
    from pydoc_data.topics import topics

    docs = []
    for key in sorted(topics):
        paragraphs = [p.strip("\n") for p in topics[key].split("\n\n") if p.strip()]
        docs.extend(_pack(paragraphs))
    return docs


def _module_sections(name: str, source: bytes) -> list[str]:
    """Docstrings of a module, its top-level classes (with methods) and functions, as sections."""
    with warnings.catch_warnings():  # old stdlib files trigger SyntaxWarning for escape sequences
        warnings.simplefilter("ignore")
        tree = ast.parse(source)
    sections = []
    doc = ast.get_docstring(tree)
    if doc:
        sections.append(f"Module {name}\n\n{doc}")
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            parts = []
            doc = ast.get_docstring(node)
            if doc:
                parts.append(f"class {name}.{node.name}\n\n{doc}")
            for sub in node.body:
                if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    doc = ast.get_docstring(sub)
                    if doc:
                        parts.append(f"{node.name}.{sub.name}()\n{doc}")
            sections.extend(parts)  # separate sections: big classes pack into several documents
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node)
            if doc:
                sections.append(f"{name}.{node.name}()\n{doc}")
    return sections


def _stdlib_sources() -> list[tuple[str, Path]]:
    """(module name, path) of every standard-library source file, sorted by module name."""
    root = Path(sysconfig.get_paths()["stdlib"])
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith("config-"))
        rel = Path(dirpath).relative_to(root).parts
        for fn in sorted(filenames):
            if fn.endswith(".py"):
                parts = rel + (fn[:-3],)
                if parts[-1] == "__init__":
                    parts = parts[:-1]
                if parts:
                    out.append((".".join(parts), Path(dirpath) / fn))
    return sorted(out)


def _docstring_documents() -> list[str]:
    docs = []
    for name, path in _stdlib_sources():
        try:
            sections = _module_sections(name, path.read_bytes())
        except (SyntaxError, ValueError, OSError):
            continue  # e.g. a lib2to3 fixture written in Python 2: skipped the same way every time
        docs.extend(_pack(sections))
    return docs


@functools.lru_cache(maxsize=1)
def sample_documents() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(train documents, validation documents) of the sample corpus, deterministic per Python."""
    # The same text can appear twice (pydoc repeats a topic under two keys); a duplicate would put
    # one copy in train and one in validation. dict.fromkeys keeps the first, in sorted order.
    docs = list(dict.fromkeys(_topic_documents() + _docstring_documents()))
    random.Random(SHUFFLE_SEED).shuffle(docs)  # deterministic mix, like the pre-shuffled FineWeb
    val = tuple(d for i, d in enumerate(docs) if i % VALIDATION_EVERY == VALIDATION_EVERY - 1)
    train = tuple(d for i, d in enumerate(docs) if i % VALIDATION_EVERY != VALIDATION_EVERY - 1)
    return train, val


def _split_even(docs: tuple[str, ...], n: int) -> list[tuple[str, ...]]:
    """Contiguous slices of roughly equal character counts (whole documents)."""
    total = sum(map(len, docs))
    out, start, acc = [], 0, 0
    for i, d in enumerate(docs):
        acc += len(d)
        if len(out) < n - 1 and acc >= total * (len(out) + 1) / n:
            out.append(docs[start:i + 1])
            start = i + 1
    out.append(docs[start:])
    return out


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _build_key() -> dict:
    import pyarrow

    return {"format": "chatplan-sample", "version": SAMPLE_VERSION, "python": sys.version,
            "pyarrow": pyarrow.__version__}


def _read_manifest(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _cached(d: Path, manifest: dict | None, key: dict) -> SampleCorpus | None:
    if not manifest or manifest.get("key") != key:
        return None
    try:
        for name, sha in manifest["files"].items():
            if _sha256(d / name) != sha:
                return None
        return _info(d, manifest, written=False)
    except (OSError, KeyError, TypeError):
        return None


def _info(d: Path, m: dict, written: bool) -> SampleCorpus:
    return SampleCorpus(
        dir=d, train_paths=tuple(d / n for n in m["train"]), validation_path=d / VALIDATION_SHARD,
        chars=m["train_chars"] + m["validation_chars"], train_chars=m["train_chars"],
        validation_chars=m["validation_chars"], train_docs=m["train_docs"],
        validation_docs=m["validation_docs"], written=written,
    )


def write_sample_corpus(dir: str | os.PathLike) -> SampleCorpus:
    """Write (or reuse) the sample corpus in `dir` and describe it.

    Reuses the files when `sample.json` matches this Python/pyarrow and every file's sha256 still
    matches, so repeated calls cost a few milliseconds. Refuses a directory holding other shards:
    mixing real and sample data silently would corrupt a run.
    """
    d = Path(dir)
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InvalidInput(f"cannot create sample directory {d}: {e.strerror or e}") from None
    key = _build_key()
    old = _read_manifest(d / MANIFEST)
    hit = _cached(d, old, key)
    if hit is not None:
        return hit

    train_docs, val_docs = sample_documents()
    train_names = [shard_filename(i) for i in range(TRAIN_SHARDS)]
    ours = set(train_names) | {VALIDATION_SHARD}
    previous = set(old.get("files", {})) if isinstance(old, dict) else set()
    foreign = sorted(p.name for p in d.iterdir()
                     if SHARD_RE.match(p.name) and p.name not in ours and p.name not in previous)
    if foreign:
        raise InvalidInput(f"{d} already holds shards that are not the sample corpus "
                           f"({', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''}); "
                           "use an empty directory for --data sample")
    try:
        for name in previous - ours:  # left by an older sample version: ours to remove
            (d / name).unlink(missing_ok=True)
        for name, docs in zip(train_names, _split_even(train_docs, TRAIN_SHARDS)):
            write_shard(d / name, docs, ROW_GROUP_DOCS)
        write_shard(d / VALIDATION_SHARD, val_docs, ROW_GROUP_DOCS)
        manifest = {
            "key": key,
            "files": {n: _sha256(d / n) for n in train_names + [VALIDATION_SHARD]},
            "train": train_names,
            "train_chars": sum(map(len, train_docs)), "validation_chars": sum(map(len, val_docs)),
            "train_docs": len(train_docs), "validation_docs": len(val_docs),
        }
        tmp = d / f".{MANIFEST}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, d / MANIFEST)
    except OSError as e:
        raise RuntimeFailure(f"writing the sample corpus to {d}: {e.strerror or e}") from None
    return _info(d, manifest, written=True)
