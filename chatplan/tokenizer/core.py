"""The tokenizer as files on disk and as a tiktoken Encoding at run time (SPEC §8).

A tokenizer directory holds three files, none of them pickles:
  tokenizer.tiktoken  the learned ranks in tiktoken's own text format: `base64(token) rank` per line
  tokenizer.json      pattern, special tokens and their ids, vocab size, format version, and the
                      sha256 of tokenizer.tiktoken (checked on every load)
  token_bytes.json    UTF-8 byte length of every id (0 for special tokens), for bits-per-byte

Special tokens take the ids right after the learned ranks (vocab_size-9 ... vocab_size-1), with
`<|bos|>` first, exactly like the reference tokenizer.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chatplan.errors import InvalidInput

# GPT-4's pre-split pattern with numbers grouped 1-2 digits instead of 1-3 (SPEC §8).
SPLIT_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,2}|"""
    r""" ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"""
)
SPECIAL_TOKENS = (
    "<|bos|>",
    "<|user_start|>", "<|user_end|>",
    "<|assistant_start|>", "<|assistant_end|>",
    "<|python_start|>", "<|python_end|>",
    "<|output_start|>", "<|output_end|>",
)
DEFAULT_VOCAB_SIZE = 65_536
MIN_VOCAB_SIZE = 256 + len(SPECIAL_TOKENS)  # every byte plus the specials; zero merges
FORMAT = "chatplan-tokenizer"
FORMAT_VERSION = 1
RANKS_FILE = "tokenizer.tiktoken"
META_FILE = "tokenizer.json"
TOKEN_BYTES_FILE = "token_bytes.json"


@dataclass(frozen=True, eq=False)
class Tokenizer:
    """A loaded tokenizer. `encode` never adds BOS: the data loader prepends it per document."""

    encoding: Any  # tiktoken.Encoding (typed loosely so importing this module stays cheap)
    vocab_size: int
    bos_id: int
    special_ids: dict[str, int]
    token_bytes: list[int]
    ranks_sha256: str
    pattern: str = SPLIT_PATTERN
    dir: Path | None = None
    meta: dict = field(default_factory=dict)

    def encode(self, text: str) -> list[int]:
        # Ordinary encoding: a literal "<|bos|>" in web text is text, never a control token.
        return self.encoding.encode_ordinary(text)

    def encode_batch(self, texts: list[str], num_threads: int = 2) -> list[list[int]]:
        """Encode many documents; tiktoken releases the GIL, so threads scale on real cores."""
        if num_threads <= 1 or len(texts) <= 1:
            return [self.encoding.encode_ordinary(t) for t in texts]
        return self.encoding.encode_ordinary_batch(list(texts), num_threads=num_threads)

    def decode(self, ids) -> str:
        return self.encoding.decode(list(ids))


def ranks_to_text(ranks: list[tuple[bytes, int]]) -> bytes:
    """tiktoken's .tiktoken format (what tiktoken.load.dump_tiktoken_bpe writes), sorted by rank."""
    return b"".join(base64.b64encode(tok) + b" " + str(rank).encode() + b"\n"
                    for tok, rank in sorted(ranks, key=lambda x: x[1]))


