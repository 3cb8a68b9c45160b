"""Reading and writing shards in the FineWeb-Edu layout (SPEC §7).

A shard is a parquet file with one string column `text`, one document per row, row groups of at
most 1,024 documents, zstd-compressed. The trainer reads it row group by row group (ranks take row
groups round-robin), so these helpers expose exactly that granularity.

pyarrow is imported inside the functions: `chatplan estimate --json` imports chatplan.data
indirectly and must stay fast.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

from chatplan.dataplan import VALIDATION_SHARD

ROW_GROUP_DOCS = 1_024  # the reference layout's row-group size
SHARD_RE = re.compile(r"^shard_(\d{5})\.parquet$")
PARQUET_MAGIC = b"PAR1"


def _parquet_file(path: str | os.PathLike):
    import pyarrow.parquet as pq

    return pq.ParquetFile(path)


def num_row_groups(path: str | os.PathLike) -> int:
    """Number of row groups in a shard (the unit ranks take round-robin)."""
    return _parquet_file(path).num_row_groups


def read_row_group(path: str | os.PathLike, i: int) -> list[str]:
    """The documents of row group `i` of a shard, in file order."""
    return _parquet_file(path).read_row_group(i, columns=["text"]).column("text").to_pylist()


def iter_texts(path: str | os.PathLike) -> Iterator[str]:
    """Yield every document's text of a shard, reading one row group at a time (bounded memory)."""
    pf = _parquet_file(path)
    for i in range(pf.num_row_groups):
        yield from pf.read_row_group(i, columns=["text"]).column("text").to_pylist()


def text_bytes_estimate(path: str | os.PathLike) -> int:
    """Uncompressed size of the `text` column from the footer alone: ~ its characters (for ETAs)."""
    md = _parquet_file(path).metadata
    return sum(md.row_group(i).column(0).total_uncompressed_size for i in range(md.num_row_groups))


def shard_problem(path: str | os.PathLike) -> str | None:
    """Why a file is not a usable shard, or None if it is one.

    Cheap: checks the magic bytes at both ends, then parses only the footer (no data pages) and
    requires a string column named `text`. A truncated download fails the trailing-magic check.
    """
    import pyarrow as pa

    path = Path(path)
    try:
        size = path.stat().st_size
        if size < 12:
            return f"{size} bytes is too small for parquet"
        with open(path, "rb") as f:
            head = f.read(4)
            f.seek(-4, os.SEEK_END)
            tail = f.read(4)
        if head != PARQUET_MAGIC or tail != PARQUET_MAGIC:
            return "no parquet magic at start and end (truncated or not parquet)"
        schema = _parquet_file(path).schema_arrow
    except Exception as e:  # pyarrow raises ArrowInvalid / OSError for a malformed footer
        return f"unreadable parquet footer: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
    idx = schema.get_field_index("text")
    if idx < 0:
        return f"no `text` column (columns: {', '.join(schema.names) or 'none'})"
    if not (pa.types.is_string(schema.field(idx).type) or pa.types.is_large_string(schema.field(idx).type)):
        return f"`text` column has type {schema.field(idx).type}, not string"
    return None


def write_shard(path: str | os.PathLike, docs: Sequence[str], row_group_docs: int = ROW_GROUP_DOCS) -> None:
    """Write documents as a shard with the reference settings (atomic: temp file, then rename).

    Same settings as nanochat's repackaging script, so our files are laid out like the real ones;
    statistics are off (useless for free text) and the output is deterministic for a given pyarrow.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not 1 <= row_group_docs <= ROW_GROUP_DOCS:
        raise ValueError(f"row_group_docs must be 1..{ROW_GROUP_DOCS}, got {row_group_docs}")
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    table = pa.table({"text": pa.array(list(docs), type=pa.string())})
    pq.write_table(table, tmp, row_group_size=row_group_docs, use_dictionary=False,
                   compression="zstd", compression_level=3, write_statistics=False)
    os.replace(tmp, path)


def list_shards(data_dir: str | os.PathLike) -> list[Path]:
    """All shard_NNNNN.parquet files in a directory, sorted by index."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        return []
    return sorted(p for p in data_dir.iterdir() if SHARD_RE.match(p.name))


def train_shard_paths(data_dir: str | os.PathLike, validation_shard: str = VALIDATION_SHARD) -> list[Path]:
    """Training shards of a directory in index order: every shard except the validation one."""
    return [p for p in list_shards(data_dir) if p.name != validation_shard]


def validation_shard_path(data_dir: str | os.PathLike, validation_shard: str = VALIDATION_SHARD) -> Path:
    return Path(data_dir) / validation_shard


def iter_row_groups(path: str | os.PathLike) -> Iterator[list[str]]:
    """Yield each row group's documents as a list (for batch encoding)."""
    pf = _parquet_file(path)
    for i in range(pf.num_row_groups):
        yield pf.read_row_group(i, columns=["text"]).column("text").to_pylist()
