"""Data: the sample corpus, shard reading, and the resumable shard downloader (SPEC §7).

Importing this package is cheap (no pyarrow, httpx or rich): those are imported by the functions.
"""

import os
from pathlib import Path

from chatplan.data.download import DownloadSummary, ShardResult, download_shards
from chatplan.data.sample import SampleCorpus, write_sample_corpus
from chatplan.data.shards import (
    is_valid_shard,
    iter_row_groups,
    iter_texts,
    num_row_groups,
    read_row_group,
    shard_problem,
    train_shard_paths,
    validation_shard_path,
)

# Where things live unless a flag says otherwise; CHATPLAN_HOME moves all of them at once.
CHATPLAN_HOME = Path(os.environ.get("CHATPLAN_HOME") or "~/.cache/chatplan").expanduser()
DEFAULT_DATA_DIR = CHATPLAN_HOME / "base_data"
DEFAULT_SAMPLE_DIR = CHATPLAN_HOME / "sample"
DEFAULT_TOKENIZER_DIR = CHATPLAN_HOME / "tokenizer"

__all__ = [
    "CHATPLAN_HOME", "DEFAULT_DATA_DIR", "DEFAULT_SAMPLE_DIR", "DEFAULT_TOKENIZER_DIR",
    "DownloadSummary", "SampleCorpus", "ShardResult", "download_shards", "is_valid_shard",
    "iter_row_groups", "iter_texts", "num_row_groups", "read_row_group", "shard_problem",
    "train_shard_paths", "validation_shard_path", "write_sample_corpus",
]