def _parse_ranks(data: bytes, where: Path) -> dict[bytes, int]:
    ranks: dict[bytes, int] = {}
    for n, line in enumerate(data.splitlines(), 1):
        if not line:
            continue
        try:
            tok, rank = line.split()
            ranks[base64.b64decode(tok, validate=True)] = int(rank)
        except ValueError:
            raise InvalidInput(f"{where}: line {n} is not `base64 rank`") from None
    if sorted(ranks.values()) != list(range(len(ranks))):
        raise InvalidInput(f"{where}: ranks are not 0..{len(ranks) - 1} without gaps or repeats")
    return ranks


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def save_tokenizer(out_dir: str | os.PathLike, ranks: list[tuple[bytes, int]], vocab_size: int,
                   training: dict | None = None) -> Path:
    """Write the three tokenizer files; the metadata goes last so a half-written dir fails to load."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n = len(ranks)
    specials = {name: n + i for i, name in enumerate(SPECIAL_TOKENS)}
    if n + len(SPECIAL_TOKENS) != vocab_size:
        raise ValueError(f"{n} ranks + {len(SPECIAL_TOKENS)} specials != vocab {vocab_size}")
    text = ranks_to_text(ranks)
    by_rank = sorted(ranks, key=lambda x: x[1])
    token_bytes = [len(tok) for tok, _ in by_rank] + [0] * len(SPECIAL_TOKENS)
    meta = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "vocab_size": vocab_size,
        "mergeable_ranks": n,
        "pattern": SPLIT_PATTERN,
        "special_tokens": specials,
        "ranks_file": RANKS_FILE,
        "ranks_sha256": hashlib.sha256(text).hexdigest(),
        "token_bytes_file": TOKEN_BYTES_FILE,
        "training": training or {},
    }
    _write_atomic(out / RANKS_FILE, text)
    _write_atomic(out / TOKEN_BYTES_FILE, json.dumps(token_bytes, separators=(",", ":")).encode() + b"\n")
    _write_atomic(out / META_FILE, (json.dumps(meta, indent=1) + "\n").encode())
    (out / "eval.json").unlink(missing_ok=True)  # a measurement of the previous tokenizer is stale
    return out


def load_tokenizer(dir: str | os.PathLike) -> Tokenizer:
    """Load a tokenizer directory into a tiktoken Encoding, checking the ranks file's sha256."""
    import tiktoken

    d = Path(dir)
    try:
        meta = json.loads((d / META_FILE).read_text())
    except FileNotFoundError:
        raise InvalidInput(f"no tokenizer in {d.resolve()}: {META_FILE} is missing "
                           "(create one with `chatplan tokenizer train`)") from None
    except (OSError, ValueError) as e:
        raise InvalidInput(f"unreadable {d / META_FILE}: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise InvalidInput(f"{d / META_FILE} is not a chatplan tokenizer (format {meta.get('format')!r})"
                           if isinstance(meta, dict) else f"{d / META_FILE} is not a JSON object")
    if meta.get("version") != FORMAT_VERSION:
        raise InvalidInput(f"{d / META_FILE} has format version {meta.get('version')!r}; "
                           f"this chatplan reads version {FORMAT_VERSION}")
    ranks_path = d / meta.get("ranks_file", RANKS_FILE)
    try:
        data = ranks_path.read_bytes()
    except OSError as e:
        raise InvalidInput(f"cannot read {ranks_path}: {e.strerror or e}") from None
    sha = hashlib.sha256(data).hexdigest()
    if sha != meta.get("ranks_sha256"):
        raise InvalidInput(f"{ranks_path} has sha256 {sha[:12]}..., {META_FILE} expects "
                           f"{str(meta.get('ranks_sha256'))[:12]}...: the files do not belong together")
    ranks = _parse_ranks(data, ranks_path)
    vocab_size = int(meta["vocab_size"])
    specials = {str(k): int(v) for k, v in meta["special_tokens"].items()}
    expected = {name: len(ranks) + i for i, name in enumerate(SPECIAL_TOKENS)}
    if specials != expected or len(ranks) + len(specials) != vocab_size:
        raise InvalidInput(f"{d / META_FILE}: special tokens must take ids {len(ranks)}..{vocab_size - 1} "
                           "in the reference order")
    enc = tiktoken.Encoding(
        name=f"chatplan-{vocab_size}-{sha[:12]}",
        pat_str=meta["pattern"],
        mergeable_ranks=ranks,
        special_tokens=specials,
        explicit_n_vocab=vocab_size,
    )
    token_bytes = [0] * vocab_size
    for tok, rank in ranks.items():
        token_bytes[rank] = len(tok)
    return Tokenizer(
        encoding=enc, vocab_size=vocab_size, bos_id=specials["<|bos|>"], special_ids=specials,
        token_bytes=token_bytes, ranks_sha256=sha, pattern=meta["pattern"], dir=d, meta=meta,
    )
