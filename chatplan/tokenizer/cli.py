"""`chatplan tokenizer train` and `chatplan tokenizer eval` (registered by chatplan/cli.py)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from chatplan import paths
from chatplan.dataplan import VALIDATION_SHARD
from chatplan.errors import InvalidInput
from chatplan.tokenizer.core import SPECIAL_TOKENS
from chatplan.tokenizer.evaluate import DEFAULT_EVAL_CHARS
from chatplan.tokenizer.train import DEFAULT_DOC_CAP, DEFAULT_MAX_CHARS

app = typer.Typer(help="Train the BPE tokenizer (rustbpe) and measure it on the validation shard.",
                  no_args_is_help=True, add_completion=False)

DataOpt = Annotated[str | None, typer.Option("--data", help="Shard directory, or `sample` for the embedded corpus "
                                                        "(default: $CHATPLAN_HOME/base_data).")]
TokenizerDirOpt = Annotated[Path | None, typer.Option("--tokenizer", help="Tokenizer directory (default: "
                                                                        "$CHATPLAN_HOME/tokenizer).")]


ArchOpt = Annotated[str | None, typer.Option("--arch", help="nanochat-2025 (65,536 tokens on FineWeb-Edu, "
                                                          "default) or nanochat-2026 (32,768 on ClimbMix).")]


def resolve_data_dir(data: str | None, arch: str | None = None) -> tuple[Path, str]:
    """(shard directory, its validation shard's name). `sample` means the embedded corpus, written (or
    reused) in its default directory: explicit, never a fallback for a missing download. No --data:
    the architecture's corpus folder."""
    if data == "sample":
        from chatplan.data.sample import write_sample_corpus

        corpus = write_sample_corpus(paths.sample_dir())
        return corpus.dir, corpus.validation_path.name
    from chatplan.arch import get_arch

    dataset = get_arch(arch).dataset
    return (paths.data_dir(dataset.local_dir) if data is None else Path(data).expanduser()), dataset.validation_shard


def training_texts(data_dir: Path, validation_shard: str = VALIDATION_SHARD) -> tuple[Iterator[str], int]:
    """Documents of the training shards in index order (never the validation shard), and an
    estimate of their characters from the parquet footers (uncompressed column bytes)."""
    from chatplan.data.shards import iter_texts, shard_problem, text_bytes_estimate, train_shard_paths

    paths = train_shard_paths(data_dir, validation_shard)
    if not paths:
        raise InvalidInput(f"no training shards (shard_NNNNN.parquet other than {validation_shard}) in "
                           f"{data_dir}: run `chatplan data download` or use --data sample")
    estimate = 0
    for p in paths:
        if problem := shard_problem(p):
            raise InvalidInput(f"{p} is not a usable shard: {problem}")
        estimate += text_bytes_estimate(p)

    def texts() -> Iterator[str]:
        for p in paths:
            yield from iter_texts(p)

    return texts(), estimate


def _as_int(value: float, flag: str) -> int:
    if not (value >= 1 and math.isfinite(value)) or value != int(value):
        raise InvalidInput(f"{flag} must be a positive whole number, got {value:g}")
    return int(value)


