"""Data: the sample corpus, shard reading, and the resumable shard downloader (SPEC §7).

Importing this package is cheap (no pyarrow, httpx or rich): those are imported by the functions.
"""

from chatplan.data.download import DownloadSummary, ShardResult, download_shards
from chatplan.data.sample import SampleCorpus, write_sample_corpus
from chatplan.data.shards import (
    iter_row_groups,
    iter_texts,
    num_row_groups,
    read_row_group,
    shard_problem,
    train_shard_paths,
    validation_shard_path,
)

__all__ = [
    "DownloadSummary", "SampleCorpus", "ShardResult", "download_shards",
    "iter_row_groups", "iter_texts", "num_row_groups", "read_row_group", "shard_problem",
    "train_shard_paths", "validation_shard_path", "write_sample_corpus",
]