@app.command()
def train(
    arch: ArchOpt = None,
    vocab_size: Annotated[int | None, typer.Option("--vocab-size", help="Total vocab incl. 9 special tokens "
                                                                      "(default: the architecture's).")] = None,
    max_chars: Annotated[float, typer.Option("--max-chars", help="Characters of training text (e.g. 2e9).")]
    = float(DEFAULT_MAX_CHARS),
    doc_cap: Annotated[int, typer.Option("--doc-cap", help="Truncate each document to this many chars.")]
    = DEFAULT_DOC_CAP,
    data: DataOpt = None,
    out: Annotated[Path | None, typer.Option("--out", help="Tokenizer directory to write (default: "
                                                          "$CHATPLAN_HOME/tokenizer).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Progress on stderr.")] = True,
) -> None:
    """Train byte-level BPE on the training shards; exit 1 if the text runs out of merges."""
    from chatplan.arch import get_arch
    from chatplan.tokenizer.train import train_tokenizer

    a = get_arch(arch)
    vocab_size = vocab_size or a.defaults.vocab_size
    max_chars_i = _as_int(max_chars, "--max-chars")
    out = out or paths.tokenizer_dir(a.dataset.tokenizer_dir)
    texts, estimate = training_texts(*resolve_data_dir(data, arch))
    if progress:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                       TextColumn("{task.completed:,.0f} chars"), TimeElapsedColumn(),
                       console=Console(stderr=True))
        task = bar.add_task("reading text", total=min(max_chars_i, estimate) or None)

        def report(phase: str, chars: int, docs: int) -> None:
            if phase == "merging":
                bar.update(task, completed=chars, total=chars,
                           description=f"learning {vocab_size - len(SPECIAL_TOKENS) - 256:,} merges from "
                                       f"{docs:,} documents")
            else:
                bar.update(task, completed=chars, description=f"reading text ({docs:,} documents)")

        with bar:
            tok = train_tokenizer(texts, vocab_size, out, max_chars=max_chars_i, doc_cap=doc_cap,
                                  progress=report)
    else:
        tok = train_tokenizer(texts, vocab_size, out, max_chars=max_chars_i, doc_cap=doc_cap)
    info = {"dir": str(tok.dir), "vocab_size": tok.vocab_size, "bos_id": tok.bos_id,
            "ranks_sha256": tok.ranks_sha256, **tok.meta.get("training", {})}
    if as_json:
        print(json.dumps(info, indent=1))
    else:
        print(f"tokenizer with vocab {tok.vocab_size:,} (<|bos|> = {tok.bos_id:,}) written to {tok.dir}; "
              f"trained on {info['chars']:,} characters of {info['documents']:,} documents in "
              f"{info['seconds']:.1f} s; ranks sha256 {tok.ranks_sha256[:16]}")


@app.command("eval")
def evaluate(
    arch: ArchOpt = None,
    tokenizer: TokenizerDirOpt = None,
    data: DataOpt = None,
    max_chars: Annotated[float, typer.Option("--max-chars", help="Validation characters to encode.")]
    = float(DEFAULT_EVAL_CHARS),
    threads: Annotated[int, typer.Option("--threads", help="Encoding threads.")] = 2,
    as_json: Annotated[bool, typer.Option("--json", help="Print the measurement as JSON.")] = False,
    save: Annotated[bool, typer.Option("--save/--no-save", help="Write eval.json into the tokenizer dir.")]
    = True,
) -> None:
    """Characters and UTF-8 bytes per token on the validation shard (saved as <tokenizer>/eval.json,
    which `chatplan estimate --tokenizer DIR` uses for shard counts)."""
    from chatplan.tokenizer.evaluate import evaluate_tokenizer, save_eval

    if threads < 1:
        raise InvalidInput(f"--threads must be at least 1, got {threads}")
    from chatplan.arch import get_arch

    tokenizer = tokenizer or paths.tokenizer_dir(get_arch(arch).dataset.tokenizer_dir)
    data_dir, validation = resolve_data_dir(data, arch)
    r = evaluate_tokenizer(tokenizer, data_dir, max_chars=_as_int(max_chars, "--max-chars"), num_threads=threads,
                           validation_shard=validation)
    if save:
        save_eval(r, tokenizer)
    if as_json:
        print(json.dumps(r.to_dict(), indent=1))
        return
    print(f"{r.chars_per_token:.3f} characters/token, {r.bytes_per_token:.3f} UTF-8 bytes/token "
          f"on {r.documents:,} documents of {Path(r.shard).name} ({r.chars:,} chars, {r.tokens:,} tokens); "
          f"vocab {r.vocab_size:,}, ranks sha256 {r.ranks_sha256[:16]} "
          f"(the planner assumes {get_arch(arch).dataset.chars_per_token} chars/token; pass --tokenizer to use this)")
